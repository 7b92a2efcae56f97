"""CAPABILITY (RFC 3501 §6.1.1)."""

from __future__ import annotations

from .. import commands as c
from ..session import Done, Session


async def handle(session: Session, command: c.Capability) -> Done:
    session.untagged("CAPABILITY " + " ".join(session.capabilities()))
    return Done()
