"""Inline SQLite statements: an aiosqlite look-alike (``_InlineConnection``) that runs each
statement at once in the event loop's thread, for processes whose statements are all
short index lookups and batch writes (the mail workers). ``Database`` plugs it into
SQLAlchemy's aiosqlite dialect (``_inline_sqlite_module``)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import types
from collections.abc import Callable
from typing import Any


class _Immediately:
    """Stands in for aiosqlite's request queue, which SQLAlchemy's adapter uses to set
    the isolation level: runs the request at once."""

    @staticmethod
    def put_nowait(item: tuple[asyncio.Future[Any], Any]) -> None:
        future, function = item
        try:
            function()
        except Exception as error:
            future.set_exception(error)
        else:
            future.set_result(None)


class _InlineCursor:
    def __init__(self, owner: _InlineConnection):
        self._owner = owner
        self._cursor = owner._conn.cursor()

    async def __aenter__(self) -> _InlineCursor:
        return self

    async def __aexit__(self, *_: Any) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Any = None) -> _InlineCursor:
        if sql[:5].upper() == "BEGIN":
            self._owner.begin(sql[5:].strip())
            return self
        if parameters is None:
            self._cursor.execute(sql)
        else:
            self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Any) -> _InlineCursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> Any:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> Any:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    async def nextset(self) -> None:
        return None

    async def setinputsizes(self, *_: Any) -> None:
        return None


class _InlineConnection:
    """An aiosqlite look-alike that runs each statement at once in the event loop's
    thread. For processes whose statements are all short index lookups and batch
    writes (the mail workers): a statement through aiosqlite costs three or four
    hand-offs between threads, each waiting for the GIL, and a write transaction holds
    the database's one write lock through all of them.

    A COMMIT that wrote something must be on disk before ``commit`` returns. With
    ``synchronous=FULL`` SQLite syncs the WAL inside the COMMIT, while the writers'
    turn (and SQLite's write lock) is held, so every other writer waits for the disk
    too. In WAL mode this connection runs with ``synchronous=NORMAL`` instead, where
    the COMMIT only appends its frames to the WAL, and ``commit`` then syncs the WAL
    itself, after the turn is given back (``wal_path``): one process's sync overlaps
    the next writer's statements. Once that ``fdatasync`` returns, the frames of this
    transaction and of every one before it are on disk, which is all that recovery
    needs to replay it. A checkpoint still syncs the WAL before it copies frames
    (``_WalCheckpointer``'s connection keeps ``synchronous=FULL``)."""

    def __init__(self, conn: sqlite3.Connection, path: str | None = None):
        self._conn = conn
        self._connection: sqlite3.Connection | None = conn
        self._tx = _Immediately()
        self._changes_at_begin = -1
        self._began_to_write = False
        self._path = path
        # Set at connect (``Database._configure_sqlite``) when this connection commits
        # without a sync and syncs this file after each COMMIT that wrote something.
        self.wal_path: str | None = None
        self._wal_fd: int | None = None
        # Called once a COMMIT has returned (see ``Database.write``); never after a
        # failed one.
        self.after_commit: Callable[[], None] | None = None

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        self._conn.isolation_level = value  # type: ignore[assignment]

    def cursor(self) -> _InlineCursor:
        return _InlineCursor(self)

    def begin(self, mode: str) -> None:
        """``BEGIN <mode>``, noting what its COMMIT must sync: a write transaction
        (IMMEDIATE, as ``Database.write`` begins) is synced even if no row changed,
        since a schema change is not counted in total_changes."""
        self._changes_at_begin = self._conn.total_changes
        self._began_to_write = mode.upper() == "IMMEDIATE"
        self._conn.execute(f"BEGIN {mode}")

    async def commit(self) -> None:
        after = self.after_commit
        wrote = self._conn.in_transaction and (self._began_to_write or self._conn.total_changes != self._changes_at_begin)
        if wrote and self.wal_path is None:
            await asyncio.to_thread(self._commit_then, after)  # the COMMIT syncs
            return
        self._commit_then(after)
        if wrote:
            await asyncio.to_thread(self._sync_wal)

    def _commit_then(self, after: Callable[[], None] | None) -> None:
        self._conn.commit()
        if after is not None:
            after()

    def _sync_wal(self) -> None:
        """Put the WAL on disk: every frame appended so far, this COMMIT's included.
        The descriptor stays open with the connection, whose open handle keeps SQLite
        from deleting the WAL (it truncates it at most, the same file)."""
        if self._wal_fd is None:
            assert self.wal_path is not None
            self._wal_fd = os.open(self.wal_path, os.O_RDONLY | os.O_CLOEXEC)
        os.fdatasync(self._wal_fd)

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()
        if self._wal_fd is not None:
            os.close(self._wal_fd)
            self._wal_fd = None

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)


class _Connecting:
    """What ``connect`` returns: awaitable, with the ``_thread`` SQLAlchemy marks daemon."""

    _thread = types.SimpleNamespace(daemon=True)

    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any]):
        self._args = args
        self._kwargs = kwargs

    def __await__(self) -> Any:
        return self._open().__await__()

    async def _open(self) -> _InlineConnection:
        kwargs = {**self._kwargs, "check_same_thread": False}
        database = self._args[0] if self._args else kwargs.get("database")
        return _InlineConnection(sqlite3.connect(*self._args, **kwargs), database if isinstance(database, str) else None)


def _inline_sqlite_module() -> Any:
    module = types.SimpleNamespace(
        connect=lambda *args, **kwargs: _Connecting(args, kwargs),
        Connection=_InlineConnection,
        **{
            name: getattr(sqlite3, name)
            for name in (
                "DatabaseError",
                "Error",
                "IntegrityError",
                "NotSupportedError",
                "OperationalError",
                "ProgrammingError",
                "sqlite_version",
                "sqlite_version_info",
            )
        },
    )
    from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_dbapi

    return AsyncAdapt_aiosqlite_dbapi(module, sqlite3)  # type: ignore[arg-type]
