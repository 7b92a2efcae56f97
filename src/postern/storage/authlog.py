"""Rows of the authentication log."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage.pagination import Cursor
from postern.storage.schema import authlog


async def insert_entry(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(insert(authlog).values(**values))


async def list_entries(
    conn: AsyncConnection,
    user_id: str,
    *,
    action: str | None,
    sess: str | None,
    ip: str | None,
    now_ms: int,
    limit: int,
    cursor: Cursor | None,
) -> tuple[list[Row], int]:
    """Live entries of a user, newest first; ``limit + 1`` rows. Cursor key: (created_ms, id)."""
    filters = [authlog.c.user_id == user_id, authlog.c.expires_ms > now_ms]
    if action:
        filters.append(authlog.c.action == action)
    if sess:
        filters.append(authlog.c.sess == sess)
    if ip:
        filters.append(authlog.c.ip == ip)
    total = await conn.scalar(select(func.count()).select_from(authlog).where(*filters))
    stmt = select(authlog).where(*filters)
    if cursor is not None:
        created, entry_id = cursor.key
        if cursor.direction == "previous":
            stmt = stmt.where(or_(authlog.c.created_ms > created, and_(authlog.c.created_ms == created, authlog.c.id > entry_id)))
            stmt = stmt.order_by(authlog.c.created_ms, authlog.c.id)
        else:
            stmt = stmt.where(or_(authlog.c.created_ms < created, and_(authlog.c.created_ms == created, authlog.c.id < entry_id)))
            stmt = stmt.order_by(authlog.c.created_ms.desc(), authlog.c.id.desc())
    else:
        stmt = stmt.order_by(authlog.c.created_ms.desc(), authlog.c.id.desc())
    rows = list(await conn.execute(stmt.limit(limit + 1)))
    return rows, int(total or 0)


async def delete_expired(conn: AsyncConnection, now_ms: int) -> int:
    result = await conn.execute(delete(authlog).where(authlog.c.expires_ms <= now_ms))
    return result.rowcount or 0
