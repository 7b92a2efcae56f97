"""Messages, their blobs' reference counts and threads."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, func, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage.dialect import insert_for
from postern.storage.pagination import Cursor
from postern.storage.schema import blobs, messages, thread_refs, threads

# A UID set: inclusive ranges; an end of None means "up to the highest UID" (IMAP's *).
UidRanges = Sequence[tuple[int, int | None]]

LIST_COLUMNS = (
    messages.c.uid,
    messages.c.folder_id,
    messages.c.thread_id,
    messages.c.from_name,
    messages.c.from_address,
    messages.c.subject,
    messages.c.date_ms,
    messages.c.internal_ms,
    messages.c.intro,
    messages.c.has_attachments,
    messages.c.size,
    messages.c.message_id,
    messages.c.seen,
    messages.c.deleted,
    messages.c.flagged,
    messages.c.draft,
    messages.c.answered,
)
# The listing's columns by position: the hot path (hot_reads) selects exactly these.
LIST_FIELDS = tuple(column.name for column in LIST_COLUMNS)


def _uid_filter(uids: UidRanges) -> Any:
    singles = [start for start, end in uids if end == start]
    clauses: list[Any] = []
    if singles:
        clauses.append(messages.c.uid.in_(singles))
    for start, end in uids:
        if end is None:
            clauses.append(messages.c.uid >= start)
        elif end != start:
            clauses.append(messages.c.uid.between(start, end))
    return or_(*clauses) if clauses else messages.c.uid.is_(None)


# Blobs ------------------------------------------------------------------------------


async def add_blob_refs(conn: AsyncConnection, refs: dict[str, tuple[int, int]], now_ms: int) -> list[str]:
    """Count new references: ``{key: (size, how_many)}``. Returns the keys whose row
    was created or had no references left, whose files the collector may be removing."""
    if not refs:
        return []
    # One statement for all the keys (in key order, so that concurrent transactions
    # lock the rows in the same order).
    stmt = insert_for(conn, blobs)
    stmt = stmt.on_conflict_do_update(
        index_elements=["key"],
        set_={"refcount": case((blobs.c.refcount < 0, 0), else_=blobs.c.refcount) + stmt.excluded.refcount},
    ).returning(blobs.c.key, blobs.c.refcount)
    rows = [{"key": key, "size": size, "refcount": count, "created_ms": now_ms} for key, (size, count) in sorted(refs.items())]
    counts = {row.key: row.refcount for row in await conn.execute(stmt, rows)}
    return [key for key, (_, count) in refs.items() if counts[key] == count]


async def claim_orphans(conn: AsyncConnection, keys: Sequence[str], now_ms: int) -> None:
    for key in keys:
        stmt = insert_for(conn, blobs).values(key=key, size=0, refcount=0, created_ms=now_ms)
        await conn.execute(stmt.on_conflict_do_nothing(index_elements=["key"]))


async def release_blobs(conn: AsyncConnection, keys: Iterable[str]) -> None:
    counts: dict[str, int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    if counts:
        stmt = update(blobs).where(blobs.c.key == bindparam("b_key")).values(refcount=blobs.c.refcount - bindparam("b_count"))
        await conn.execute(stmt, [{"b_key": key, "b_count": count} for key, count in counts.items()])


async def unreferenced_blobs(conn: AsyncConnection, limit: int) -> list[str]:
    stmt = select(blobs.c.key).where(blobs.c.refcount <= 0).limit(limit)
    return list((await conn.scalars(stmt)).all())


async def forget_blobs(conn: AsyncConnection, keys: Sequence[str]) -> list[str]:
    """Delete the rows of blobs that are still unreferenced; returns the keys deleted."""
    if not keys:
        return []
    stmt = delete(blobs).where(blobs.c.key.in_(list(keys)), blobs.c.refcount <= 0).returning(blobs.c.key)
    return list((await conn.scalars(stmt)).all())


async def known_blobs(conn: AsyncConnection, keys: Sequence[str]) -> set[str]:
    if not keys:
        return set()
    return set((await conn.scalars(select(blobs.c.key).where(blobs.c.key.in_(list(keys))))).all())


# Messages -----------------------------------------------------------------------------


async def insert_messages(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(messages.insert(), list(rows))


async def list_messages(conn: AsyncConnection, folder_id: str, *, descending: bool, limit: int, cursor: Cursor | None) -> list[Row]:
    """A page of a folder by UID, ``limit + 1`` rows, seeking from the cursor's UID."""
    stmt = select(*LIST_COLUMNS).where(messages.c.folder_id == folder_id)
    # Walking backwards (a "previous" cursor) flips the order, and the page is put
    # back in order by the caller.
    forward = cursor is None or cursor.direction == "next"
    ascending = forward != descending
    if cursor is not None:
        after = messages.c.uid > cursor.key[0] if ascending else messages.c.uid < cursor.key[0]
        stmt = stmt.where(after)
    stmt = stmt.order_by(messages.c.uid.asc() if ascending else messages.c.uid.desc())
    return list(await conn.execute(stmt.limit(limit + 1)))


async def get_message(conn: AsyncConnection, folder_id: str, uid: int) -> Row | None:
    stmt = select(messages).where(messages.c.folder_id == folder_id, messages.c.uid == uid)
    return (await conn.execute(stmt)).first()


async def select_messages(conn: AsyncConnection, folder_id: str, uids: UidRanges) -> list[Row]:
    stmt = select(messages).where(messages.c.folder_id == folder_id, _uid_filter(uids)).order_by(messages.c.uid)
    return list(await conn.execute(stmt))


