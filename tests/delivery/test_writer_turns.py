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
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from postern.storage.database import Database


def url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'turns.sqlite3'}"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """A database whose statements run inline, as in a mail worker."""
    db = Database(url(tmp_path))
    db.run_statements_inline()
    try:
        yield db
    finally:
        await db.close()


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


async def test_inline_statements(db: Database, tmp_path: Path) -> None:
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


def fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to name a descriptor's file")
async def test_an_inline_commit_gives_the_turn_back_before_it_syncs_the_wal(db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With inline statements the COMMIT only appends to the WAL (synchronous=NORMAL);
    the turn is given back at once and the WAL synced after it, before the commit
    returns: other writers do not wait for this one's disk, and a write still
    returns only once it is durable."""
    lock = tmp_path / "turns.sqlite3.writelock"
    synced: list[tuple[str, bool, bool]] = []
    real_fdatasync = os.fdatasync

    def observed(fd: int) -> None:
        synced.append((fd_path(fd), lock_is_free(lock), threading.current_thread() is threading.main_thread()))
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", observed)
    wal = str(tmp_path / "turns.sqlite3-wal")
    async with db.write() as conn:
        await conn.execute(text("CREATE TABLE t (x INTEGER)"))
        assert (await conn.execute(text("PRAGMA synchronous"))).scalar() == 1  # NORMAL
    assert synced == [(wal, True, False)]
    synced.clear()
    async with db.read() as conn:  # a read has nothing to sync
        await conn.execute(text("SELECT count(*) FROM t"))
    assert synced == []
    async with db.writer_turn(ends_at_commit=True), db.write() as conn:
        await conn.execute(text("INSERT INTO t VALUES (1)"))
    assert synced == [(wal, True, False)]
    # A turn that is not for one transaction keeps the lock to its end.
    synced.clear()
    async with db.writer_turn():
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO t VALUES (2)"))
        assert synced == [(wal, False, False)]
        assert not lock_is_free(lock)
    assert lock_is_free(lock)


async def test_a_failed_wal_sync_fails_the_write(db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller of a write whose WAL could not be synced hears it (a mail door
    answers 451, and the sender tries again), and the turn is free for the next."""
    async with db.write() as conn:
        await conn.execute(text("CREATE TABLE t (x INTEGER)"))

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing)
    with pytest.raises(OSError, match="Input/output"):
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO t VALUES (1)"))
    monkeypatch.undo()
    assert lock_is_free(tmp_path / "turns.sqlite3.writelock")
    async with db.write() as conn:
        await conn.execute(text("INSERT INTO t VALUES (2)"))


@pytest.mark.parametrize(("inline", "fsync", "expected"), [(True, True, 1), (False, True, 2), (True, False, 0), (False, False, 0)])
async def test_who_syncs_a_commit(tmp_path: Path, inline: bool, fsync: bool, expected: int) -> None:
    """SQLite syncs in the COMMIT (FULL, 2) unless the connection syncs the WAL itself
    (inline: NORMAL, 1); with fsync off nothing syncs (OFF, 0)."""
    db = Database(url(tmp_path), inline=inline, fsync=fsync)
    try:
        async with db.write() as conn:
            assert (await conn.execute(text("PRAGMA synchronous"))).scalar() == expected
    finally:
        await db.close()


async def test_a_second_write_in_a_turn_for_one_commit_locks_again(db: Database, tmp_path: Path) -> None:
    lock = tmp_path / "turns.sqlite3.writelock"
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


async def test_a_failed_commit_keeps_the_lock_until_the_turn_ends(db: Database, tmp_path: Path) -> None:
    lock = tmp_path / "turns.sqlite3.writelock"
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


async def test_an_inline_database_keeps_one_connection_for_its_writes(tmp_path: Path) -> None:
    """Writes take turns, so an inline database keeps one connection for them instead
    of a checkout per transaction; a failed write gives it up, and the next write
    starts on a fresh one."""
    db = Database(url(tmp_path))
    db.run_statements_inline()

    async def driver_of_a_write(row: int) -> Any:
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO t VALUES (:x)"), {"x": row})
            return (await conn.get_raw_connection()).driver_connection

    try:
        async with db.write() as conn:
            await conn.execute(text("CREATE TABLE t (x INTEGER PRIMARY KEY)"))
        first = await driver_of_a_write(1)
        assert await driver_of_a_write(2) is first
        kept = db._writer
        with pytest.raises(Exception, match="UNIQUE"):
            await driver_of_a_write(2)
        assert db._writer is None  # back to the pool, which resets it
        fresh = await driver_of_a_write(3)
        assert db._writer is not None and db._writer is not kept
        assert await driver_of_a_write(4) is fresh
        # Concurrent writers of one process share it by taking turns.
        drivers = await asyncio.gather(*(driver_of_a_write(n) for n in range(10, 30)))
        assert all(d is fresh for d in drivers)
        rows = sqlite3.connect(str(tmp_path / "turns.sqlite3")).execute("SELECT count(*) FROM t").fetchone()
        assert rows == (24,)
    finally:
        await db.close()
    assert db._writer is None
