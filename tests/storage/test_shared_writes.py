"""Database.write_shared: concurrent small writes share one transaction; each piece
succeeds or fails on its own, and nobody hears "written" before the commit."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from postern.serve.runtime import Runtime
from postern.storage.schema import server_state


def put(key: str, value: str) -> Any:
    async def work(conn: Any) -> str:
        await conn.execute(server_state.insert().values(key=key, value=value))
        return key

    return work


async def stored(runtime: Runtime) -> dict[str, str]:
    async with runtime.db.read() as conn:
        return {r.key: r.value for r in (await conn.execute(select(server_state).where(server_state.c.key.like("t-%")))).all()}


async def test_concurrent_writes_are_all_committed(runtime: Runtime) -> None:
    keys = await asyncio.gather(*(runtime.db.write_shared(put(f"t-{i}", str(i))) for i in range(50)))
    assert keys == [f"t-{i}" for i in range(50)]
    assert await stored(runtime) == {f"t-{i}": str(i) for i in range(50)}


async def test_a_failing_piece_fails_alone(runtime: Runtime) -> None:
    await runtime.db.write_shared(put("t-taken", "first"))

    async def explode(conn: Any) -> None:
        await conn.execute(server_state.insert().values(key="t-half", value="written before the error"))
        raise ValueError("boom")

    results = await asyncio.gather(
        runtime.db.write_shared(put("t-a", "a")),
        runtime.db.write_shared(put("t-taken", "second")),  # a unique violation
        runtime.db.write_shared(explode),
        runtime.db.write_shared(put("t-b", "b")),
        return_exceptions=True,
    )
    assert results[0] == "t-a" and results[3] == "t-b"
    assert isinstance(results[1], IntegrityError)
    assert isinstance(results[2], ValueError)
    # The failed pieces left nothing behind, not even the row written before the error.
    assert await stored(runtime) == {"t-taken": "first", "t-a": "a", "t-b": "b"}


async def test_a_failed_commit_fails_every_caller(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = type(runtime.db).write

    def failing_write(self: Any) -> Any:
        context = real_write(self)

        class Failing:
            async def __aenter__(self) -> Any:
                return await context.__aenter__()

            async def __aexit__(self, *exc: Any) -> bool:
                await context.__aexit__(RuntimeError, RuntimeError("disk gone"), None)  # rolls back
                raise OSError("disk gone")

        return Failing()

    monkeypatch.setattr(type(runtime.db), "write", failing_write)
    results = await asyncio.gather(*(runtime.db.write_shared(put(f"t-{i}", "x")) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results)
    monkeypatch.setattr(type(runtime.db), "write", real_write)
    assert await stored(runtime) == {}


async def test_a_driver_batch_on_an_inline_database_is_on_disk_before_its_callers_hear(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batcher that writes on the driver's own connection (``sqlite_batches``: the
    authentication log, IMAP STOREs) in a mail worker commits through the inline
    connection, which syncs the WAL itself (synchronous=NORMAL): every caller hears
    "written" only after that sync."""
    import os
    import sqlite3

    from sqlalchemy import text

    from postern.storage.database import Database
    from postern.storage.shared_writes import WriteBatcher

    class Rows(WriteBatcher[int]):
        sqlite_batches = True

        def _write_batch_sqlite(self, conn: sqlite3.Connection, items: Any) -> list[Any]:
            conn.executemany("INSERT INTO t VALUES (?)", [(item,) for item in items])
            return list(items)

    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'batch.sqlite3'}", inline=True)
    events: list[str] = []
    real_fdatasync = os.fdatasync

    def observed(fd: int) -> None:
        real_fdatasync(fd)
        events.append(os.readlink(f"/proc/self/fd/{fd}").rpartition("/")[2])

    try:
        async with db.write() as conn:
            await conn.execute(text("CREATE TABLE t (x INTEGER PRIMARY KEY)"))
        monkeypatch.setattr(os, "fdatasync", observed)
        batcher = Rows(db)

        async def submit(n: int) -> None:
            await batcher.submit(n)
            events.append(f"heard {n}")

        await asyncio.gather(*(submit(n) for n in range(5)))
        assert events[0] == "batch.sqlite3-wal", events
        assert sorted(e for e in events if e.startswith("heard")) == [f"heard {n}" for n in range(5)]
        # A batch that fails at its statements leaves nothing behind and the next one works.
        with pytest.raises(sqlite3.IntegrityError):
            await batcher.submit(3)
        await batcher.submit(7)
        rows = sqlite3.connect(str(tmp_path / "batch.sqlite3")).execute("SELECT x FROM t ORDER BY x").fetchall()
        assert rows == [(0,), (1,), (2,), (3,), (4,), (7,)]
    finally:
        await db.close()
