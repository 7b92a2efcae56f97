"""NOOP and CHECK (RFC 3501 §6.1.2, §6.4.1): nothing to do but announce updates,
which the dispatcher does at the end of every command."""

from __future__ import annotations

from .. import commands as c
from ..session import Done, Session


async def handle(session: Session, command: c.Noop | c.Check) -> Done:
    return Done()
