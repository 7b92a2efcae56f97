"""Folders (IMAP mailboxes) with their UID and MODSEQ counters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, literal, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage.dialect import greatest, prefix_pattern
from postern.storage.schema import folders, users


async def insert_folders(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(folders.insert(), list(rows))


async def list_folders(conn: AsyncConnection, user_id: str) -> list[Row]:
    # INBOX first, as every client shows it, then the rest by path.
    inbox_first = folders.c.path != "INBOX"
    stmt = select(folders).where(folders.c.user_id == user_id).order_by(inbox_first, folders.c.path)
    return list(await conn.execute(stmt))


async def get_folder(conn: AsyncConnection, user_id: str, folder_id: str) -> Row | None:
    stmt = select(folders).where(folders.c.id == folder_id, folders.c.user_id == user_id)
    return (await conn.execute(stmt)).first()


async def get_folder_by_path(conn: AsyncConnection, user_id: str, path: str) -> Row | None:
    stmt = select(folders).where(folders.c.user_id == user_id, folders.c.path == path)
    return (await conn.execute(stmt)).first()


async def get_folder_by_special_use(conn: AsyncConnection, user_id: str, special_use: str) -> Row | None:
    stmt = select(folders).where(folders.c.user_id == user_id, folders.c.special_use == special_use).limit(1)
    return (await conn.execute(stmt)).first()


async def existing_paths(conn: AsyncConnection, user_id: str, paths: Sequence[str]) -> set[str]:
    stmt = select(folders.c.path).where(folders.c.user_id == user_id, folders.c.path.in_(list(paths)))
    return set((await conn.scalars(stmt)).all())


async def subtree(conn: AsyncConnection, user_id: str, path: str) -> list[Row]:
    """The folder at ``path`` and every folder below it."""
    prefix = path + "/"
    # SQLite's LIKE ignores ASCII case ("work/%" matches "Work/x"); the substr
    # comparison keeps the match exact on both databases.
    below = and_(folders.c.path.like(prefix_pattern(prefix), escape="\\"), func.substr(folders.c.path, 1, len(prefix)) == prefix)
    stmt = select(folders).where(folders.c.user_id == user_id, or_(folders.c.path == path, below))
    return list(await conn.execute(stmt))


async def set_path(conn: AsyncConnection, folder_id: str, path: str) -> None:
    await conn.execute(update(folders).where(folders.c.id == folder_id).values(path=path))


async def update_folder(conn: AsyncConnection, folder_id: str, values: dict[str, Any]) -> None:
    if values:
        await conn.execute(update(folders).where(folders.c.id == folder_id).values(**values))


# How far every folder's counters move on after an unclean stop, beyond the largest
# folder's message count (the most UIDs or MODSEQs one transaction can take in a folder:
# a COPY of a whole folder; a delivery batch takes at most a few hundred).
UNCLEAN_STOP_MARGIN = 100_000


async def advance_counters(conn: AsyncConnection) -> int:
    """Move every folder's next UID and MODSEQ past any that a transaction lost in a
    crash can have taken; return by how much (see ``postern.serve.run_marks``)."""
    largest = (await conn.execute(select(func.coalesce(func.max(folders.c.message_count), 0)))).scalar_one()
    gap = UNCLEAN_STOP_MARGIN + int(largest)
    await conn.execute(update(folders).values(uid_next=folders.c.uid_next + gap, modseq=folders.c.modseq + gap))
    return gap


async def allocate(conn: AsyncConnection, folder_id: str, uids: int) -> tuple[int, int]:
    """Take ``uids`` consecutive UIDs and one new MODSEQ: (first UID, MODSEQ).

    The UPDATE locks the folder row, so concurrent appends to one folder take turns
    here and UIDs are strictly ascending in commit order, as IMAP requires.
    """
    stmt = (
        update(folders)
        .where(folders.c.id == folder_id)
        .values(uid_next=folders.c.uid_next + uids, modseq=folders.c.modseq + 1)
        .returning(folders.c.uid_next, folders.c.modseq)
    )
    uid_next, modseq = (await conn.execute(stmt)).one()
    return int(uid_next) - uids, int(modseq)


async def folders_for_appends(conn: AsyncConnection, ids: Sequence[str], user_paths: Sequence[tuple[str, str]]) -> list[Row]:
    """The folders with these ids, and those at these (user_id, path) pairs (and
    maybe a few more: the caller matches the pairs), in one query for a batch; each
    row also carries its user's ``storage_used`` and ``quota_allowed``."""
    clauses: list[Any] = []
    if ids:
        clauses.append(folders.c.id.in_(sorted(set(ids))))
    if user_paths:
        user_ids = sorted({u for u, _ in user_paths})
        paths = sorted({p for _, p in user_paths})
        clauses.append(and_(folders.c.user_id.in_(user_ids), folders.c.path.in_(paths)))
    if not clauses:
        return []
    stmt = select(folders, users.c.storage_used, users.c.quota_allowed).join(users, users.c.id == folders.c.user_id).where(or_(*clauses))
    return list(await conn.execute(stmt))


