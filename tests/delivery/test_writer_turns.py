"""Writers of one SQLite file take turns across processes (``Database.writer_turn``,
a file lock beside the database), and the statements of a mail worker's database run
in the event loop's thread (``Database.run_statements_inline``).

Two Database objects on one file stand for two processes: each has its own
descriptor of the lock file, and ``flock`` locks belong to the descriptor.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from postern.storage.database import Database, _InlineConnection


def url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'turns.sqlite3'}"


async def test_a_writer_waits_for_the_other_process(tmp_path: Path) -> None:
    first, second = Database(url(tmp_path)), Database(url(tmp_path), inline=True)
    try:
        async with first.write() as conn:
            await conn.execute(text("CREATE TABLE t (x INTEGER)"))
        order: list[str] = []

        async def second_writes() -> None:
            async with second.write() as conn:
                order.append("second")
                await conn.execute(text("INSERT INTO t VALUES (2)"))

        async with first.writer_turn():
            waiting = asyncio.create_task(second_writes())
            for _ in range(20):
                await asyncio.sleep(0.01)
            # The holder's own transactions go ahead inside its turn.
            async with first.write() as conn:
                await conn.execute(text("INSERT INTO t VALUES (1)"))
            order.append("first")
            assert not waiting.done()
        await asyncio.wait_for(waiting, 30)
        assert order == ["first", "second"]
        rows = sqlite3.connect(str(tmp_path / "turns.sqlite3")).execute("SELECT x FROM t ORDER BY rowid").fetchall()
        assert rows == [(1,), (2,)]
    finally:
        await first.close()
        await second.close()


async def test_a_cancelled_waiter_leaves_the_lock_free(tmp_path: Path) -> None:
    first, second = Database(url(tmp_path)), Database(url(tmp_path))
    try:
        async with first.writer_turn():
            waiter = asyncio.create_task(second.writer_turn().__aenter__())
            await asyncio.sleep(0.05)
            waiter.cancel()
            await asyncio.gather(waiter, return_exceptions=True)
        # Neither database is left holding the lock: both write again.
        for db in (second, first, second):
            async with asyncio.timeout(30):
                async with db.write() as conn:
                    await conn.execute(text("CREATE TABLE IF NOT EXISTS t (x INTEGER)"))
    finally:
        await first.close()
        await second.close()


async def test_inline_statements(tmp_path: Path) -> None:
    db = Database(url(tmp_path))
    db.run_statements_inline()
    try:
        assert db.inline
        async with db.write() as conn:
            await conn.execute(text("CREATE TABLE t (x INTEGER PRIMARY KEY, y TEXT)"))
            await conn.execute(text("INSERT INTO t (y) VALUES (:y)"), [{"y": "a"}, {"y": "b"}])
        async with db.read() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 2
        try:
            async with db.write() as conn:
                await conn.execute(text("INSERT INTO t (y) VALUES ('c')"))
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        # Committed rows are on disk for any other connection; the rolled back one is not.
        other = sqlite3.connect(str(tmp_path / "turns.sqlite3"))
        assert other.execute("SELECT y FROM t ORDER BY x").fetchall() == [("a",), ("b",)]
        other.close()
        # Concurrent transactions of one process take turns on its connections.
        async def add(n: int) -> None:
            async with db.write() as conn:
                await conn.execute(text("INSERT INTO t (y) VALUES (:y)"), {"y": str(n)})

        await asyncio.gather(*(add(n) for n in range(20)))
        async with db.read() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 22
    finally:
        await db.close()


def lock_is_free(path: Path) -> bool:
    """Whether another process could take the writers' file lock now."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


async def test_an_inline_commit_gives_the_turn_back_from_its_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = Database(url(tmp_path))
    db.run_statements_inline()
    lock = tmp_path / "turns.sqlite3.writelock"
    seen: list[tuple[bool, bool]] = []
    commit_then = _InlineConnection._commit_then

    def observed(self: _InlineConnection, after: Any) -> None:
        commit_then(self, after)
        # Still in the committing thread, before the event loop hears of it.
        seen.append((threading.current_thread() is not threading.main_thread(), lock_is_free(lock)))

    monkeypatch.setattr(_InlineConnection, "_commit_then", observed)
    try:
        async with db.write() as conn:
            await conn.execute(text("CREATE TABLE t (x INTEGER)"))
        seen.clear()  # a COMMIT that wrote no row runs in the loop's thread
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO t VALUES (0)"))
        async with db.writer_turn(ends_at_commit=True), db.write() as conn:
            await conn.execute(text("INSERT INTO t VALUES (1)"))
        assert seen == [(True, True), (True, True)]
        # A turn that is not for one transaction keeps the lock to its end.
        seen.clear()
        async with db.writer_turn():
            async with db.write() as conn:
                await conn.execute(text("INSERT INTO t VALUES (2)"))
            assert not lock_is_free(lock)
        assert seen == [(True, False)]
        assert lock_is_free(lock)
    finally:
        await db.close()


async def test_a_second_write_in_a_turn_for_one_commit_locks_again(tmp_path: Path) -> None:
    db = Database(url(tmp_path))
    db.run_statements_inline()
    lock = tmp_path / "turns.sqlite3.writelock"
    try:
        async with db.writer_turn(ends_at_commit=True):
            async with db.write() as conn:
                await conn.execute(text("CREATE TABLE t (x INTEGER)"))
            assert lock_is_free(lock)
            async with db.write() as conn:
                await conn.execute(text("INSERT INTO t VALUES (1)"))
                assert not lock_is_free(lock)
            assert lock_is_free(lock)
        assert lock_is_free(lock)
        rows = sqlite3.connect(str(tmp_path / "turns.sqlite3")).execute("SELECT x FROM t").fetchall()
        assert rows == [(1,)]
    finally:
        await db.close()


async def test_a_failed_commit_keeps_the_lock_until_the_turn_ends(tmp_path: Path) -> None:
    db = Database(url(tmp_path))
    db.run_statements_inline()
    lock = tmp_path / "turns.sqlite3.writelock"
    try:
        async with db.write() as conn:
            await conn.execute(text("CREATE TABLE p (id INTEGER PRIMARY KEY)"))
            await conn.execute(text("CREATE TABLE c (p INTEGER REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED)"))
        with pytest.raises(Exception, match="FOREIGN KEY"):
            async with db.writer_turn(ends_at_commit=True):
                try:
                    async with db.write() as conn:
                        await conn.execute(text("INSERT INTO c VALUES (7)"))  # fails at COMMIT
                finally:
                    assert not lock_is_free(lock)
        assert lock_is_free(lock)
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO p VALUES (7)"))
    finally:
        await db.close()
