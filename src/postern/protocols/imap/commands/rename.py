"""RENAME (RFC 3501 §6.3.5); children move with their parent."""

from __future__ import annotations

from .. import commands as c
from ..session import Done, Session, no


async def handle(session: Session, command: c.Rename) -> Done:
    user_id = session.require_user()
    if command.mailbox == "INBOX":
        raise no("Renaming INBOX is not supported", "CANNOT")
    new_name = command.new_name.rstrip("/")
    if not new_name:
        raise no("Invalid mailbox name", "CANNOT")
    mailstore = session.services.mailstore
    folder = await mailstore.folder_by_path(user_id, command.mailbox)
    await mailstore.update_folder(user_id, folder.id, path=new_name)
    return Done()
