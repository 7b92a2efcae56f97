"""SQLite's WAL is copied into the database by a thread of the database's own
(``_WalCheckpointer``), never by a COMMIT: automatic checkpoints are off on its
connections. The intervals are shortened here; every wait is bounded."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from postern.storage import database as database_module
from postern.storage.database import Database, _WalCheckpointer

pytestmark = pytest.mark.usefixtures("quick_checkpoints")


@pytest.fixture
def quick_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(database_module, "CHECKPOINT_INTERVAL", 0.02)
    monkeypatch.setattr(database_module, "IDLE_TRUNCATE_AFTER", 0.2)


async def eventually(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(30):
        while not condition():
            await asyncio.sleep(0.01)


def path(tmp_path: Path) -> Path:
    return tmp_path / "wal.sqlite3"


async def write_pages(db: Database, rows: int = 200) -> None:
    async with db.write() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS t (x BLOB)"))
        await conn.execute(text("INSERT INTO t VALUES (randomblob(4000))"), [{}] * rows)


@pytest.mark.parametrize("inline", [False, True])
async def test_commits_leave_the_wal_to_the_checkpointer(tmp_path: Path, inline: bool) -> None:
    db = Database(f"sqlite+aiosqlite:///{path(tmp_path)}", inline=inline)
    try:
        async with db.read() as conn:
            assert (await conn.exec_driver_sql("PRAGMA wal_autocheckpoint")).scalar() == 0
            # FULL, or NORMAL where the connection syncs the WAL after each COMMIT itself.
            assert (await conn.exec_driver_sql("PRAGMA synchronous")).scalar() == (1 if inline else 2)
        await write_pages(db)
        # The rows reach the database file, with no other connection checkpointing.
        await eventually(lambda: path(tmp_path).stat().st_size > 200 * 4000)
        # Without writes, the WAL is emptied and truncated.
        await eventually(lambda: Path(f"{path(tmp_path)}-wal").stat().st_size == 0)
        other = sqlite3.connect(path(tmp_path))
        assert other.execute("SELECT count(*) FROM t").fetchone() == (200,)
        other.close()
        # It goes on after a truncation.
        await write_pages(db, rows=300)
        await eventually(lambda: path(tmp_path).stat().st_size > 500 * 4000)
    finally:
        await db.close()


async def test_close_ends_the_thread_and_a_reused_database_starts_another(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{path(tmp_path)}")
    await write_pages(db, rows=1)
    checkpointer = db._checkpointer
    assert checkpointer is not None and checkpointer._thread is not None
    await db.close()
    assert checkpointer._thread is None
    await write_pages(db, rows=1)
    assert checkpointer._thread is not None and checkpointer._thread.is_alive()
    await db.close()


def setup_wal(tmp_path: Path, rows: int) -> tuple[sqlite3.Connection, sqlite3.Connection, _WalCheckpointer]:
    writer = sqlite3.connect(path(tmp_path), isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("CREATE TABLE t (x BLOB)")
    for _ in range(rows):
        writer.execute("INSERT INTO t VALUES (randomblob(4000))")
    checkpointer = _WalCheckpointer(str(path(tmp_path)), f"{path(tmp_path)}.writelock", "FULL")
    return writer, sqlite3.connect(path(tmp_path), isolation_level=None), checkpointer


def wal_frames(conn: sqlite3.Connection) -> int:
    frames: int = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
    return frames


def test_a_wal_past_the_hard_limit_is_restarted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer, conn, checkpointer = setup_wal(tmp_path, rows=50)
    monkeypatch.setattr(database_module, "WAL_HARD_LIMIT_PAGES", 20)
    assert wal_frames(conn) > 20
    assert checkpointer.checkpoint(conn, "PASSIVE")
    # RESTART: the next writer starts the WAL from its beginning.
    writer.execute("INSERT INTO t VALUES (1)")
    assert wal_frames(conn) == 1
    writer.close()
    conn.close()


def test_an_idle_truncation_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    writer, conn, checkpointer = setup_wal(tmp_path, rows=5)
    held = os.open(f"{path(tmp_path)}.writelock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert not checkpointer.checkpoint(conn, "TRUNCATE", wait=False)
        assert Path(f"{path(tmp_path)}-wal").stat().st_size > 0
    finally:
        os.close(held)
    assert checkpointer.checkpoint(conn, "TRUNCATE", wait=False)
    assert Path(f"{path(tmp_path)}-wal").stat().st_size == 0
    assert writer.execute("SELECT count(*) FROM t").fetchone() == (5,)
    writer.close()
    conn.close()


async def test_the_checkpointer_survives_any_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Out of file descriptors (as under a flood of connections), a checkpoint fails
    with OSError: the thread logs it, lives on, and works again once descriptors are
    back (issue 14, item 7). It used to catch only sqlite3.Error, and died."""
    failing = {"on": True}
    checkpoint = _WalCheckpointer.checkpoint

    def no_descriptors(self: _WalCheckpointer, conn: sqlite3.Connection, mode: str, *, wait: bool = True) -> bool:
        if failing["on"]:
            raise OSError(24, "Too many open files")
        return checkpoint(self, conn, mode, wait=wait)

    monkeypatch.setattr(_WalCheckpointer, "checkpoint", no_descriptors)
    db = Database(f"sqlite+aiosqlite:///{path(tmp_path)}")
    try:
        await write_pages(db)
        checkpointer = db._checkpointer  # type: ignore[attr-defined]
        await eventually(lambda: "Too many open files" in caplog.text)
        assert checkpointer._thread is not None and checkpointer._thread.is_alive()
        before = checkpointer.checkpoints
        failing["on"] = False
        await write_pages(db)
        await eventually(lambda: checkpointer.checkpoints > before)
    finally:
        await db.close()
