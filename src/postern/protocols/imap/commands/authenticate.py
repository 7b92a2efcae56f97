"""AUTHENTICATE PLAIN (RFC 3501 §6.2.2, RFC 4616), with SASL-IR (RFC 4959)."""

from __future__ import annotations

import binascii

from .. import commands as c
from ..parser import LineReceived
from ..session import Done, Session, bad, no
from .login import log_in

MAX_RESPONSE = 8 * 1024


async def handle(session: Session, command: c.Authenticate) -> Done:
    connection = session.connection
    try:
        if command.mechanism != "PLAIN":
            raise no(f"Unsupported authentication mechanism {command.mechanism}", "CANNOT")
        if not session.login_allowed:
            raise no("Plaintext authentication is disallowed without TLS", "PRIVACYREQUIRED")
        response = command.initial_response
        if response is None:
            session.write(b"+ \r\n")
            await connection.writer.drain()
            events = await connection.next_events(connection.reader.expect_line)
            event = events[0]
            connection.pending.extend(events[1:])
            if not isinstance(event, LineReceived):
                raise bad("Expected a SASL response")
            response = event.line
        if response.strip() == b"*":
            raise bad("Authentication cancelled")
        if len(response) > MAX_RESPONSE:
            raise bad("SASL response too long")
        if response == b"=":
            response = b""
        try:
            decoded = binascii.a2b_base64(response, strict_mode=True) if response else b""
        except (binascii.Error, ValueError):
            raise bad("Invalid base64 in the SASL response") from None
        parts = decoded.split(b"\x00")
        if len(parts) != 3:
            raise bad("Invalid PLAIN response")
        authzid, authcid, password = (p.decode("utf-8", "replace") for p in parts)
        if authzid and authzid != authcid:
            raise no("Authorization identity must be the login", "AUTHORIZATIONFAILED")
        return await log_in(session, authcid, password)
    finally:
        connection.pending.extend(connection.reader.resume())
