"""The statements of a batch of appends (``MailStore._store_batch``), on the database
driver's own connection.

A batch takes a dozen statements whatever its size, all inside the write
transaction; on SQLite, inside the one write lock every process shares. Through
SQLAlchemy each statement costs far more Python than the database spends on it
(compiling, binding each parameter set, building result rows: about 2 ms per
message). Here the SQL text is fixed and the parameters go to the driver as
tuples:

* SQLite: ``sqlite3``'s own ``execute``/``executemany``, in the event loop's thread
  when the database runs its statements inline (the mail workers), or as one call in
  aiosqlite's thread per statement otherwise;
* PostgreSQL through asyncpg: its ``fetch``/``executemany`` (arrays instead of IN
  lists, ``unnest`` for the blob upsert), in the transaction SQLAlchemy opened.

Any other driver gets the same operations through SQLAlchemy (``SqlAlchemyRows``).
Every implementation locks in the order the mailstore always locks: users, then
folders, then blobs, each by key.
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage import folders as folder_store
from postern.storage import message_events as event_store
from postern.storage import messages as message_store
from postern.storage import users as user_store
from postern.storage.ids import new_id
from postern.storage.sqlite_driver import sqlite_driver

T = TypeVar("T")

# A folder as the append path needs it, with its user's usage and quota.
FolderForAppend = namedtuple(
    "FolderForAppend",
    ("id", "user_id", "path", "retention_ms", "uidvalidity", "uid_next", "modseq", "storage_used", "quota_allowed"),
)
ThreadOfRef = namedtuple("ThreadOfRef", ("user_id", "ref", "thread_id", "subject"))
ThreadBySubject = namedtuple("ThreadBySubject", ("id", "user_id", "subject", "updated_ms"))

# The columns of a message row, in the order of the INSERT below.
MESSAGE_COLUMNS = (
    "folder_id", "uid", "user_id", "blob_key", "size", "internal_ms", "modseq",
    "seen", "flagged", "draft", "deleted", "answered", "keywords", "thread_id",
    "from_name", "from_address", "subject", "message_id", "date_ms", "intro",
    "has_attachments", "summary", "expires_ms", "mid", "prefix",
)  # fmt: skip
_FOLDER_COLUMNS = "f.id, f.user_id, f.path, f.retention_ms, f.uidvalidity, f.uid_next, f.modseq, u.storage_used, u.quota_allowed"
_CHUNK = 500  # values per IN list on SQLite (its limit is 32,766 parameters)


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def _chunks(values: Sequence[T]) -> list[Sequence[T]]:
    return [values[start : start + _CHUNK] for start in range(0, len(values), _CHUNK)]


def _event_rows(events: Sequence[tuple[str, str, str, dict[str, Any], int]]) -> list[tuple[Any, ...]]:
    return [(new_id(), u, m, a, orjson.dumps(d).decode(), t) for u, m, a, d, t in events]


class SqliteRows:
    """The batch's statements on a ``sqlite3`` connection. ``hop``: how to run a
    function that uses the connection (at once when inline, else in aiosqlite's
    thread)."""

    _MESSAGE_SQL = f"INSERT INTO messages ({', '.join(MESSAGE_COLUMNS)}) VALUES ({_marks(len(MESSAGE_COLUMNS))})"
    _EVENT_SQL = "INSERT INTO message_events (id, user_id, mid, action, data, created_ms) VALUES (?, ?, ?, ?, ?, ?)"
    _USAGE_SQL = "UPDATE users SET storage_used = CASE WHEN storage_used + ? < 0 THEN 0 ELSE storage_used + ? END WHERE id = ?"
    _APPENDS_SQL = (
        "UPDATE folders SET uid_next = uid_next + ?, modseq = modseq + ?, message_count = message_count + ?,"
        " unseen_count = unseen_count + ?, size_total = size_total + ? WHERE id = ?"
    )
    _THREAD_SQL = "INSERT INTO threads (id, user_id, subject, updated_ms) VALUES (?, ?, ?, ?)"
    _REF_SQL = "INSERT INTO thread_refs (user_id, ref, thread_id) VALUES (?, ?, ?) ON CONFLICT (user_id, ref) DO NOTHING"

    def __init__(self, conn: sqlite3.Connection, hop: Callable[[Callable[[], Any]], Any] | None):
        self._conn = conn
        self._hop = hop

    async def _run(self, work: Callable[[], T]) -> T:
        if self._hop is None:
            return work()
        return await self._hop(work)  # type: ignore[no-any-return]

    def _fetch(self, sql: str, args: Sequence[Any]) -> list[Any]:
        return self._conn.execute(sql, args).fetchall()

    async def folders(self, ids: Sequence[str], user_paths: Sequence[tuple[str, str]]) -> list[FolderForAppend]:
        clauses: list[str] = []
        args: list[Any] = []
        if ids:
            wanted = sorted(set(ids))
            clauses.append(f"f.id IN ({_marks(len(wanted))})")
            args += wanted
        if user_paths:
            user_ids = sorted({u for u, _ in user_paths})
            paths = sorted({p for _, p in user_paths})
            clauses.append(f"(f.user_id IN ({_marks(len(user_ids))}) AND f.path IN ({_marks(len(paths))}))")
            args += user_ids + paths
        if not clauses:
            return []
        sql = f"SELECT {_FOLDER_COLUMNS} FROM folders f JOIN users u ON u.id = f.user_id WHERE {' OR '.join(clauses)}"
        return [FolderForAppend._make(row) for row in await self._run(lambda: self._fetch(sql, args))]

    async def lock_usage(self, user_ids: Sequence[str], read: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
        # SQLite's writers take turns (BEGIN IMMEDIATE): what this transaction read is current.
        if set(user_ids) <= read.keys():
            return {u: read[u] for u in user_ids}
        wanted = sorted(set(user_ids))
        sql = f"SELECT id, storage_used, quota_allowed FROM users WHERE id IN ({_marks(len(wanted))})"
        return {r[0]: (int(r[1]), int(r[2])) for r in await self._run(lambda: self._fetch(sql, wanted))}

    async def lock_folders(self, folder_ids: Sequence[str], read: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
        if set(folder_ids) <= read.keys():
            return {f: read[f] for f in folder_ids}
        wanted = sorted(set(folder_ids))
        sql = f"SELECT id, uid_next, modseq FROM folders WHERE id IN ({_marks(len(wanted))})"
        return {r[0]: (int(r[1]), int(r[2])) for r in await self._run(lambda: self._fetch(sql, wanted))}

    async def add_usage(self, deltas: dict[str, int]) -> None:
        args = [(d, d, u) for u, d in sorted(deltas.items()) if d]
        if args:
            await self._run(lambda: self._conn.executemany(self._USAGE_SQL, args))

    async def add_appends(self, appends: dict[str, tuple[int, int, int]]) -> None:
        args = [(m, m, m, un, z, f) for f, (m, un, z) in sorted(appends.items())]
        if args:
            await self._run(lambda: self._conn.executemany(self._APPENDS_SQL, args))

    async def add_blob_refs(self, refs: dict[str, tuple[int, int]], now_ms: int) -> list[str]:
        """Count new references: ``{key: (size, how_many)}``. Returns the keys whose row
        was created or had no references left (see ``messages.add_blob_refs``)."""
        if not refs:
            return []
        items = sorted(refs.items())
        counts: dict[str, int] = {}
        for chunk in _chunks(items):
            sql = (
                "INSERT INTO blobs (key, size, refcount, created_ms) VALUES "
                + ", ".join(["(?, ?, ?, ?)"] * len(chunk))
                + " ON CONFLICT (key) DO UPDATE SET refcount ="
                " CASE WHEN blobs.refcount < 0 THEN 0 ELSE blobs.refcount END + excluded.refcount RETURNING key, refcount"
            )
            args = [value for key, (size, count) in chunk for value in (key, size, count, now_ms)]
            counts.update(await self._run(lambda: self._fetch(sql, args)))  # noqa: B023 (run at once)
        return [key for key, (_, count) in refs.items() if counts[key] == count]

    async def threads_of_refs(self, user_ids: Sequence[str], refs: Sequence[str]) -> list[ThreadOfRef]:
        users_ = sorted(set(user_ids))
        found: list[ThreadOfRef] = []
        for chunk in _chunks(sorted(set(refs))):
            sql = (
                "SELECT r.user_id, r.ref, r.thread_id, t.subject FROM thread_refs r JOIN threads t ON t.id = r.thread_id"
                f" WHERE r.user_id IN ({_marks(len(users_))}) AND r.ref IN ({_marks(len(chunk))})"
            )
            args = [*users_, *chunk]
            found.extend(ThreadOfRef._make(r) for r in await self._run(lambda: self._fetch(sql, args)))  # noqa: B023
        return found

    async def threads_by_subjects(self, user_ids: Sequence[str], subjects: Sequence[str], since_ms: int) -> list[ThreadBySubject]:
        users_ = sorted(set(user_ids))
        found: list[ThreadBySubject] = []
        for chunk in _chunks(sorted(set(subjects))):
            sql = (
                f"SELECT id, user_id, subject, updated_ms FROM threads WHERE user_id IN ({_marks(len(users_))})"
                f" AND subject IN ({_marks(len(chunk))}) AND updated_ms >= ?"
            )
            args = [*users_, *chunk, since_ms]
            found.extend(ThreadBySubject._make(r) for r in await self._run(lambda: self._fetch(sql, args)))  # noqa: B023
        return found

    async def insert_threads(self, rows: Sequence[dict[str, Any]]) -> None:
        args = [(r["id"], r["user_id"], r["subject"], r["updated_ms"]) for r in rows]
        if args:
            await self._run(lambda: self._conn.executemany(self._THREAD_SQL, args))

    async def touch_threads(self, thread_ids: Sequence[str], now_ms: int) -> None:
        for chunk in _chunks(sorted(set(thread_ids))):
            sql = f"UPDATE threads SET updated_ms = ? WHERE id IN ({_marks(len(chunk))})"
            args = [now_ms, *chunk]
            await self._run(lambda: self._conn.execute(sql, args))  # noqa: B023

    async def add_thread_refs(self, rows: Sequence[tuple[str, str, str]]) -> None:
        args = [(u, r[:255], t) for u, r, t in sorted(rows)]
        if args:
            await self._run(lambda: self._conn.executemany(self._REF_SQL, args))

    async def insert_messages(self, rows: Sequence[dict[str, Any]]) -> None:
        args = [tuple(row[name] for name in MESSAGE_COLUMNS) for row in rows]
        if args:
            await self._run(lambda: self._conn.executemany(self._MESSAGE_SQL, args))

    async def add_events(self, events: Sequence[tuple[str, str, str, dict[str, Any], int]]) -> None:
        args = _event_rows(events)
        if args:
            await self._run(lambda: self._conn.executemany(self._EVENT_SQL, args))


class AsyncpgRows:
    """The batch's statements on an asyncpg connection, inside the transaction that
    SQLAlchemy's adapter opened for it. Lists go as arrays (``= ANY($n)``): one
    statement, prepared once per connection by asyncpg, whatever the batch size."""

    _FOLDERS_SQL = (
        f"SELECT {_FOLDER_COLUMNS} FROM folders f JOIN users u ON u.id = f.user_id"
        " WHERE f.id = ANY($1::varchar[]) OR (f.user_id = ANY($2::varchar[]) AND f.path = ANY($3::text[]))"
    )
    _LOCK_USERS_SQL = "SELECT id, storage_used, quota_allowed FROM users WHERE id = ANY($1::varchar[]) ORDER BY id FOR UPDATE"
    _LOCK_FOLDERS_SQL = "SELECT id, uid_next, modseq FROM folders WHERE id = ANY($1::varchar[]) ORDER BY id FOR UPDATE"
    _USAGE_SQL = "UPDATE users SET storage_used = CASE WHEN storage_used + $1 < 0 THEN 0 ELSE storage_used + $1 END WHERE id = $2"
    _APPENDS_SQL = (
        "UPDATE folders SET uid_next = uid_next + $1, modseq = modseq + $1, message_count = message_count + $1,"
        " unseen_count = unseen_count + $2, size_total = size_total + $3 WHERE id = $4"
    )
    _BLOBS_SQL = (
        "INSERT INTO blobs (key, size, refcount, created_ms)"
        " SELECT * FROM unnest($1::varchar[], $2::bigint[], $3::int[], $4::bigint[])"
        " ON CONFLICT (key) DO UPDATE SET refcount ="
        " CASE WHEN blobs.refcount < 0 THEN 0 ELSE blobs.refcount END + excluded.refcount RETURNING key, refcount"
    )
    _REFS_SQL = (
        "SELECT r.user_id, r.ref, r.thread_id, t.subject FROM thread_refs r JOIN threads t ON t.id = r.thread_id"
        " WHERE r.user_id = ANY($1::varchar[]) AND r.ref = ANY($2::varchar[])"
    )
    _SUBJECTS_SQL = (
        "SELECT id, user_id, subject, updated_ms FROM threads"
        " WHERE user_id = ANY($1::varchar[]) AND subject = ANY($2::text[]) AND updated_ms >= $3"
    )
    _THREAD_SQL = "INSERT INTO threads (id, user_id, subject, updated_ms) VALUES ($1, $2, $3, $4)"
    _TOUCH_SQL = "UPDATE threads SET updated_ms = $1 WHERE id = ANY($2::varchar[])"
    _REF_SQL = "INSERT INTO thread_refs (user_id, ref, thread_id) VALUES ($1, $2, $3) ON CONFLICT (user_id, ref) DO NOTHING"
    _MESSAGE_SQL = (
        f"INSERT INTO messages ({', '.join(MESSAGE_COLUMNS)}) VALUES ({', '.join(f'${n}' for n in range(1, len(MESSAGE_COLUMNS) + 1))})"
    )
    _EVENT_SQL = "INSERT INTO message_events (id, user_id, mid, action, data, created_ms) VALUES ($1, $2, $3, $4, $5, $6)"

    def __init__(self, conn: Any):
        self._conn = conn

    async def folders(self, ids: Sequence[str], user_paths: Sequence[tuple[str, str]]) -> list[FolderForAppend]:
        if not ids and not user_paths:
            return []
        user_ids = sorted({u for u, _ in user_paths})
        paths = sorted({p for _, p in user_paths})
        rows = await self._conn.fetch(self._FOLDERS_SQL, sorted(set(ids)), user_ids, paths)
        return [FolderForAppend._make(row) for row in rows]

    async def lock_usage(self, user_ids: Sequence[str], read: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
        rows = await self._conn.fetch(self._LOCK_USERS_SQL, sorted(set(user_ids)))
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}

    async def lock_folders(self, folder_ids: Sequence[str], read: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
        rows = await self._conn.fetch(self._LOCK_FOLDERS_SQL, sorted(set(folder_ids)))
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}

    async def add_usage(self, deltas: dict[str, int]) -> None:
        args = [(d, u) for u, d in sorted(deltas.items()) if d]
        if args:
            await self._conn.executemany(self._USAGE_SQL, args)

    async def add_appends(self, appends: dict[str, tuple[int, int, int]]) -> None:
        args = [(m, un, z, f) for f, (m, un, z) in sorted(appends.items())]
        if args:
            await self._conn.executemany(self._APPENDS_SQL, args)

    async def add_blob_refs(self, refs: dict[str, tuple[int, int]], now_ms: int) -> list[str]:
        if not refs:
            return []
        items = sorted(refs.items())  # key order: concurrent transactions lock the rows alike
        rows = await self._conn.fetch(
            self._BLOBS_SQL,
            [key for key, _ in items],
            [size for _, (size, _) in items],
            [count for _, (_, count) in items],
            [now_ms] * len(items),
        )
        counts = {r[0]: r[1] for r in rows}
        return [key for key, (_, count) in refs.items() if counts[key] == count]

    async def threads_of_refs(self, user_ids: Sequence[str], refs: Sequence[str]) -> list[ThreadOfRef]:
        if not refs:
            return []
        rows = await self._conn.fetch(self._REFS_SQL, sorted(set(user_ids)), sorted(set(refs)))
        return [ThreadOfRef._make(r) for r in rows]

    async def threads_by_subjects(self, user_ids: Sequence[str], subjects: Sequence[str], since_ms: int) -> list[ThreadBySubject]:
        if not subjects:
            return []
        rows = await self._conn.fetch(self._SUBJECTS_SQL, sorted(set(user_ids)), sorted(set(subjects)), since_ms)
        return [ThreadBySubject._make(r) for r in rows]

    async def insert_threads(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            await self._conn.executemany(self._THREAD_SQL, [(r["id"], r["user_id"], r["subject"], r["updated_ms"]) for r in rows])

    async def touch_threads(self, thread_ids: Sequence[str], now_ms: int) -> None:
        if thread_ids:
            await self._conn.execute(self._TOUCH_SQL, now_ms, sorted(set(thread_ids)))

    async def add_thread_refs(self, rows: Sequence[tuple[str, str, str]]) -> None:
        if rows:
            await self._conn.executemany(self._REF_SQL, [(u, r[:255], t) for u, r, t in sorted(rows)])

    async def insert_messages(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            await self._conn.executemany(self._MESSAGE_SQL, [tuple(row[name] for name in MESSAGE_COLUMNS) for row in rows])

    async def add_events(self, events: Sequence[tuple[str, str, str, dict[str, Any], int]]) -> None:
        args = _event_rows(events)
        if args:
            await self._conn.executemany(self._EVENT_SQL, args)


class SqlAlchemyRows:
    """The same operations through SQLAlchemy: for a driver without a fast path."""

    def __init__(self, conn: AsyncConnection):
        self._conn = conn

    async def folders(self, ids: Sequence[str], user_paths: Sequence[tuple[str, str]]) -> list[Any]:
        return await folder_store.folders_for_appends(self._conn, ids, user_paths)

    async def lock_usage(self, user_ids: Sequence[str], read: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
        return await user_store.lock_usage(self._conn, user_ids, read)

    async def lock_folders(self, folder_ids: Sequence[str], read: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
        return await folder_store.lock_for_appends(self._conn, folder_ids, read)

    async def add_usage(self, deltas: dict[str, int]) -> None:
        await user_store.add_storage_used_many(self._conn, deltas)

    async def add_appends(self, appends: dict[str, tuple[int, int, int]]) -> None:
        await folder_store.add_appends(self._conn, appends)

    async def add_blob_refs(self, refs: dict[str, tuple[int, int]], now_ms: int) -> list[str]:
        return await message_store.add_blob_refs(self._conn, refs, now_ms)

    async def threads_of_refs(self, user_ids: Sequence[str], refs: Sequence[str]) -> list[Any]:
        return await message_store.threads_of_refs(self._conn, user_ids, refs)

    async def threads_by_subjects(self, user_ids: Sequence[str], subjects: Sequence[str], since_ms: int) -> list[Any]:
        return await message_store.threads_by_subjects(self._conn, user_ids, subjects, since_ms)

    async def insert_threads(self, rows: Sequence[dict[str, Any]]) -> None:
        await message_store.insert_threads(self._conn, rows)

    async def touch_threads(self, thread_ids: Sequence[str], now_ms: int) -> None:
        await message_store.touch_threads(self._conn, thread_ids, now_ms)

    async def add_thread_refs(self, rows: Sequence[tuple[str, str, str]]) -> None:
        await message_store.add_thread_refs_many(self._conn, rows)

    async def insert_messages(self, rows: Sequence[dict[str, Any]]) -> None:
        await message_store.insert_messages(self._conn, rows)

    async def add_events(self, events: Sequence[tuple[str, str, str, dict[str, Any], int]]) -> None:
        await event_store.add_events(self._conn, events)


AppendRows = SqliteRows | AsyncpgRows | SqlAlchemyRows


async def append_rows(conn: AsyncConnection, *, fast: bool = True) -> AppendRows:
    """The batch operations for this connection's write transaction: on its driver's
    connection where there is a fast path (``fast``), else through SQLAlchemy."""
    if not fast:
        return SqlAlchemyRows(conn)
    if conn.dialect.name == "sqlite":
        sqlite = await sqlite_driver(conn)
        if sqlite is not None:
            return SqliteRows(sqlite.connection, sqlite.hop)
    elif conn.dialect.driver == "asyncpg":
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        adapted = raw.dbapi_connection
        if getattr(adapted, "_transaction", None) is None:
            # A statement through SQLAlchemy begins the transaction its adapter tracks
            # (and commits at the end of ``write()``): the raw statements join it.
            await conn.exec_driver_sql("SELECT 1")
        if getattr(adapted, "_transaction", None) is not None:
            return AsyncpgRows(driver)
    return SqlAlchemyRows(conn)
