"""COPY and UID COPY (RFC 3501 §6.4.7), MOVE and UID MOVE (RFC 6851), answering
with COPYUID (RFC 4315 UIDPLUS)."""

from __future__ import annotations

from postern.errors import NotFound

from .. import commands as c
from .. import encode as enc
from ..session import Done, Session, no


async def handle(session: Session, command: c.Copy | c.Move) -> Done:
    selected = session.require_selected()
    user_id = session.require_user()
    move = isinstance(command, c.Move)
    if move and selected.read_only:
        raise no("Mailbox is read-only", "READ-ONLY")
    indexes = selected.resolve(command.sequence_set, uid=command.uid)
    view = session.services.view
    try:
        target = await session.services.mailstore.folder_by_path(user_id, command.mailbox)
    except NotFound:
        raise no("Mailbox does not exist", "TRYCREATE") from None
    uids = [selected.uids[i] for i in indexes]
    if not uids:
        return Done()
    if move:
        if target.id == selected.folder_id:
            uidvalidity, pairs = await view.move_within(user_id, selected.folder_id, uids)
        else:
            uidvalidity, pairs = await view.move(user_id, selected.folder_id, uids, target.id)
    else:
        uidvalidity, pairs = await view.copy(user_id, selected.folder_id, uids, target.id)
    if not pairs:
        if command.uid:
            return Done()
        raise no("The messages no longer exist", "EXPUNGEISSUED")
    code = enc.response_code("COPYUID", enc.number(uidvalidity), _uid_list([s for s, _ in pairs]), _uid_list([d for _, d in pairs]))
    if not move:
        return Done("completed", code)
    # RFC 6851 §4.3: COPYUID in an untagged OK before the expunges.
    session.write(b"* OK " + code + b" Moved\r\n")
    session.announce_expunged(s for s, _ in pairs)
    return Done()


def _uid_list(uids: list[int]) -> bytes:
    """UIDs in the order given (COPYUID pairs them by position): ranges only where
    consecutive and ascending."""
    pieces: list[str] = []
    i = 0
    while i < len(uids):
        j = i
        while j + 1 < len(uids) and uids[j + 1] == uids[j] + 1:
            j += 1
        pieces.append(str(uids[i]) if i == j else f"{uids[i]}:{uids[j]}")
        i = j + 1
    return ",".join(pieces).encode()
