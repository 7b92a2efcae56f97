"""SUBSCRIBE and UNSUBSCRIBE (RFC 3501 §6.3.6-7): any name may be subscribed, an
existing mailbox or not; unsubscribing a name that is not subscribed is no error."""

from __future__ import annotations

from .. import commands as c
from ..session import Done, Session


async def handle(session: Session, command: c.Subscribe | c.Unsubscribe) -> Done:
    user_id = session.require_user()
    await session.services.view.subscribe(user_id, command.mailbox, isinstance(command, c.Subscribe))
    return Done()
