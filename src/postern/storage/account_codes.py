"""Codes mailed to a user (activation, password reset): keyed digests with a count of
wrong guesses and an expiry."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage.schema import account_codes


async def insert(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(account_codes.insert().values(**values))


async def delete_for(conn: AsyncConnection, user_id: str, purpose: str) -> None:
    await conn.execute(delete(account_codes).where(account_codes.c.user_id == user_id, account_codes.c.purpose == purpose))


async def latest(conn: AsyncConnection, user_id: str, purpose: str) -> Row | None:
    """The user's newest code for ``purpose`` (expired or not)."""
    stmt = (
        select(account_codes)
        .where(account_codes.c.user_id == user_id, account_codes.c.purpose == purpose)
        .order_by(account_codes.c.created_ms.desc(), account_codes.c.id.desc())
        .limit(1)
    )
    return (await conn.execute(stmt)).first()


async def add_attempt(conn: AsyncConnection, code_id: str) -> int:
    """One more wrong guess; returns the count."""
    await conn.execute(update(account_codes).where(account_codes.c.id == code_id).values(attempts=account_codes.c.attempts + 1))
    return int(await conn.scalar(select(account_codes.c.attempts).where(account_codes.c.id == code_id)) or 0)


async def delete_expired(conn: AsyncConnection, now_ms: int) -> int:
    result = await conn.execute(delete(account_codes).where(account_codes.c.expires_ms <= now_ms))
    return int(result.rowcount or 0)
