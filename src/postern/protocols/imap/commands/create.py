"""CREATE (RFC 3501 §6.3.3), with CREATE-SPECIAL-USE (RFC 6154 §3)."""

from __future__ import annotations

from .. import commands as c
from ..session import Done, Session, no

SPECIAL_USES = ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")
_CANONICAL = {u.lower(): u for u in SPECIAL_USES}


async def handle(session: Session, command: c.Create) -> Done:
    user_id = session.require_user()
    name = command.mailbox.rstrip("/")  # "foo/" names the mailbox foo (RFC 3501 §6.3.3)
    if not name:
        raise no("Invalid mailbox name", "CANNOT")
    if name == "INBOX":
        raise no("INBOX already exists", "ALREADYEXISTS")
    special = None
    if command.special_use:
        if len(command.special_use) > 1:
            raise no("Only one special use per mailbox", "USEATTR")
        special = _CANONICAL.get(command.special_use[0].lower())
        if special is None:
            raise no(f"Unknown special use {command.special_use[0]}", "USEATTR")
        existing = await session.services.mailstore.folder_by_special_use(user_id, special)
        if existing is not None:
            raise no(f"{existing.path} already has the special use {special}", "USEATTR")
    await session.services.view.create_folder(user_id, name, special)
    return Done()
