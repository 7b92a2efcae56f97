"""CLOSE (RFC 3501 §6.4.2: expunge silently, then leave) and UNSELECT (RFC 3691)."""

from __future__ import annotations

from .. import commands as c
from ..session import Done, Session
from .select import unselect


async def handle(session: Session, command: c.Close | c.Unselect) -> Done:
    selected = session.require_selected()
    if isinstance(command, c.Close) and not selected.read_only:
        await session.services.view.expunge_deleted(session.require_user(), selected.folder_id)
    unselect(session)
    return Done()
