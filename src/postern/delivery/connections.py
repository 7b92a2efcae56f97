"""SMTP connections kept open between deliveries to the same host.

Opening a connection costs a TCP handshake, the greeting, EHLO and often STARTTLS and
AUTH: far more than a message's MAIL, RCPT and DATA. A relay, or a busy MX such as a
big provider's, gets message after message, so the queue keeps a few connections
open after a delivery and sends the next message on one of them, as every MTA does.
A kept connection lives ``IDLE_SECONDS`` at most: servers close idle clients, and a
connection that went away meanwhile is noticed at MAIL, before anything was sent,
so the message then goes on a new one (``outbound``).
"""

from __future__ import annotations

import time
from collections import defaultdict

import aiosmtplib

IDLE_SECONDS = 20.0
# Per host and port; the queue delivers at most PARALLEL_DELIVERIES at once anyway.
MAX_IDLE_PER_HOST = 10

Key = tuple[str, int, bool]  # host, port, relay


class IdleConnections:
    def __init__(self, idle_seconds: float = IDLE_SECONDS, max_per_host: int = MAX_IDLE_PER_HOST):
        self.idle_seconds = idle_seconds
        self.max_per_host = max_per_host
        self._idle: dict[Key, list[tuple[aiosmtplib.SMTP, float]]] = defaultdict(list)

    def take(self, key: Key) -> aiosmtplib.SMTP | None:
        """The most recently used open connection to ``key``, if there is one."""
        kept = self._idle.get(key)
        now = time.monotonic()
        while kept:
            client, since = kept.pop()
            if now - since <= self.idle_seconds and client.is_connected:
                return client
            client.close()
        return None

    def give(self, key: Key, client: aiosmtplib.SMTP) -> None:
        """Keep ``client`` (at the end of a transaction) for the next message."""
        kept = self._idle[key]
        now = time.monotonic()
        for stale in [c for c, since in kept if now - since > self.idle_seconds]:
            stale.close()
        kept[:] = [(c, since) for c, since in kept if now - since <= self.idle_seconds]
        if len(kept) >= self.max_per_host or not client.is_connected:
            client.close()
            return
        kept.append((client, now))

    def close_all(self) -> None:
        for kept in self._idle.values():
            for client, _ in kept:
                client.close()
        self._idle.clear()
