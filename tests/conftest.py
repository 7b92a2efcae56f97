"""Shared fixtures: a fresh database per test, on SQLite by default and on PostgreSQL
when POSTERN_TEST_DATABASE_URL names one (CI runs the suite both ways). A PostgreSQL
that cannot be reached fails the tests; it never skips them."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import shutil
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from postern.accounts.passwords import Passwords
from postern.config import Settings
from postern.delivery.dns import StaticResolver
from postern.serve.runtime import Runtime
from postern.serve.server import bound_port, start_mail_doors
from postern.storage.database import Database, migrate
from postern.storage.schema import metadata
from tests.apps import app_for
from tests.sink import SmtpSink

ADMIN_TOKEN = "test-admin-token"
TEST_DATABASE_URL = os.environ.get("POSTERN_TEST_DATABASE_URL")
# Cheap hashes: the tests exercise the logic, not argon2's cost.
FAST_PASSWORDS = Passwords(time_cost=1, memory_kib=8)


def pytest_report_header(config: Any) -> str:
    return f"postern database: {TEST_DATABASE_URL or 'SQLite (a copy of a migrated template per test)'}"


async def _migrate(url: str, schema: str | None) -> None:
    database = Database(url, schema=schema)
    try:
        await migrate(database)
    finally:
        await database.close()


async def _drop_schema(schema: str) -> None:
    engine = create_async_engine(TEST_DATABASE_URL or "")
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await engine.dispose()


@event.listens_for(PGDialect_asyncpg, "do_connect")
def _no_commit_waits(_dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
    """Every PostgreSQL connection of the tests commits without waiting for its WAL
    to reach the disk (test-only, in the connection's start-up packet: no extra round
    trip). A commit is still atomic and visible at once; only a crash of the server
    could lose it. Durability is the SQLite tests' and the crash tests' concern."""
    cparams["server_settings"] = {**(cparams.get("server_settings") or {}), "synchronous_commit": "off"}


class _PostgresEmptier:
    """Empties the session's PostgreSQL schema before each test: one connection for
    the whole session, and one round trip per test (every DELETE in one simple-query
    message, run as one implicit transaction). The connection lives in a thread with
    its own event loop, as each test has a loop of its own."""

    def __init__(self, url: str, schema: str):
        import asyncpg

        # DELETE, children first, rather than TRUNCATE: on tables holding a few rows it
        # is many times cheaper (TRUNCATE makes new files for every table).
        self._sql = "".join(f'DELETE FROM "{schema}"."{table.name}";' for table in reversed(metadata.sorted_tables))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="postgres-emptier", daemon=True)
        self._thread.start()
        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._conn = self._run(asyncpg.connect(dsn, server_settings={"synchronous_commit": "off"}))

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=60)

    def empty(self) -> None:
        self._run(self._conn.execute(self._sql))

    def close(self) -> None:
        try:
            self._run(self._conn.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()


@pytest.fixture(scope="session")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Migrations run once per session: into a SQLite file that each test copies, or
    into a PostgreSQL schema that each test empties first."""
    if not TEST_DATABASE_URL:
        template = tmp_path_factory.mktemp("template") / "template.sqlite3"
        asyncio.run(_migrate(f"sqlite+aiosqlite:///{template}", None))
        yield {"template": template}
        return
    schema = f"t_{secrets.token_hex(6)}"
    asyncio.run(_migrate(TEST_DATABASE_URL, schema))
    try:
        emptier = _PostgresEmptier(TEST_DATABASE_URL, schema)
        try:
            yield {"schema": schema, "emptier": emptier}
        finally:
            emptier.close()
    finally:
        asyncio.run(_drop_schema(schema))


@pytest.fixture
def database(tmp_path: Path, migrated: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Settings for an empty, migrated database of this test's own."""
    if not TEST_DATABASE_URL:
        path = tmp_path / "test.sqlite3"
        shutil.copyfile(migrated["template"], path)
        yield {"database_url": f"sqlite+aiosqlite:///{path}"}
        return
    migrated["emptier"].empty()
    yield {"database_url": TEST_DATABASE_URL, "database_schema": migrated["schema"]}


@pytest.fixture
def settings(tmp_path: Path, database: dict[str, Any]) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        admin_token=ADMIN_TOKEN,
        domain="example.com",
        fsync=False,
        gc_interval=3600,
        hostname="mx.example.com",
        smtp_listen="127.0.0.1:0",
        lmtp_listen="127.0.0.1:0",
        submission_listen="127.0.0.1:0",
        **database,
    )


@pytest.fixture
def resolver() -> StaticResolver:
    """The DNS every test sees: empty until the test publishes records (no network)."""
    return StaticResolver()


@pytest.fixture
async def runtime(settings: Settings, resolver: StaticResolver) -> AsyncIterator[Runtime]:
    runtime = Runtime.build(settings, passwords=FAST_PASSWORDS, resolver=resolver)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.close()


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the admin API, holding the access token."""
    transport = httpx.ASGITransport(app=app_for(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://postern.test", headers={"X-Access-Token": ADMIN_TOKEN}) as client:
        yield client


@pytest.fixture
async def anonymous(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client without the access token."""
    transport = httpx.ASGITransport(app=app_for(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://postern.test") as client:
        yield client


@dataclass
class MailDoors:
    """The SMTP (MX), LMTP and submission ports of a server running in this test."""

    smtp: int
    lmtp: int
    submission: int


@pytest.fixture
async def mail_doors(runtime: Runtime) -> AsyncIterator[MailDoors]:
    """The mail doors and the outbound queue worker, in the test's event loop. Talk to
    them with blocking clients (smtplib) through ``asyncio.to_thread``."""
    listeners = await start_mail_doors(runtime)
    worker = asyncio.create_task(runtime.outbound.run())
    try:
        yield MailDoors(**{door: bound_port(server) for door, server in listeners.items()})
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        for server in listeners.values():
            server.close()
            await server.wait_closed()


@pytest.fixture
async def sink(runtime: Runtime, resolver: StaticResolver) -> AsyncIterator[SmtpSink]:
    """A local SMTP server standing in for the internet: every remote domain's MX
    points at it (``resolver`` answers for the domains a test publishes with
    ``sink.serve_domain``), and the outbound queue delivers to its port."""
    server = SmtpSink()
    await server.start()
    runtime.outbound.settings = dataclasses.replace(runtime.outbound.settings, mx_port=server.port)
    server.resolver = resolver
    try:
        yield server
    finally:
        await server.stop()
