"""Starting the SMTP, submission and LMTP listeners."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

from postern.protocols.smtp.handlers import InboundHandler, SubmissionHandler
from postern.protocols.smtp.session import Authenticate, ConnectionLimiter, DoorLMTP, DoorSMTP

# Room for the trace headers postern adds, within the largest message it stores.
HEADER_ROOM = 8192


def session_factory(
    kind: str,
    handler: InboundHandler | SubmissionHandler,
    *,
    hostname: str,
    max_message_size: int,
    tls_context: ssl.SSLContext | None,
    timeout: float,
    limiter: ConnectionLimiter | None,
    authenticate_user: Authenticate | None = None,
) -> Callable[[], Any]:
    """A protocol factory for one door. ``kind`` is "smtp", "submission" or "lmtp".
    Without a limiter, whoever calls the factory sets ``session.limiter`` (a mail
    worker, whose parent counts the connections)."""
    protocol_class = DoorLMTP if kind == "lmtp" else DoorSMTP

    def factory() -> Any:
        session = protocol_class(
            handler,
            hostname=hostname,
            ident="postern ESMTP",
            data_size_limit=max(1024, max_message_size - HEADER_ROOM),
            enable_SMTPUTF8=True,
            decode_data=False,
            tls_context=tls_context if kind != "lmtp" else None,
            timeout=timeout,
            auth_required=kind == "submission",
            auth_require_tls=True,
            # MX and LMTP accept no logins; submission offers PLAIN and LOGIN.
            auth_exclude_mechanism=[] if kind == "submission" else ["LOGIN", "PLAIN"],
        )
        session.door = kind
        if limiter is not None:
            session.limiter = limiter
        session.authenticate_user = authenticate_user if kind == "submission" else None
        return session

    return factory


async def start_listener(
    kind: str,
    host: str,
    port: int,
    handler: InboundHandler | SubmissionHandler,
    *,
    hostname: str,
    max_message_size: int,
    tls_context: ssl.SSLContext | None,
    timeout: float,
    connections_per_ip: int,
    authenticate_user: Authenticate | None = None,
) -> asyncio.Server:
    """``kind`` is "smtp", "submission" or "lmtp"."""
    factory = session_factory(
        kind,
        handler,
        hostname=hostname,
        max_message_size=max_message_size,
        tls_context=tls_context,
        timeout=timeout,
        limiter=ConnectionLimiter(connections_per_ip),
        authenticate_user=authenticate_user,
    )
    loop = asyncio.get_running_loop()
    return await loop.create_server(factory, host=host, port=port, reuse_address=True)
