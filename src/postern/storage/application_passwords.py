"""Rows of application specific passwords (only a keyed digest of each password)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage.schema import application_passwords


async def insert_password(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(insert(application_passwords).values(**values))


async def list_for_user(conn: AsyncConnection, user_id: str) -> list[Row]:
    stmt = (
        select(application_passwords)
        .where(application_passwords.c.user_id == user_id)
        .order_by(application_passwords.c.created_ms, application_passwords.c.id)
    )
    return list(await conn.execute(stmt))


async def get_by_digest(conn: AsyncConnection, user_id: str, digest: str) -> Row | None:
    """The password of ``user_id`` with this digest (one unique-index lookup)."""
    stmt = select(application_passwords).where(
        application_passwords.c.password_digest == digest, application_passwords.c.user_id == user_id
    )
    return (await conn.execute(stmt)).first()


async def delete_password(conn: AsyncConnection, user_id: str, asp_id: str) -> bool:
    result = await conn.execute(
        delete(application_passwords).where(application_passwords.c.id == asp_id, application_passwords.c.user_id == user_id)
    )
    return bool(result.rowcount)
