"""Writes of concurrent callers that share one transaction and one commit.

A login writes one authentication-log row, an IMAP STORE a few flag rows, an alias
forward a few rows: each is cheap, but each commit is a sync of the disk, and on
SQLite every writer of every process takes its turn. A ``WriteBatcher`` queues its
callers' items; one flusher takes everything queued once it holds the writer turn,
writes it in one transaction, commits once, and answers every caller. The batch grows
while the previous one commits (or another process writes), so a lone write is never
delayed and a burst costs a few commits instead of hundreds. Nobody hears "written"
before the commit; a failed commit fails every caller of the batch.

``SharedWrites`` is the general one (``Database.write_shared``): each caller's work,
a coroutine function of one connection, runs in a SAVEPOINT of the shared
transaction, so a piece that raises is rolled back alone and its caller gets the
error. Batchers of their own (the outbound queue's outcomes, alias forwards, the
authentication log's entries, IMAP STOREs) write a batch in bulk statements instead;
on SQLite some of them on the driver's own connection (``sqlite_batches``).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from postern.storage.sqlite_driver import SqliteDriver, sqlite_driver


class Database(Protocol):
    """What the shared writes ask of ``database.Database``, which makes them (defined
    here so that this module does not import the one that imports it)."""

    is_sqlite: bool
    engine: AsyncEngine

    def write(self) -> AbstractAsyncContextManager[AsyncConnection]: ...

    def writer_turn(self, *, ends_at_commit: bool = False) -> AbstractAsyncContextManager[None]: ...


T = TypeVar("T")
Item = TypeVar("Item")


class WriteBatcher(Generic[Item]):
    """Subclasses write a batch in ``_write_batch``: one result per item, an
    exception instance for an item that failed alone."""

    # Bounds one transaction, so that a burst cannot hold the write lock for long.
    max_batch = 128

    def __init__(self, db: Database):
        self.db = db
        self._waiting: list[tuple[Item, asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Any:
        """Write ``item`` with the others waiting; its result, once committed."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    #: True: on SQLite, batches are written by ``_write_batch_sqlite`` on the driver's
    #: own connection, begun, written and committed in one call in its thread (two
    #: hand-offs between threads for the whole batch, where SQLAlchemy and aiosqlite
    #: take a dozen); ``_write_batch`` writes them elsewhere.
    sqlite_batches = False

    async def _write_batch(self, conn: AsyncConnection, items: Sequence[Item]) -> list[Any]:
        raise NotImplementedError

    def _write_batch_sqlite(self, conn: sqlite3.Connection, items: Sequence[Item]) -> list[Any]:
        """The batch's statements inside the transaction (no BEGIN or COMMIT of its
        own). It runs in the driver's thread: nothing but the statements."""
        raise NotImplementedError

    def _committed(self, items: Sequence[Item]) -> None:
        """Called once a batch is committed, before its callers hear it."""

    async def _write(self, items: Sequence[Item]) -> list[Any]:
        if self.sqlite_batches and self.db.is_sqlite:
            async with self.db.engine.connect() as conn:
                driver = await sqlite_driver(conn)
                if driver is not None:
                    return await self._write_on_driver(driver, items)
        async with self.db.write() as conn:
            return await self._write_batch(conn, items)

    async def _write_on_driver(self, driver: SqliteDriver, items: Sequence[Item]) -> list[Any]:
        if driver.hop is not None:
            return await driver.run(_in_transaction, self._write_batch_sqlite, items)
        # Inline: the statements at once; begun and committed by the inline connection,
        # whose commit returns once the batch is on disk (it syncs the WAL itself).
        conn = driver.connection
        driver.inline.begin("IMMEDIATE")
        try:
            results = self._write_batch_sqlite(conn, items)
            await driver.inline.commit()
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results

    async def _flush(self) -> None:
        while self._waiting:
            batch: list[tuple[Item, asyncio.Future[Any]]] = []
            try:
                async with self.db.writer_turn():
                    batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
                    results = await self._write([item for item, _ in batch])
            except BaseException as error:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error if isinstance(error, Exception) else RuntimeError("write interrupted"))
                if not isinstance(error, Exception):
                    raise
                continue
            self._committed([item for item, _ in batch])
            for (_, future), result in zip(batch, results):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)


def _in_transaction(
    conn: sqlite3.Connection, write: Callable[[sqlite3.Connection, Sequence[Item]], list[Any]], items: Sequence[Item]
) -> list[Any]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        results = write(conn, items)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return results


_Work = Callable[[AsyncConnection], Awaitable[Any]]


class SharedWrites(WriteBatcher[_Work]):
    async def run(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``work`` in a write transaction shared with other callers; its result,
        once committed."""
        return await self.submit(work)  # type: ignore[no-any-return]

    async def _write_batch(self, conn: AsyncConnection, items: Sequence[_Work]) -> list[Any]:
        results: list[Any] = []
        for work in items:
            savepoint = await conn.begin_nested()
            try:
                value = await work(conn)
            except Exception as error:
                await savepoint.rollback()
                results.append(error)
            else:
                await savepoint.commit()
                results.append(value)
        return results
