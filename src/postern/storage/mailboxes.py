"""Forwarding targets of aliases (the user API's "mailboxes")."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage.schema import mailboxes


async def insert(conn: AsyncConnection, values: dict[str, Any]) -> int:
    result = await conn.execute(mailboxes.insert().values(**values).returning(mailboxes.c.id))
    return int(result.scalar_one())


async def get_by_email_key(conn: AsyncConnection, user_id: str, email_key: str) -> Row | None:
    stmt = select(mailboxes).where(mailboxes.c.user_id == user_id, mailboxes.c.email_key == email_key)
    return (await conn.execute(stmt)).first()


async def has_default(conn: AsyncConnection, user_id: str) -> bool:
    stmt = select(mailboxes.c.id).where(mailboxes.c.user_id == user_id, mailboxes.c.is_default).limit(1)
    return (await conn.scalar(stmt)) is not None


async def set_verified(conn: AsyncConnection, mailbox_id: int) -> None:
    await conn.execute(update(mailboxes).where(mailboxes.c.id == mailbox_id).values(verified=True))
