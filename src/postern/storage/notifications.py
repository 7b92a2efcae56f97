"""Notifications of the user API: what a user must hear about."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage.schema import notifications


async def insert(conn: AsyncConnection, *, user_id: str, title: str, message: str, created_ms: int) -> int:
    stmt = notifications.insert().values(user_id=user_id, title=title, message=message, created_ms=created_ms)
    return int((await conn.execute(stmt.returning(notifications.c.id))).scalar_one())


async def page(conn: AsyncConnection, user_id: str, offset: int, limit: int) -> Sequence[Row]:
    """Newest first; ``limit`` rows at most."""
    stmt = select(notifications).where(notifications.c.user_id == user_id).order_by(notifications.c.id.desc()).offset(offset).limit(limit)
    return (await conn.execute(stmt)).all()


async def mark_read(conn: AsyncConnection, user_id: str, notification_id: int) -> bool:
    stmt = update(notifications).where(notifications.c.id == notification_id, notifications.c.user_id == user_id).values(read=True)
    return (await conn.execute(stmt)).rowcount > 0
