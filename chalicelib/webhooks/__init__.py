"""Signed webhooks: subscriptions, their targets, signed deliveries and the worker that sends them."""
