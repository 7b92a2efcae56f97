"""SUBSCRIBE and UNSUBSCRIBE (RFC 3501 §6.3.6-7)."""

from __future__ import annotations

from postern.errors import NotFound

from .. import commands as c
from ..session import Done, Session


async def handle(session: Session, command: c.Subscribe | c.Unsubscribe) -> Done:
    user_id = session.require_user()
    mailstore = session.services.mailstore
    subscribe = isinstance(command, c.Subscribe)
    try:
        folder = await mailstore.folder_by_path(user_id, command.mailbox)
    except NotFound:
        if subscribe:
            raise
        return Done()  # unsubscribing a mailbox that is gone is no error
    await mailstore.update_folder(user_id, folder.id, subscribed=subscribe)
    return Done()
