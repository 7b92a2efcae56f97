"""What the server tells about itself: Prometheus metrics (and the logs set up in serve/logs.py).

A room of the floor, beside events: every door and service may count here."""
