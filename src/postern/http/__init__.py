"""The HTTP doors: one FastAPI app serving the admin API (and later the user API)."""
