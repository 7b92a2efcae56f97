"""STARTTLS (RFC 3501 §6.2.1). What the client sent after the command is thrown
away, never read as if it had come over TLS."""

from __future__ import annotations

from .. import commands as c
from .. import encode as enc
from ..session import Done, Session, bad


async def handle(session: Session, command: c.StartTls) -> Done:
    connection = session.connection
    if session.tls or session.services.tls_context is None:
        connection.pending.extend(connection.reader.resume())
        raise bad("TLS is already active" if session.tls else "TLS is not available")
    session.write(enc.status_response(command.tag, "OK", "Begin TLS negotiation now"))
    await connection.start_tls()
    connection.pending.extend(connection.reader.resume())
    return Done(send=False)
