"""EXPUNGE (RFC 3501 §6.4.3) and UID EXPUNGE (RFC 4315 UIDPLUS)."""

from __future__ import annotations

from .. import commands as c
from ..session import Done, Session, no


async def handle(session: Session, command: c.Expunge) -> Done:
    selected = session.require_selected()
    if selected.read_only:
        raise no("Mailbox is read-only", "READ-ONLY")
    uids = None
    if command.uids is not None:
        uids = [selected.uids[i] for i in selected.resolve(command.uids, uid=True)]
    expunged = await session.services.view.expunge_deleted(session.require_user(), selected.folder_id, uids)
    # Changes by others first (all expunges are allowed here), then ours.
    session.announce_expunged(expunged)
    return Done()
