"""The gateway's library: everything but the HTTP wiring, which lives in app.py."""
