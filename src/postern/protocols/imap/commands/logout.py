"""LOGOUT (RFC 3501 §6.1.3)."""

from __future__ import annotations

from .. import commands as c
from ..session import Done, Session


async def handle(session: Session, command: c.Logout) -> Done:
    session.untagged("BYE postern IMAP logging out")
    session.state = "logout"
    session.close()
    return Done()
