"""Inbound routing and the outbound queue."""
