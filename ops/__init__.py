"""Operator commands for a deployed (or `make run`) gateway: `python -m ops --help`."""
