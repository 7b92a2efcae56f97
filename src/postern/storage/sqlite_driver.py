"""The ``sqlite3`` connection under an SQLAlchemy connection, for a transaction's
statements that run many at a time (a group commit's batch): each statement through
SQLAlchemy and aiosqlite costs a dozen hand-offs between threads and more Python than
SQLite spends on it; a function given the driver's connection runs them all in one
call in its thread (or at once, when the database runs its statements inline)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage.inline_sqlite import _InlineConnection

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SqliteDriver:
    connection: sqlite3.Connection
    # Runs a function in the thread that owns the connection (aiosqlite); None: inline.
    hop: Callable[..., Any] | None
    # Inline: the ``inline_sqlite._InlineConnection`` around ``connection``. A transaction
    # begun here must begin and commit through it (``begin``, ``commit``), which
    # knows what makes a COMMIT durable on that connection.
    inline: Any = None

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """``function(connection, *args)``, where the connection may be used; it must
        do nothing else that blocks."""
        if self.hop is None:
            return function(self.connection, *args)
        return await self.hop(function, self.connection, *args)  # type: ignore[no-any-return]


async def sqlite_driver(conn: AsyncConnection) -> SqliteDriver | None:
    """The driver's connection under ``conn`` (in the transaction ``conn`` began, if
    it began one), when the database is SQLite and the driver one of those known here;
    else None."""
    if conn.dialect.name != "sqlite":
        return None
    driver = (await conn.get_raw_connection()).driver_connection
    if isinstance(driver, _InlineConnection):
        return SqliteDriver(driver._conn, None, driver)
    execute = getattr(driver, "_execute", None)  # aiosqlite: run a function in its thread
    connection = getattr(driver, "_connection", None)
    if execute is not None and isinstance(connection, sqlite3.Connection):
        return SqliteDriver(connection, execute)
    return None
