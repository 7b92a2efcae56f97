"""STATUS (RFC 3501 §6.3.10; HIGHESTMODSEQ RFC 7162, SIZE/DELETED RFC 8438/9051,
APPENDLIMIT RFC 7889, MAILBOXID RFC 8474); also the STATUS lines of LIST-STATUS."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import commands as c
from .. import encode as enc
from ..session import Done, Session


async def status_values(session: Session, folder: Any, items: Sequence[str]) -> bytes:
    """``(MESSAGES 3 UIDNEXT 4 ...)`` for a folder row."""
    values: list[bytes] = []
    for item in items:
        if item == "MESSAGES":
            value: bytes = enc.number(folder.message_count)
        elif item == "RECENT":
            selected = session.selected
            if selected is not None and selected.folder_id == folder.id:
                value = enc.number(len(selected.recent))
            else:  # what no session has claimed yet (the next SELECT's \Recent)
                value = enc.number(await session.services.view.count_recent(folder.id))
        elif item == "UIDNEXT":
            value = enc.number(folder.uid_next)
        elif item == "UIDVALIDITY":
            value = enc.number(folder.uidvalidity)
        elif item == "UNSEEN":
            value = enc.number(folder.unseen_count)
        elif item == "HIGHESTMODSEQ":
            session.condstore = True
            value = enc.number(folder.modseq)
        elif item == "SIZE":
            value = enc.number(folder.size_total)
        elif item == "DELETED":
            value = enc.number(await session.services.view.count_deleted(folder.id))
        elif item == "APPENDLIMIT":
            value = enc.number(session.services.max_message_size)
        elif item == "MAILBOXID":
            value = b"(" + folder.id.encode() + b")"
        else:  # the parser lets no other item through
            continue
        values.append(item.encode() + b" " + value)
    return enc.paren_list(values)


async def handle(session: Session, command: c.Status) -> Done:
    user_id = session.require_user()
    folder = await session.services.mailstore.folder_by_path(user_id, command.mailbox)
    values = await status_values(session, folder, command.items)
    session.untagged(b"STATUS " + enc.mailbox(folder.path) + b" " + values)
    return Done()
