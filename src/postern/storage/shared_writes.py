"""Small writes of concurrent callers share one transaction and one commit.

A login writes one authentication-log row, an IMAP STORE a few flag rows: each is
cheap, but each commit is a sync of the disk, and on SQLite every writer of every
process takes its turn. ``SharedWrites.run(work)`` queues ``work`` (a coroutine
function of one connection); one flusher takes everything queued once it holds the
writer turn, runs each piece in a SAVEPOINT of one transaction, and commits once.
A piece that raises is rolled back to its savepoint and its caller gets the error;
the others are unaffected. A failed commit fails every caller of the batch, so no
caller is ever told "written" for something that was not.

The batch grows while the previous one commits (or another process writes), so a
lone write is never delayed and a burst costs a few commits instead of hundreds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

if TYPE_CHECKING:
    from postern.storage.database import Database

T = TypeVar("T")

# Bounds one transaction, so that a burst cannot hold the write lock for long.
MAX_BATCH = 128

_Work = Callable[[AsyncConnection], Awaitable[Any]]


class SharedWrites:
    def __init__(self, db: Database):
        self.db = db
        self._waiting: list[tuple[_Work, asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def run(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``work`` in a write transaction shared with other callers; its result,
        once committed."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((work, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._waiting:
            batch: list[tuple[_Work, asyncio.Future[Any]]] = []
            outcomes: list[tuple[asyncio.Future[Any], bool, Any]] = []
            try:
                async with self.db.writer_turn():
                    batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                    async with self.db.write() as conn:
                        for work, future in batch:
                            savepoint = await conn.begin_nested()
                            try:
                                value = await work(conn)
                            except Exception as error:
                                await savepoint.rollback()
                                outcomes.append((future, False, error))
                            else:
                                await savepoint.commit()
                                outcomes.append((future, True, value))
            except BaseException as error:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error if isinstance(error, Exception) else RuntimeError("write interrupted"))
                if not isinstance(error, Exception):
                    raise
                continue
            for future, ok, value in outcomes:
                if future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