async def lock_for_appends(
    conn: AsyncConnection, folder_ids: Sequence[str], read: dict[str, tuple[int, int]] | None = None
) -> dict[str, tuple[int, int]]:
    """Lock the folders' rows (in id order) until the transaction ends; their
    (uid_next, modseq) by id. A folder deleted meanwhile is missing.

    ``read``: the values this transaction has read already. On SQLite, whose writers
    take turns (``BEGIN IMMEDIATE``), they are current, and no query is needed."""
    if read is not None and conn.dialect.name == "sqlite" and set(folder_ids) <= read.keys():
        return {f: read[f] for f in folder_ids}
    stmt = (
        select(folders.c.id, folders.c.uid_next, folders.c.modseq)
        .where(folders.c.id.in_(sorted(set(folder_ids))))
        .order_by(folders.c.id)
        .with_for_update()
    )
    return {r.id: (int(r.uid_next), int(r.modseq)) for r in await conn.execute(stmt)}


async def add_appends(conn: AsyncConnection, appends: dict[str, tuple[int, int, int]]) -> None:
    """For each folder locked by ``lock_for_appends``: (messages, unseen, size) appended.
    Takes as many UIDs and MODSEQs as messages (one each, as ``allocate`` per message
    would) and adds to the counters; one statement for the batch."""
    if not appends:
        return
    n: Any = bindparam("b_messages")
    stmt = (
        update(folders)
        .where(folders.c.id == bindparam("b_id"))
        .values(
            uid_next=folders.c.uid_next + n,
            modseq=folders.c.modseq + n,
            message_count=folders.c.message_count + n,
            unseen_count=folders.c.unseen_count + bindparam("b_unseen"),
            size_total=folders.c.size_total + bindparam("b_size"),
        )
    )
    await conn.execute(
        stmt,
        [{"b_id": f, "b_messages": m, "b_unseen": u, "b_size": z} for f, (m, u, z) in sorted(appends.items())],
    )


async def adjust_counters(
    conn: AsyncConnection, folder_id: str, *, messages: int = 0, unseen: int = 0, size: int = 0, modseq: int | None = None
) -> None:
    values: dict[str, Any] = {}
    if messages:
        values["message_count"] = folders.c.message_count + messages
    if unseen:
        values["unseen_count"] = folders.c.unseen_count + unseen
    if size:
        values["size_total"] = folders.c.size_total + size
    if modseq is not None:
        values["modseq"] = greatest(conn, folders.c.modseq, literal(modseq))
    if values:
        await conn.execute(update(folders).where(folders.c.id == folder_id).values(**values))


async def next_modseq(conn: AsyncConnection, folder_id: str) -> int:
    stmt = update(folders).where(folders.c.id == folder_id).values(modseq=folders.c.modseq + 1).returning(folders.c.modseq)
    return int((await conn.execute(stmt)).scalar_one())


async def delete_folder(conn: AsyncConnection, folder_id: str) -> None:
    await conn.execute(delete(folders).where(folders.c.id == folder_id))
