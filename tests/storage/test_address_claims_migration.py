"""Migration 0007 fills the one namespace of addresses (``address_claims``) from the
rows that exist: hosted addresses, aliases, deleted aliases, reverse aliases. Where
two of them already share an address (possible before the namespace existed), the
hosted address holds the claim (the router delivers to it first), and the migration
goes through. On SQLite, and on PostgreSQL when POSTERN_TEST_DATABASE_URL names one."""

from __future__ import annotations

import secrets
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from postern.storage.database import Database, migrate
from postern.storage.schema import (
    address_claims,
    addresses,
    aliases,
    contacts,
    deleted_aliases,
    mailboxes,
    users,
)
from tests.conftest import TEST_DATABASE_URL


async def _check(url: str, schema: str | None) -> None:
    database = Database(url, schema=schema)
    try:
        await migrate(database, "0011")
        async with database.engine.begin() as conn:
            for user in ("u1", "u2"):
                await conn.execute(
                    users.insert().values(
                        id=user,
                        username=user,
                        quota_allowed=1,
                        recipients_limit=1,
                        forwards_limit=1,
                        created_ms=1,
                    )
                )
            await conn.execute(
                addresses.insert(),
                [
                    {
                        "id": "a1",
                        "user_id": "u1",
                        "address": "alice@example.com",
                        "address_key": "alice@example.com",
                        "main": True,
                        "created_ms": 1,
                    },
                    {
                        "id": "a2",
                        "user_id": "u1",
                        "address": "shared@example.com",
                        "address_key": "shared@example.com",
                        "main": False,
                        "created_ms": 1,
                    },
                ],
            )
            box = (
                await conn.execute(
                    mailboxes.insert()
                    .values(
                        user_id="u2",
                        email="b@x.test",
                        email_key="b@x.test",
                        verified=True,
                        created_ms=1,
                    )
                    .returning(mailboxes.c.id)
                )
            ).scalar_one()
            shop = (
                await conn.execute(
                    aliases.insert()
                    .values(
                        user_id="u2",
                        email="shop@sl.example",
                        email_key="shop@sl.example",
                        mailbox_id=box,
                        latest_activity_ms=1,
                        created_ms=1,
                    )
                    .returning(aliases.c.id)
                )
            ).scalar_one()
            # Before the namespace, the admin API could make an address an alias held.
            await conn.execute(
                aliases.insert().values(
                    user_id="u2",
                    email="shared@example.com",
                    email_key="shared@example.com",
                    mailbox_id=box,
                    latest_activity_ms=1,
                    created_ms=1,
                )
            )
            await conn.execute(
                deleted_aliases.insert().values(
                    email_key="gone@sl.example",
                    email="gone@sl.example",
                    user_id="u2",
                    deleted_ms=1,
                )
            )
            await conn.execute(
                contacts.insert().values(
                    user_id="u2",
                    alias_id=shop,
                    email="j@w.test",
                    email_key="j@w.test",
                    reverse_alias="ra+x@sl.example",
                    reverse_alias_key="ra+x@sl.example",
                    created_ms=1,
                )
            )
        await migrate(database)
        async with database.engine.connect() as conn:
            claims = {
                row.address_key: (row.kind, row.user_id)
                for row in await conn.execute(select(address_claims))
            }
        assert claims == {
            "alice@example.com": ("address", "u1"),
            "shared@example.com": ("address", "u1"),
            "shop@sl.example": ("alias", "u2"),
            "gone@sl.example": ("deleted_alias", "u2"),
            "ra+x@sl.example": ("reverse_alias", "u2"),
        }
    finally:
        await database.close()


async def test_sqlite(tmp_path: Path) -> None:
    await _check(f"sqlite+aiosqlite:///{tmp_path / 'claims.sqlite3'}", None)


async def test_postgresql() -> None:
    if not TEST_DATABASE_URL:
        return  # the suite runs on SQLite; CI runs it on PostgreSQL too
    schema = f"t_{secrets.token_hex(6)}"
    try:
        await _check(TEST_DATABASE_URL, schema)
    finally:
        engine = create_async_engine(TEST_DATABASE_URL)
        try:
            async with engine.begin() as conn:
                await conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await engine.dispose()
