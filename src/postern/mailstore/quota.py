"""Quota reset: the stored size of a user's mail recomputed from its messages, for one
user at once or for every user as a background task of the serving process."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from postern.errors import NotFound
from postern.storage import quota as quota_store
from postern.storage.database import Database
from postern.storage.ids import is_id, new_id

log = logging.getLogger(__name__)

BATCH = 100


@dataclass(frozen=True, slots=True)
class QuotaReset:
    previous: int
    used: int


@dataclass(slots=True)
class ResetTask:
    id: str
    done: int = 0
    changed: int = 0
    failed: int = 0
    finished: bool = False


class Quota:
    def __init__(self, db: Database, batch: int = BATCH):
        self.db = db
        self.batch = batch
        self.tasks: dict[str, ResetTask] = {}
        self._running: set[asyncio.Task[None]] = set()

    async def reset_user(self, user_id: str) -> QuotaReset:
        """Recompute one user's stored size in one transaction."""
        result = None
        if is_id(user_id):
            async with self.db.write() as conn:
                result = await quota_store.recompute_storage_used(conn, user_id)
        if result is None:
            raise NotFound("This user does not exist", code="UserNotFound")
        return QuotaReset(*result)

    def reset_all(self) -> str:
        """Start recomputing every user's stored size; return the task's id at once."""
        task = ResetTask(new_id())
        self.tasks[task.id] = task
        running = asyncio.get_running_loop().create_task(self._reset_all(task), name=f"quota-reset-{task.id}")
        self._running.add(running)
        running.add_done_callback(self._running.discard)
        return task.id

    async def _reset_all(self, task: ResetTask) -> None:
        log.info("quota reset %s: started", task.id)
        after: str | None = None
        try:
            while True:
                async with self.db.read() as conn:
                    ids = await quota_store.user_ids_after(conn, after, self.batch)
                if not ids:
                    break
                for user_id in ids:
                    try:
                        async with self.db.write() as conn:
                            result = await quota_store.recompute_storage_used(conn, user_id)
                    except Exception:  # one user's failure does not stop the others
                        task.failed += 1
                        log.exception("quota reset %s: user %s failed", task.id, user_id)
                        continue
                    task.done += 1
                    if result is not None and result[0] != result[1]:
                        task.changed += 1
                after = ids[-1]
                log.info("quota reset %s: %d users done, %d corrected, %d failed", task.id, task.done, task.changed, task.failed)
        finally:
            task.finished = True
            log.info("quota reset %s: finished: %d users, %d corrected, %d failed", task.id, task.done, task.changed, task.failed)

    async def close(self) -> None:
        """Stop running resets (each user's transaction either committed or rolled back)."""
        for running in list(self._running):
            running.cancel()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
