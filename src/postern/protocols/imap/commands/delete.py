"""DELETE (RFC 3501 §6.3.4). INBOX and the special-use folders stay; a subscription
stays subscribed after its mailbox is gone."""

from __future__ import annotations

from .. import commands as c
from ..session import Done, Session, no
from .select import unselect


async def handle(session: Session, command: c.Delete) -> Done:
    user_id = session.require_user()
    if command.mailbox == "INBOX":
        raise no("INBOX can not be deleted", "CANNOT")
    mailstore = session.services.mailstore
    folder = await mailstore.folder_by_path(user_id, command.mailbox)
    selected = session.selected
    closed = selected is not None and selected.folder_id == folder.id
    await session.services.view.delete_folder(user_id, folder.id)
    if closed:
        unselect(session)
        session.untagged("OK [CLOSED] Mailbox deleted")
    return Done()
