"""Group-committed batches written on SQLite's own connection
(``WriteBatcher.sqlite_batches``): begun, written and committed in one call; a batch
that fails leaves nothing behind and fails every caller, and the next batch starts
clean. Elsewhere the same batcher writes through SQLAlchemy."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.serve.runtime import Runtime
from postern.storage.schema import server_state
from postern.storage.shared_writes import WriteBatcher


class KeyWriter(WriteBatcher[str]):
    sqlite_batches = True

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.fail_on: str | None = None
        self.batches: list[list[str]] = []

    def _write_batch_sqlite(self, conn: sqlite3.Connection, items: Sequence[str]) -> list[Any]:
        self.batches.append(list(items))
        conn.executemany("INSERT INTO server_state (key, value) VALUES (?, 'v')", [(key,) for key in items])
        if self.fail_on in items:
            raise ValueError("boom")
        return [f"stored {key}" for key in items]

    async def _write_batch(self, conn: AsyncConnection, items: Sequence[str]) -> list[Any]:
        self.batches.append(list(items))
        await conn.execute(server_state.insert(), [{"key": key, "value": "v"} for key in items])
        if self.fail_on in items:
            raise ValueError("boom")
        return [f"stored {key}" for key in items]


async def stored(runtime: Runtime) -> set[str]:
    async with runtime.db.read() as conn:
        return set((await conn.scalars(select(server_state.c.key).where(server_state.c.key.like("t-%")))).all())


async def test_concurrent_items_share_a_commit(runtime: Runtime) -> None:
    writer = KeyWriter(runtime.db)
    results = await asyncio.gather(*(writer.submit(f"t-{i}") for i in range(20)))
    assert results == [f"stored t-{i}" for i in range(20)]
    assert writer.batches[0] == [f"t-{i}" for i in range(20)]  # all waiting when the flusher ran
    assert await stored(runtime) == {f"t-{i}" for i in range(20)}


async def test_a_failed_batch_leaves_nothing_and_the_next_starts_clean(runtime: Runtime) -> None:
    writer = KeyWriter(runtime.db)
    writer.fail_on = "t-bad"
    results = await asyncio.gather(writer.submit("t-a"), writer.submit("t-bad"), writer.submit("t-b"), return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in results)
    assert await stored(runtime) == set()
    writer.fail_on = None
    # One batch after another, on each connection of the pool in turn: none was left
    # inside a transaction (BEGIN would fail), and other writes go on too.
    for n in range(12):
        assert await writer.submit(f"t-c{n}") == f"stored t-c{n}"
    await runtime.db.write_shared(lambda conn: conn.execute(server_state.insert().values(key="t-d", value="v")))
    assert await stored(runtime) == {f"t-c{n}" for n in range(12)} | {"t-d"}
