"""The performance benchmark of the gateway (`make bench`, issue 6).

Every figure is measured next to its floor in the same run and reported as a ratio:
cold start, the gateway's own time per request, the fan-out of batch reads, peak
memory and the deployment package's size. See `bench/README.md`.
"""
