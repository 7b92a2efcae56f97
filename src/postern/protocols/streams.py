"""What every door does with its client connections: count them per IP address
(``ConnectionLimiter``), and write to a client that may have gone away (``write``).

Writing to a client that may have gone away:

A client closing its connection, or losing it, in the middle of an answer is normal.
asyncio's own loop drops what is written to a closed transport; uvloop (what ``postern
serve`` runs on) raises ``RuntimeError: unable to perform operation on <TCPTransport
closed=True>``. Either way the doors should see one thing: ``ConnectionResetError``,
which they treat as the end of the session (no traceback, no UPDATE, nothing half
done), and they should see it at once rather than write on into the void.
"""

from __future__ import annotations

import asyncio
from collections import Counter


class ConnectionLimiter:
    """Open connections per client IP, shared by every session of one listener (or,
    with mail workers, counted by the process that accepts)."""

    def __init__(self, per_ip: int):
        self.per_ip = per_ip
        self._open: Counter[str] = Counter()

    def acquire(self, ip: str) -> bool:
        if self._open[ip] >= self.per_ip:
            return False
        self._open[ip] += 1
        return True

    def release(self, ip: str) -> None:
        self._open[ip] -= 1
        if self._open[ip] <= 0:
            del self._open[ip]


class ClientGone(ConnectionResetError):
    """The client's connection closed while we were writing to it."""


def write(writer: asyncio.StreamWriter, data: bytes) -> None:
    """``writer.write(data)``, or ClientGone if the connection is closed."""
    if writer.transport.is_closing():
        raise ClientGone("the client closed the connection")
    try:
        writer.write(data)
    except RuntimeError as error:  # uvloop's word for a closed transport
        raise ClientGone(str(error)) from None
