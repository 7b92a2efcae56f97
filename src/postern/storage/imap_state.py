"""IMAP state that every process shares: a folder's \\Recent claim (the highest UID
some read-write session has taken as recent), the quick (UIDNEXT, MODSEQ) read a
session compares its view with after each command, and subscriptions to names that
are no folder now."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage.database import Database
from postern.storage.dialect import insert_for
from postern.storage.quick_reads import read_rows
from postern.storage.schema import folders, imap_recent, imap_subscriptions, messages

_FOLDER_STATE_SQL = "SELECT uid_next, modseq FROM folders WHERE id = :folder"
_CLAIMED_SQL = "SELECT claimed_uid FROM imap_recent WHERE folder_id = :folder"
# The columns of ``imap.META_COLUMNS``, in their order.
_CHANGED_SQL = (
    "SELECT uid, modseq, size, internal_ms, seen, flagged, draft, deleted, answered, keywords, blob_key, prefix"
    " FROM messages WHERE folder_id = :folder AND modseq > :modseq ORDER BY uid"
)
_VANISHED_SQL = "SELECT uid FROM message_tombstones WHERE folder_id = :folder AND modseq > :modseq ORDER BY uid"


async def folder_state(db: Database, folder_id: str) -> tuple[int, int] | None:
    """(UIDNEXT, HIGHESTMODSEQ) of a folder as committed now; None when it is gone."""
    rows = (await read_rows(db, [(_FOLDER_STATE_SQL, {"folder": folder_id})]))[0]
    if not rows:
        return None
    return int(rows[0][0]), int(rows[0][1])


async def changed_since(db: Database, folder_id: str, modseq: int) -> list[Any]:
    """The metadata rows (``imap.META_COLUMNS``, as tuples) of the folder's messages
    changed after ``modseq``, by UID: what a session reads after each command that
    sees the folder's MODSEQ move (``quick_reads``, not a transaction of the engine)."""
    return (await read_rows(db, [(_CHANGED_SQL, {"folder": folder_id, "modseq": modseq})]))[0]


async def vanished_since(db: Database, folder_id: str, modseq: int) -> list[int]:
    """UIDs expunged from the folder with a MODSEQ above ``modseq``, ascending."""
    rows = (await read_rows(db, [(_VANISHED_SQL, {"folder": folder_id, "modseq": modseq})]))[0]
    return [int(row[0]) for row in rows]


async def claimed_uid(db: Database, folder_id: str) -> int:
    """The highest UID of the folder some session has claimed as \\Recent (0: none)."""
    rows = (await read_rows(db, [(_CLAIMED_SQL, {"folder": folder_id})]))[0]
    return int(rows[0][0]) if rows else 0


async def claim_recent(conn: AsyncConnection, folder_id: str, up_to: int) -> int:
    """Claim the UIDs up to ``up_to`` as this session's \\Recent; returns the claim
    before, so that the UIDs in (returned value, up_to] are this session's alone.

    A compare-and-set: the UPDATE only moves the claim on from the value read, so of
    two sessions (in any process) racing, one wins and the other reads again."""
    await conn.execute(insert_for(conn, imap_recent).values(folder_id=folder_id, claimed_uid=0).on_conflict_do_nothing())
    while True:
        old = (await conn.execute(select(imap_recent.c.claimed_uid).where(imap_recent.c.folder_id == folder_id))).scalar()
        old = int(old or 0)
        if old >= up_to:
            return up_to
        moved = await conn.execute(
            update(imap_recent).where(imap_recent.c.folder_id == folder_id, imap_recent.c.claimed_uid == old).values(claimed_uid=up_to)
        )
        if moved.rowcount == 1:
            return old


async def count_recent(conn: AsyncConnection, folder_id: str) -> int:
    """How many of the folder's messages no session has claimed as \\Recent."""
    claimed = select(imap_recent.c.claimed_uid).where(imap_recent.c.folder_id == folder_id).scalar_subquery()
    stmt = select(func.count()).where(messages.c.folder_id == folder_id, messages.c.uid > func.coalesce(claimed, 0))
    return int((await conn.execute(stmt)).scalar() or 0)


async def orphan_subscriptions(conn: AsyncConnection, user_id: str) -> list[str]:
    rows = await conn.execute(select(imap_subscriptions.c.path).where(imap_subscriptions.c.user_id == user_id))
    return [row[0] for row in rows]


async def add_orphan_subscription(conn: AsyncConnection, user_id: str, path: str) -> None:
    await conn.execute(insert_for(conn, imap_subscriptions).values(user_id=user_id, path=path).on_conflict_do_nothing())


async def remove_orphan_subscription(conn: AsyncConnection, user_id: str, path: str) -> bool:
    result = await conn.execute(
        delete(imap_subscriptions).where(imap_subscriptions.c.user_id == user_id, imap_subscriptions.c.path == path)
    )
    return bool(result.rowcount)


async def set_subscribed(conn: AsyncConnection, user_id: str, paths: list[str], subscribed: bool) -> None:
    """Set the subscription of the user's folders at these paths."""
    if paths:
        await conn.execute(update(folders).where(folders.c.user_id == user_id, folders.c.path.in_(paths)).values(subscribed=subscribed))
