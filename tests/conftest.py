"""Shared fixtures: a fresh database per test, on SQLite by default and on PostgreSQL
when POSTERN_TEST_DATABASE_URL names one (CI runs the suite both ways). A PostgreSQL
that cannot be reached fails the tests; it never skips them."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from postern.accounts.passwords import Passwords
from postern.config import Settings
from postern.delivery.dns import StaticResolver
from postern.http.app import create_app
from postern.runtime import Runtime
from postern.server import bound_port, start_mail_doors
from postern.storage.database import Database, migrate
from postern.storage.schema import metadata
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
        yield {"schema": schema}
    finally:
        asyncio.run(_drop_schema(schema))


@pytest.fixture
async def database(tmp_path: Path, migrated: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """Settings for an empty, migrated database of this test's own."""
    if not TEST_DATABASE_URL:
        path = tmp_path / "test.sqlite3"
        shutil.copyfile(migrated["template"], path)
        yield {"database_url": f"sqlite+aiosqlite:///{path}"}
        return
    schema = migrated["schema"]
    # DELETE, children first, rather than TRUNCATE: on tables holding a few rows it
    # is many times cheaper (TRUNCATE makes new files for every table).
    engine = create_async_engine(TEST_DATABASE_URL)
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
            for table in reversed(metadata.sorted_tables):
                await conn.exec_driver_sql(f'DELETE FROM "{schema}"."{table.name}"')
    finally:
        await engine.dispose()
    yield {"database_url": TEST_DATABASE_URL, "database_schema": schema}


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
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://postern.test", headers={"X-Access-Token": ADMIN_TOKEN}) as client:
        yield client


@pytest.fixture
async def anonymous(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client without the access token."""
    transport = httpx.ASGITransport(app=create_app(runtime))
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
