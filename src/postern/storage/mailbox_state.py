"""What an IMAP session reads of a mailbox outside FETCH and SEARCH: the state SELECT
opens it with (the folder row, its UIDs, the first unseen, the keywords in use), the
UIDs added since the session last looked, and the folder at a path (APPEND), each
in one snapshot through ``quick_reads``."""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from postern.storage.database import Database
from postern.storage.quick_reads import read_rows
from postern.storage.schema import folders

_FOLDER_COLUMNS = tuple(column.name for column in folders.c)
# A folder's row, as ``select(folders)`` gives it (``subscribed`` a boolean on SQLite too).
if TYPE_CHECKING:
    FolderRow = Any  # its fields are the table's columns, which the checker cannot follow
else:
    FolderRow = namedtuple("FolderRow", _FOLDER_COLUMNS)
_SUBSCRIBED_AT = _FOLDER_COLUMNS.index("subscribed")

_FOLDER_SQL = f"SELECT {', '.join(_FOLDER_COLUMNS)} FROM folders WHERE user_id = :user AND path = :path"
# One pass over the folder's messages: each UID, whether it is seen, and its keywords
# when it has any (NULL for the common empty list, so that no string is made for it).
_MESSAGES_SQL = (
    "SELECT uid, seen, CASE WHEN keywords = '[]' THEN NULL ELSE keywords END FROM messages"
    " WHERE folder_id = (SELECT id FROM folders WHERE user_id = :user AND path = :path) ORDER BY uid"
)
_UIDS_AFTER_SQL = "SELECT uid FROM messages WHERE folder_id = :folder AND uid > :after ORDER BY uid"
_OWNED_SQL = "SELECT 1 FROM folders WHERE id = :folder AND user_id = :user"
_DELETED_SQL = "SELECT uid FROM messages WHERE folder_id = :folder AND deleted = TRUE ORDER BY uid"


def _folder(row: Any) -> FolderRow:
    values = list(row)
    values[_SUBSCRIBED_AT] = bool(values[_SUBSCRIBED_AT])
    return FolderRow(*values)


@dataclass(frozen=True, slots=True)
class MailboxState:
    folder: FolderRow
    uids: list[int]
    first_unseen_uid: int | None
    keywords: list[str]  # distinct, in the order first met


async def mailbox_state(db: Database, user_id: str, path: str) -> MailboxState | None:
    """The folder of ``user_id`` at ``path`` (normalised) with its messages' UIDs, the
    first unseen one and the keywords in use; None when there is no such folder."""
    params = {"user": user_id, "path": path}
    folder_rows, message_rows = await read_rows(db, [(_FOLDER_SQL, params), (_MESSAGES_SQL, params)])
    if not folder_rows:
        return None
    uids = [row[0] for row in message_rows]
    first_unseen = next((row[0] for row in message_rows if not row[1]), None)
    keywords: dict[str, None] = {}
    lists: set[str] = set()
    for row in message_rows:
        if row[2] is not None and row[2] not in lists:
            lists.add(row[2])
            for keyword in orjson.loads(row[2]):
                keywords.setdefault(keyword, None)
    return MailboxState(_folder(folder_rows[0]), uids, first_unseen, list(keywords))


async def folder_at(db: Database, user_id: str, path: str) -> FolderRow | None:
    """The folder of ``user_id`` at ``path`` (normalised), or None."""
    rows = (await read_rows(db, [(_FOLDER_SQL, {"user": user_id, "path": path})]))[0]
    return _folder(rows[0]) if rows else None


async def uids_after(db: Database, folder_id: str, after_uid: int) -> list[int]:
    """The UIDs of a folder above ``after_uid``, ascending."""
    rows = (await read_rows(db, [(_UIDS_AFTER_SQL, {"folder": folder_id, "after": after_uid})]))[0]
    return [row[0] for row in rows]


async def deleted_uids(db: Database, user_id: str, folder_id: str) -> list[int] | None:
    """The UIDs of the folder's ``\\Deleted`` messages, ascending, as committed now;
    None when the folder is not the user's."""
    params = {"folder": folder_id, "user": user_id}
    owned, rows = await read_rows(db, [(_OWNED_SQL, params), (_DELETED_SQL, params)])
    return [row[0] for row in rows] if owned else None
