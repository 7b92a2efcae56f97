"""The database engine: SQLite (WAL) embedded by default, PostgreSQL through asyncpg.

Services open transactions with ``read()`` and ``write()``; the repository modules
beside this one take the connection those yield. On SQLite, writers in this process take
turns on one lock and start with ``BEGIN IMMEDIATE``, so a transaction that reads and
then writes can never fail with SQLITE_BUSY half-way.

Several processes may write one SQLite file (``postern serve`` with mail workers).
They take turns on an exclusive ``flock`` of ``<database>.writelock`` around each
write transaction: the kernel hands that lock to the next waiter as soon as it is
released, where SQLite's own busy handler would poll for its lock with sleeps of up
to 100 ms. ``busy_timeout`` still covers any writer that does not take the file lock.

What a turn holds is kept short. A turn that ends with its transaction (``write()``
alone, or ``writer_turn(ends_at_commit=True)``) gives the file lock back as soon as
its COMMIT returns, not when a busy event loop next runs the waiting task. No COMMIT
copies the WAL into the database: automatic checkpoints are off, and a thread of the
database's own (``_WalCheckpointer``) runs them beside the writers, outside any turn.
And with inline statements (the mail workers) no COMMIT waits for the disk inside a
turn: see ``_InlineConnection``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from postern.storage.inline_sqlite import _inline_sqlite_module, _InlineConnection
from postern.storage.shared_writes import SharedWrites

T = TypeVar("T")

log = logging.getLogger(__name__)


class _Turn:
    """One writer turn: the file lock it holds, until given back once."""

    __slots__ = ("ends_at_commit", "fd", "private")

    def __init__(self, ends_at_commit: bool):
        self.ends_at_commit = ends_at_commit
        self.fd: int | None = None
        # True: ``fd`` was opened for this turn alone and is closed to unlock it.
        self.private = False


# Checkpoints (``_WalCheckpointer``): how often one runs while there are writes (at a
# few hundred deliveries a second this copies about as many pages as SQLite's
# automatic checkpoint of 1,000 pages would), after how long without writes the WAL is
# emptied and truncated, and the size at which the WAL is reset whatever it waits for.
CHECKPOINT_INTERVAL = 0.5
IDLE_TRUNCATE_AFTER = 5.0
WAL_HARD_LIMIT_PAGES = 20_000


class _WalCheckpointer:
    """Copies the WAL into the database from a thread of its own, outside every writer
    turn, so that no COMMIT does it (SQLite's automatic checkpoint runs in the COMMIT
    that passes 1,000 pages, with the writer's turn held through the copy and the
    database file's sync).

    While there are writes, a PASSIVE checkpoint every ``CHECKPOINT_INTERVAL``: it
    waits for nobody and writers go on appending meanwhile; once it has copied every
    frame, the next writer starts the WAL again from its beginning. A PASSIVE one
    cannot copy frames that a reader's snapshot still needs, so readers that never
    all let go would keep the WAL growing: past ``WAL_HARD_LIMIT_PAGES`` the thread
    takes the writers' file lock and runs a RESTART, which waits for those readers.
    After ``IDLE_TRUNCATE_AFTER`` seconds without writes it runs a TRUNCATE, if it
    gets the file lock at once, to give the WAL's disk space back."""

    def __init__(self, path: str, lock_path: str, synchronous: str):
        self._path = path
        self._lock_path = lock_path
        self._synchronous = synchronous
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()
        self.checkpoints = 0  # completed runs of any kind (for tests and diagnostics)

    def start(self) -> None:
        with self._guard:
            if self._thread is None and not self._stopping.is_set():
                self._thread = threading.Thread(target=self._run, name="wal-checkpointer", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        """End the thread; the next ``start`` begins another (a database used again
        after ``close``)."""
        with self._guard:
            self._stopping.set()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        self._stopping.clear()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        version: int | None = None
        last_write = time.monotonic()
        truncated = False
        last_error: str | None = None
        try:
            while not self._stopping.wait(CHECKPOINT_INTERVAL):
                try:
                    if conn is None:
                        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
                        conn.execute(f"PRAGMA synchronous={self._synchronous}")
                    # Changes when any other connection commits.
                    current = conn.execute("PRAGMA data_version").fetchone()[0]
                    now = time.monotonic()
                    if current != version:
                        version, last_write, truncated = current, now, False
                        self.checkpoint(conn, "PASSIVE")
                    elif not truncated and now - last_write >= IDLE_TRUNCATE_AFTER:
                        truncated = self.checkpoint(conn, "TRUNCATE", wait=False)
                except Exception as error:
                    # Whatever goes wrong (a busy database, no descriptor left when the
                    # process runs out of them, ...), the thread goes on: it is the only
                    # one that empties the WAL. Each new kind of failure is logged once.
                    if isinstance(error, sqlite3.Error):
                        log.debug("WAL checkpoint of %s failed: %s", self._path, error)
                    elif repr(error) != last_error:
                        log.warning("WAL checkpoint of %s failed, retrying: %r", self._path, error)
                    last_error = repr(error)
                    if conn is not None:
                        with contextlib.suppress(Exception):
                            conn.close()
                        conn = None
                else:
                    last_error = None
        finally:
            if conn is not None:
                conn.close()

    def checkpoint(self, conn: sqlite3.Connection, mode: str, *, wait: bool = True) -> bool:
        """One checkpoint; a RESTART after it if the WAL has passed the hard limit.
        True if it copied every frame. RESTART and TRUNCATE take SQLite's write lock,
        so they run inside the writers' file lock (``wait``: wait for it, else give up
        if it is taken)."""
        if mode == "PASSIVE":
            busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.checkpoints += 1
            if frames < WAL_HARD_LIMIT_PAGES:
                return busy == 0 and frames == copied
            mode = "RESTART"
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            # Readers still on old frames are waited for (RESTART), or not (idle TRUNCATE).
            conn.execute(f"PRAGMA busy_timeout={5000 if wait else 100}")
            busy, frames, copied = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
            self.checkpoints += 1
            return busy == 0 and frames == copied
        finally:
            os.close(fd)  # unlocks


class Database:
    def __init__(self, url: str, *, schema: str | None = None, fsync: bool = True, pool_size: int = 10, inline: bool = False):
        """``inline``: on SQLite, run statements in the event loop's thread (see
        ``_InlineConnection``); only for processes whose every statement is short."""
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.schema = schema
        self._fsync = fsync
        self._pool_size = pool_size
        self.inline = False
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        self._lock_path: str | None = None
        self._lock_fd: int | None = None
        self._turn_owner: asyncio.Task[Any] | None = None
        self._turn: _Turn | None = None
        self._turn_release = threading.Lock()
        self._checkpointer: _WalCheckpointer | None = None
        self._shared_writes: SharedWrites | None = None
        self._reader: sqlite3.Connection | None = None
        # With inline statements: the connection kept for write transactions, and its
        # driver connection (see ``write``); None while a write uses it.
        self._writer: tuple[AsyncConnection, Any] | None = None
        if self.is_sqlite:
            database = self.url.database or ""
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
                if not database.startswith("file:"):
                    self._lock_path = database + ".writelock"
                    self._checkpointer = _WalCheckpointer(database, self._lock_path, "FULL" if fsync else "OFF")
        self.engine: AsyncEngine = self._make_engine(inline)

    def _make_engine(self, inline: bool) -> AsyncEngine:
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["pool_size"] = self._pool_size
            kwargs["max_overflow"] = 0
            if inline:
                kwargs["module"] = _inline_sqlite_module()
                self.inline = True
        else:
            connect_args: dict[str, Any] = {}
            if self.schema:
                connect_args["server_settings"] = {"search_path": self.schema}
            kwargs.update(pool_size=self._pool_size, max_overflow=self._pool_size, pool_pre_ping=True, connect_args=connect_args)
        engine = create_async_engine(self.url, **kwargs)
        if self.is_sqlite:
            self._configure_sqlite(engine, self._fsync, self._checkpointer)
        return engine

    def run_statements_inline(self) -> None:
        """Switch a SQLite database to inline statements (see ``__init__``), before
        its first use. Nothing changes on PostgreSQL."""
        if self.is_sqlite and not self.inline:
            self.engine.sync_engine.dispose(close=False)
            self.engine = self._make_engine(True)

    @staticmethod
    def _configure_sqlite(engine: AsyncEngine, fsync: bool, checkpointer: _WalCheckpointer | None) -> None:
        synchronous = "FULL" if fsync else "OFF"

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy, not the driver, decide when transactions begin.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            wal = str(cursor.fetchone()[0]).lower() == "wal"
            # A commit is on disk when it returns, which the "250 only when durable"
            # promise of the mail doors relies on: with FULL, SQLite syncs in the
            # COMMIT; an inline connection in WAL mode syncs the WAL itself, after
            # the COMMIT (see _InlineConnection).
            inline = getattr(dbapi_connection, "driver_connection", None)
            if fsync and wal and isinstance(inline, _InlineConnection) and inline._path and inline._path != ":memory:":
                inline.wal_path = inline._path + "-wal"
                cursor.execute("PRAGMA synchronous=NORMAL")
            else:
                cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=10000")
            if checkpointer is not None:
                # The checkpointer's thread copies the WAL, outside the writers' turns.
                cursor.execute("PRAGMA wal_autocheckpoint=0")
                checkpointer.start()
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            mode = conn.get_execution_options().get("sqlite_begin", "")
            driver = conn.connection.driver_connection
            if isinstance(driver, _InlineConnection):
                driver.begin(mode)  # the statement alone, without a cursor's round of events
            else:
                conn.exec_driver_sql(f"BEGIN {mode}")

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction: one consistent snapshot for every statement in it."""
        async with self.engine.connect() as conn:
            async with conn.begin():
                yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A read-write transaction, committed when the block ends without an exception."""
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self.writer_turn(ends_at_commit=True):
            turn = self._turn
            if turn is not None and turn.fd is None and self._lock_path is not None:
                # An earlier transaction of this turn gave the file lock back.
                await self._lock_file(turn)
            # The kept connection is taken out while in use (a nested write opens another).
            kept, self._writer = self._writer, None
            if kept is not None:
                conn, driver = kept
            else:
                conn = await (await self.engine.connect()).execution_options(sqlite_begin="IMMEDIATE")
                driver = (await conn.get_raw_connection()).driver_connection
            gives_back = self.inline and turn is not None and turn.ends_at_commit and turn.fd is not None
            if gives_back:
                given_back: _Turn = turn  # type: ignore[assignment]  # not None: gives_back says so
                driver.after_commit = lambda: self._give_back_file_lock(given_back)
            failed = False
            try:
                async with conn.begin():
                    yield conn
            except BaseException:
                failed = True
                raise
            finally:
                if gives_back:
                    driver.after_commit = None
                if self.inline and not failed and self._writer is None:
                    # An inline database keeps one connection for its writes, which take
                    # turns: a checkout from the pool, its options and its return cost
                    # more than a group commit's statements. After a failure, whatever
                    # state it was left in, the next write starts afresh.
                    self._writer = (conn, driver)
                else:
                    await conn.close()

    async def write_shared(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``work`` in a write transaction shared with concurrent callers (one
        commit for all; see ``shared_writes``): for small writes that many sessions
        make at once, such as an authentication-log row. On PostgreSQL each runs in
        its own transaction: its writers do not take turns, and one transaction
        holding several users' row locks could deadlock with another process's."""
        if self._write_lock is None:
            async with self.write() as conn:
                return await work(conn)
        if self._shared_writes is None:
            self._shared_writes = SharedWrites(self)
        return await self._shared_writes.run(work)

    @asynccontextmanager
    async def writer_turn(self, *, ends_at_commit: bool = False) -> AsyncIterator[None]:
        """Wait until no other writer, of this process or another, is writing, and keep
        the turn: the ``write()`` transactions of the task that holds it start at once.
        A group committer takes its batch only once it can write it, so the batch
        grows while it waits. Nothing to wait for on PostgreSQL.

        ``ends_at_commit``: the turn is for one transaction; once its COMMIT returns,
        other processes may write (with inline statements, the file lock is given
        back as the COMMIT returns, before its sync: see ``_InlineConnection``). A
        further ``write()`` in the same turn takes the file lock again."""
        if self._write_lock is None or self._turn_owner is asyncio.current_task():
            yield
            return
        async with self._write_lock:
            turn = _Turn(ends_at_commit)
            await self._lock_file(turn)
            self._turn_owner = asyncio.current_task()
            self._turn = turn
            try:
                yield
            finally:
                self._turn_owner = None
                self._turn = None
                self._give_back_file_lock(turn)

    def _give_back_file_lock(self, turn: _Turn) -> None:
        """Unlock the turn's file lock, once, from any thread."""
        with self._turn_release:
            fd, turn.fd = turn.fd, None
            if fd is None:
                return
            if turn.private:
                os.close(fd)
            else:
                fcntl.flock(fd, fcntl.LOCK_UN)

    async def _lock_file(self, turn: _Turn) -> None:
        """Take the writers' file lock (see the module's doc) for ``turn``; nothing for
        a database without a file."""
        if self._lock_path is None:
            return
        if self._lock_fd is None:
            self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            turn.fd, turn.private = self._lock_fd, False
            return
        except BlockingIOError:
            pass
        # Wait on a descriptor of this turn's own: a waiter that is cancelled closes it
        # once its thread has the lock, which cannot touch a later turn's lock.
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        waiting = asyncio.get_running_loop().run_in_executor(None, fcntl.flock, fd, fcntl.LOCK_EX)
        try:
            await asyncio.shield(waiting)
        except BaseException:
            waiting.add_done_callback(lambda _: os.close(fd))
            raise
        turn.fd, turn.private = fd, True

    def loop_reader(self) -> sqlite3.Connection | None:
        """On SQLite with a file, a read-only connection for the event loop's own
        thread (see ``hot_reads``), opened at first use; None otherwise."""
        if self._reader is None and self.is_sqlite:
            database = self.url.database or ""
            if not database or database == ":memory:" or database.startswith("file:"):
                return None
            conn = sqlite3.connect(database, isolation_level=None)
            conn.execute("PRAGMA query_only = ON")
            conn.execute("PRAGMA busy_timeout = 10000")
            self._reader = conn
        return self._reader

    async def close(self) -> None:
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.stop)
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._writer is not None:
            writer, self._writer = self._writer[0], None
            await writer.close()
        await self.engine.dispose()
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None


def _alembic_config(connection: Any) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.attributes["connection"] = connection
    return config


_HEAD: list[str] = []


def head_revision() -> str:
    """The newest migration shipped with this code (read once per process)."""
    if not _HEAD:
        from alembic.script import ScriptDirectory

        _HEAD.append(ScriptDirectory.from_config(_alembic_config(None)).get_current_head() or "")
    return _HEAD[0]


async def migrate(database: Database, revision: str = "head") -> None:
    """Apply the Alembic migrations up to ``revision`` (at start and by ``postern migrate``)."""
    from alembic import command

    if revision == "head" and await current_revision(database) == head_revision():
        return  # the common case at every start: nothing to do, and no DDL engine

    def upgrade(sync_connection: Any) -> None:
        command.upgrade(_alembic_config(sync_connection), revision)

    if database.schema and not database.is_sqlite:
        async with database.engine.begin() as conn:
            await conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{database.schema}"')
    # A dedicated engine without pooling: Alembic's DDL must not leave pooled
    # connections holding stale schema information.
    engine = create_async_engine(database.url, poolclass=NullPool, **_migration_engine_args(database))
    try:
        async with engine.connect() as conn:
            await conn.run_sync(upgrade)
            await conn.commit()
    finally:
        await engine.dispose()


def _migration_engine_args(database: Database) -> dict[str, Any]:
    if database.schema and not database.is_sqlite:
        return {"connect_args": {"server_settings": {"search_path": database.schema}}}
    return {}


async def current_revision(database: Database) -> str | None:
    from alembic.runtime.migration import MigrationContext

    async with database.engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
