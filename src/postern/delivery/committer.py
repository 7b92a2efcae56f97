"""Group commit: concurrent deliveries share one transaction and one sync.

Each caller hands its append requests over and waits. One flusher takes everything
that is waiting, stores it with a single ``append_many`` (one blob sync pass and one
database commit), and answers every caller. While a commit runs, new requests
gather for the next one, so the batch grows exactly when the disk is the
bottleneck and a lone delivery is never delayed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from postern.errors import DomainError
from postern.mailstore.service import AppendRequest, AppendResult, MailStore

# Bounds one transaction, so that a burst cannot hold the write lock for long.
MAX_BATCH = 256


class GroupCommitter:
    def __init__(self, mailstore: MailStore):
        self.mailstore = mailstore
        self._waiting: list[tuple[Sequence[AppendRequest], asyncio.Future[list[AppendResult | DomainError]]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def append(self, requests: Sequence[AppendRequest]) -> list[AppendResult | DomainError]:
        """Store the requests durably; one result (or domain error) per request."""
        if not requests:
            return []
        future: asyncio.Future[list[AppendResult | DomainError]] = asyncio.get_running_loop().create_future()
        self._waiting.append((requests, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._waiting:
            batch: list[tuple[Sequence[AppendRequest], asyncio.Future[list[AppendResult | DomainError]]]] = []
            size = 0
            while self._waiting and (not batch or size + len(self._waiting[0][0]) <= MAX_BATCH):
                item = self._waiting.pop(0)
                batch.append(item)
                size += len(item[0])
            requests = [r for reqs, _ in batch for r in reqs]
            try:
                results = await self.mailstore.append_many(requests)
            except BaseException as error:  # a database or disk failure: every caller hears it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error if isinstance(error, Exception) else RuntimeError("delivery interrupted"))
                if not isinstance(error, Exception):
                    raise
                continue
            offset = 0
            for reqs, future in batch:
                if not future.done():
                    future.set_result(results[offset : offset + len(reqs)])
                offset += len(reqs)
