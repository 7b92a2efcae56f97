"""Group commit: concurrent deliveries share one transaction and one sync.

Each caller stages its own requests first (the summaries parsed, the blobs written
and synced: the syncs of concurrent callers run side by side, and the filesystem
commits them together), then hands them over and waits. One flusher takes everything
that is staged and waiting, stores the rows with a single ``MailStore.commit`` (one
database transaction and commit), and answers every caller. While a commit runs, new
requests stage and gather for the next one, so the batch grows exactly when the disk
is the bottleneck and a lone delivery is never delayed. The flusher takes its batch
only once it holds the database's writer turn (``Database.writer_turn``): on SQLite
with mail workers, while another process writes, this one's batch keeps growing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from postern.errors import DomainError
from postern.mailstore.service import AppendRequest, AppendResult, MailStore, StagedAppends

# Bounds one transaction, so that a burst cannot hold the write lock for long.
MAX_BATCH = 256


class GroupCommitter:
    def __init__(self, mailstore: MailStore):
        self.mailstore = mailstore
        self._waiting: list[tuple[StagedAppends, asyncio.Future[list[AppendResult | DomainError]]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def append(self, requests: Sequence[AppendRequest]) -> list[AppendResult | DomainError]:
        """Store the requests durably; one result (or domain error) per request."""
        if not requests:
            return []
        staged = await self.mailstore.stage(requests)
        future: asyncio.Future[list[AppendResult | DomainError]] = asyncio.get_running_loop().create_future()
        self._waiting.append((staged, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._waiting:
            batch: list[tuple[StagedAppends, asyncio.Future[list[AppendResult | DomainError]]]] = []
            try:
                # Take the batch only once it can be written (on SQLite, when no other
                # writer of this or another process is writing): it grows meanwhile.
                # The turn is this one transaction's: other processes may write as
                # soon as its COMMIT returns.
                async with self.mailstore.db.writer_turn(ends_at_commit=True):
                    size = 0
                    while self._waiting and (not batch or size + len(self._waiting[0][0].results) <= MAX_BATCH):
                        item = self._waiting.pop(0)
                        batch.append(item)
                        size += len(item[0].results)
                    results = await self.mailstore.commit([staged for staged, _ in batch])
            except BaseException as error:  # a database or disk failure: every caller hears it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error if isinstance(error, Exception) else RuntimeError("delivery interrupted"))
                if not isinstance(error, Exception):
                    raise
                continue
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)
