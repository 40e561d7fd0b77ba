"""A faithful API v2 panel simulator (stdlib only) for the gateway's tests and `make run`."""

from __future__ import annotations

from sandbox.catalogue import FIXED_COUNT, Catalogue, Service
from sandbox.panel import DEFAULT_KEY, FAULTS, Order, Refill, SandboxPanel

__all__ = ["DEFAULT_KEY", "FAULTS", "FIXED_COUNT", "Catalogue", "Order", "Refill", "SandboxPanel",
           "Service"]