async def set_flags(conn: AsyncConnection, folder_id: str, uids: UidRanges, values: dict[str, Any], modseq: int) -> list[Row]:
    """Set flag columns on the matching messages that differ; returns (uid, seen_before)."""
    changed = or_(*(messages.c[name] != value for name, value in values.items()))
    # The old seen value is needed to keep the unseen counter right; read it first, as
    # RETURNING gives only the new values.
    where = and_(messages.c.folder_id == folder_id, _uid_filter(uids), changed)
    before = list(await conn.execute(select(messages.c.uid, messages.c.seen).where(where)))
    if before:
        await conn.execute(
            update(messages)
            .where(messages.c.folder_id == folder_id, messages.c.uid.in_([r.uid for r in before]))
            .values(**values, modseq=modseq)
        )
    return before


async def set_expiry(conn: AsyncConnection, folder_id: str, uids: UidRanges, expires_ms: int | None, modseq: int) -> int:
    result = await conn.execute(
        update(messages).where(messages.c.folder_id == folder_id, _uid_filter(uids)).values(expires_ms=expires_ms, modseq=modseq)
    )
    return result.rowcount


async def delete_messages(conn: AsyncConnection, folder_id: str, uids: Sequence[int]) -> list[Row]:
    """Delete and return (uid, blob_key, size, seen) of the messages that existed."""
    if not uids:
        return []
    stmt = (
        delete(messages)
        .where(messages.c.folder_id == folder_id, messages.c.uid.in_(list(uids)))
        .returning(messages.c.uid, messages.c.blob_key, messages.c.size, messages.c.seen, messages.c.user_id)
    )
    return list(await conn.execute(stmt))


async def folder_message_keys(conn: AsyncConnection, folder_id: str) -> list[Row]:
    stmt = select(messages.c.blob_key, messages.c.size).where(messages.c.folder_id == folder_id)
    return list(await conn.execute(stmt))


async def delete_folder_messages(conn: AsyncConnection, folder_id: str) -> None:
    await conn.execute(delete(messages).where(messages.c.folder_id == folder_id))


async def expired_messages(conn: AsyncConnection, now_ms: int, limit: int) -> list[Row]:
    stmt = (
        select(messages.c.folder_id, messages.c.uid, messages.c.user_id)
        .where(messages.c.expires_ms.is_not(None), messages.c.expires_ms <= now_ms)
        .limit(limit)
    )
    return list(await conn.execute(stmt))


# Threads, for a batch of appends ------------------------------------------------------

_CHUNK = 500  # values per IN list: well within SQLite's and asyncpg's parameter limits


async def threads_of_refs(conn: AsyncConnection, user_ids: Sequence[str], refs: Sequence[str]) -> list[Row]:
    """(user_id, ref, thread_id, subject) of the known refs among ``refs`` of these
    users (the caller matches the (user, ref) pairs)."""
    found: list[Row] = []
    wanted = sorted(set(refs))
    users_ = sorted(set(user_ids))
    for start in range(0, len(wanted), _CHUNK):
        stmt = (
            select(thread_refs.c.user_id, thread_refs.c.ref, thread_refs.c.thread_id, threads.c.subject)
            .join(threads, threads.c.id == thread_refs.c.thread_id)
            .where(thread_refs.c.user_id.in_(users_), thread_refs.c.ref.in_(wanted[start : start + _CHUNK]))
        )
        found.extend(await conn.execute(stmt))
    return found


async def threads_by_subjects(conn: AsyncConnection, user_ids: Sequence[str], subjects: Sequence[str], since_ms: int) -> list[Row]:
    """(id, user_id, subject, updated_ms) of the threads with these subjects updated
    since ``since_ms`` (the caller matches the (user, subject) pairs)."""
    found: list[Row] = []
    wanted = sorted(set(subjects))
    users_ = sorted(set(user_ids))
    for start in range(0, len(wanted), _CHUNK):
        stmt = select(threads.c.id, threads.c.user_id, threads.c.subject, threads.c.updated_ms).where(
            threads.c.user_id.in_(users_), threads.c.subject.in_(wanted[start : start + _CHUNK]), threads.c.updated_ms >= since_ms
        )
        found.extend(await conn.execute(stmt))
    return found


async def insert_threads(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Rows of (id, user_id, subject, updated_ms)."""
    if rows:
        await conn.execute(threads.insert(), list(rows))


async def touch_threads(conn: AsyncConnection, thread_ids: Sequence[str], now_ms: int) -> None:
    ids = sorted(set(thread_ids))
    for start in range(0, len(ids), _CHUNK):
        await conn.execute(update(threads).where(threads.c.id.in_(ids[start : start + _CHUNK])).values(updated_ms=now_ms))


async def add_thread_refs_many(conn: AsyncConnection, rows: Sequence[tuple[str, str, str]]) -> None:
    """(user_id, ref, thread_id) rows; a ref already known keeps its thread."""
    if rows:
        stmt = insert_for(conn, thread_refs).on_conflict_do_nothing(index_elements=["user_id", "ref"])
        await conn.execute(stmt, [{"user_id": u, "ref": r[:255], "thread_id": t} for u, r, t in sorted(rows)])


async def count_messages(conn: AsyncConnection, folder_id: str) -> tuple[int, int, int]:
    """Recount (messages, unseen, size) of a folder from its rows."""
    stmt = select(
        func.count(),
        func.coalesce(func.sum(case((messages.c.seen.is_(False), 1), else_=0)), 0),
        func.coalesce(func.sum(messages.c.size), 0),
    ).where(messages.c.folder_id == folder_id)
    total, unseen, size = (await conn.execute(stmt)).one()
    return int(total), int(unseen), int(size)
