"""CANCELUPDATE (RFC 5267 §4.2): stop keeping the searches of these tags up to date."""

from __future__ import annotations

from .. import commands as c
from ..session import Done, Session


async def handle(session: Session, command: c.CancelUpdate) -> Done:
    selected = session.require_selected()
    for tag in command.tags:
        selected.updates.pop(tag, None)
    return Done()
