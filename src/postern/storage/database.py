"""The database engine: SQLite (WAL) embedded by default, PostgreSQL through asyncpg.

Services open transactions with ``read()`` and ``write()``; the repository modules
beside this one take the connection those yield. On SQLite, writers in this process take
turns on one lock and start with ``BEGIN IMMEDIATE``, so a transaction that reads and
then writes can never fail with SQLITE_BUSY half-way.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool


class Database:
    def __init__(self, url: str, *, schema: str | None = None, fsync: bool = True, pool_size: int = 10):
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.schema = schema
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            database = self.url.database or ""
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["pool_size"] = pool_size
            kwargs["max_overflow"] = 0
        else:
            connect_args: dict[str, Any] = {}
            if schema:
                connect_args["server_settings"] = {"search_path": schema}
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, connect_args=connect_args)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        if self.is_sqlite:
            self._configure_sqlite(fsync)

    def _configure_sqlite(self, fsync: bool) -> None:
        synchronous = "FULL" if fsync else "OFF"

        @event.listens_for(self.engine.sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy, not the driver, decide when transactions begin.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk when it returns, which the "250 only when durable"
            # promise of the mail doors relies on.
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.close()

        @event.listens_for(self.engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            mode = conn.get_execution_options().get("sqlite_begin", "")
            conn.exec_driver_sql(f"BEGIN {mode}")

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction: one consistent snapshot for every statement in it."""
        async with self.engine.connect() as conn:
            async with conn.begin():
                yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A read-write transaction, committed when the block ends without an exception."""
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock:
            async with self.engine.connect() as conn:
                conn = await conn.execution_options(sqlite_begin="IMMEDIATE")
                async with conn.begin():
                    yield conn

    async def close(self) -> None:
        await self.engine.dispose()


def _alembic_config(connection: Any) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.attributes["connection"] = connection
    return config


_HEAD: list[str] = []


def head_revision() -> str:
    """The newest migration shipped with this code (read once per process)."""
    if not _HEAD:
        from alembic.script import ScriptDirectory

        _HEAD.append(ScriptDirectory.from_config(_alembic_config(None)).get_current_head() or "")
    return _HEAD[0]


async def migrate(database: Database, revision: str = "head") -> None:
    """Apply the Alembic migrations up to ``revision`` (at start and by ``postern migrate``)."""
    from alembic import command

    if revision == "head" and await current_revision(database) == head_revision():
        return  # the common case at every start: nothing to do, and no DDL engine

    def upgrade(sync_connection: Any) -> None:
        command.upgrade(_alembic_config(sync_connection), revision)

    if database.schema and not database.is_sqlite:
        async with database.engine.begin() as conn:
            await conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{database.schema}"')
    # A dedicated engine without pooling: Alembic's DDL must not leave pooled
    # connections holding stale schema information.
    engine = create_async_engine(database.url, poolclass=NullPool, **_migration_engine_args(database))
    try:
        async with engine.connect() as conn:
            await conn.run_sync(upgrade)
            await conn.commit()
    finally:
        await engine.dispose()


def _migration_engine_args(database: Database) -> dict[str, Any]:
    if database.schema and not database.is_sqlite:
        return {"connect_args": {"server_settings": {"search_path": database.schema}}}
    return {}


async def current_revision(database: Database) -> str | None:
    from alembic.runtime.migration import MigrationContext

    async with database.engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
