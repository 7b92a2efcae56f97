"""Rows of the authentication log."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage.pagination import Cursor
from postern.storage.schema import application_passwords, authlog
from postern.storage.shared_writes import WriteBatcher

# One entry to write: its values, and the application password it says was used (its
# ``last_used_ms`` becomes the entry's time), if any.
Entry = tuple[dict[str, Any], str | None]


async def insert_entry(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(insert(authlog).values(**values))


async def _insert_entries(conn: AsyncConnection, entries: Sequence[Entry]) -> None:
    await conn.execute(insert(authlog), [values for values, _ in entries])
    used = [{"b_id": asp_id, "b_used": values["created_ms"]} for values, asp_id in entries if asp_id is not None]
    if used:
        stmt = update(application_passwords).where(application_passwords.c.id == bindparam("b_id")).values(last_used_ms=bindparam("b_used"))
        await conn.execute(stmt, used)


_ENTRY_COLUMNS = ("id", "user_id", "action", "result", "protocol", "sess", "ip", "data", "created_ms", "expires_ms")
_INSERT_SQL = f"INSERT INTO authlog ({', '.join(_ENTRY_COLUMNS)}) VALUES ({', '.join(':' + c for c in _ENTRY_COLUMNS)})"
_USED_SQL = "UPDATE application_passwords SET last_used_ms = :used WHERE id = :id"


def _insert_sqlite(conn: sqlite3.Connection, entries: Sequence[Entry]) -> None:
    conn.executemany(_INSERT_SQL, [values for values, _ in entries])
    used = [{"id": asp_id, "used": values["created_ms"]} for values, asp_id in entries if asp_id is not None]
    if used:
        conn.executemany(_USED_SQL, used)


def _try_insert(conn: sqlite3.Connection, entries: Sequence[Entry]) -> IntegrityError | None:
    conn.execute("SAVEPOINT authlog_entries")
    try:
        _insert_sqlite(conn, entries)
    except sqlite3.IntegrityError as error:
        conn.execute("ROLLBACK TO authlog_entries")
        conn.execute("RELEASE authlog_entries")
        return IntegrityError(_INSERT_SQL, None, error)
    conn.execute("RELEASE authlog_entries")
    return None


def _write_sqlite(conn: sqlite3.Connection, entries: Sequence[Entry]) -> list[Any]:
    """The batch on the driver's connection (see ``WriteBatcher.sqlite_batches``)."""
    error = _try_insert(conn, entries)
    if error is None:
        return [None] * len(entries)
    if len(entries) == 1:
        return [error]
    return [_try_insert(conn, [entry]) for entry in entries]


class EntryWriter(WriteBatcher[Entry]):
    """Writes the entries of concurrent logins together: one bulk INSERT for a batch
    (every IMAP, POP3 and SMTP AUTH login writes one), rather than a statement and a
    savepoint each; on SQLite on the driver's own connection, in one call. Entries go
    in user order, the order in which other transactions lock users (PostgreSQL's
    foreign key checks lock the user rows they refer to). An entry that cannot be
    written (its user deleted meanwhile) fails alone: the batch is then written entry
    by entry."""

    sqlite_batches = True

    def _write_batch_sqlite(self, conn: sqlite3.Connection, items: Sequence[Entry]) -> list[Any]:
        return _write_sqlite(conn, items)

    async def _write_batch(self, conn: AsyncConnection, items: Sequence[Entry]) -> list[Any]:
        ordered = sorted(items, key=lambda entry: entry[0]["user_id"])
        try:
            async with conn.begin_nested():
                await _insert_entries(conn, ordered)
            return [None] * len(items)
        except IntegrityError:
            pass
        results: list[Any] = []
        for entry in items:
            try:
                async with conn.begin_nested():
                    await _insert_entries(conn, [entry])
            except IntegrityError as error:
                results.append(error)
            else:
                results.append(None)
        return results


async def list_entries(
    conn: AsyncConnection,
    user_id: str,
    *,
    action: str | None,
    sess: str | None,
    ip: str | None,
    now_ms: int,
    limit: int,
    cursor: Cursor | None,
) -> tuple[list[Row], int]:
    """Live entries of a user, newest first; ``limit + 1`` rows. Cursor key: (created_ms, id)."""
    filters = [authlog.c.user_id == user_id, authlog.c.expires_ms > now_ms]
    if action:
        filters.append(authlog.c.action == action)
    if sess:
        filters.append(authlog.c.sess == sess)
    if ip:
        filters.append(authlog.c.ip == ip)
    total = await conn.scalar(select(func.count()).select_from(authlog).where(*filters))
    stmt = select(authlog).where(*filters)
    if cursor is not None:
        created, entry_id = cursor.key
        if cursor.direction == "previous":
            stmt = stmt.where(or_(authlog.c.created_ms > created, and_(authlog.c.created_ms == created, authlog.c.id > entry_id)))
            stmt = stmt.order_by(authlog.c.created_ms, authlog.c.id)
        else:
            stmt = stmt.where(or_(authlog.c.created_ms < created, and_(authlog.c.created_ms == created, authlog.c.id < entry_id)))
            stmt = stmt.order_by(authlog.c.created_ms.desc(), authlog.c.id.desc())
    else:
        stmt = stmt.order_by(authlog.c.created_ms.desc(), authlog.c.id.desc())
    rows = list(await conn.execute(stmt.limit(limit + 1)))
    return rows, int(total or 0)


async def delete_expired(conn: AsyncConnection, now_ms: int) -> int:
    result = await conn.execute(delete(authlog).where(authlog.c.expires_ms <= now_ms))
    return result.rowcount or 0
