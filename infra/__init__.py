"""Deployment: the merge template, `make package` / `make deploy`, and the memory measurement."""
