"""IDLE (RFC 2177): changes are pushed as they happen until the client says DONE."""

from __future__ import annotations

from .. import commands as c
from ..parser import IdleDone
from ..session import Done, Session, bad


async def handle(session: Session, command: c.Idle) -> Done:
    connection = session.connection
    await session.flush_updates(allow_expunge=True)
    session.write(b"+ idling\r\n")
    await connection.writer.drain()
    events = await connection.next_events(connection.reader.expect_idle_done, idle=True)
    connection.pending.extend(events[1:])
    if not isinstance(events[0], IdleDone):
        raise bad("Expected DONE")
    return Done("terminated")
