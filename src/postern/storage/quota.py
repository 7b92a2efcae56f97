"""The stored size of a user's mail, recomputed from the messages themselves."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage.schema import messages, users


async def recompute_storage_used(conn: AsyncConnection, user_id: str) -> tuple[int, int] | None:
    """Lock the user's row, set ``storage_used`` to the sum of its messages' sizes and
    return (previous, new); None if the user does not exist. The caller's write
    transaction makes the read and the write one step for every other writer."""
    previous = await conn.scalar(select(users.c.storage_used).where(users.c.id == user_id).with_for_update())
    if previous is None:
        return None
    used = int(await conn.scalar(select(func.coalesce(func.sum(messages.c.size), 0)).where(messages.c.user_id == user_id)) or 0)
    if used != previous:
        await conn.execute(update(users).where(users.c.id == user_id).values(storage_used=used))
    return int(previous), used


async def user_ids_after(conn: AsyncConnection, after: str | None, limit: int) -> list[str]:
    """The next ``limit`` user ids in id order, after ``after``."""
    stmt = select(users.c.id).order_by(users.c.id).limit(limit)
    if after is not None:
        stmt = stmt.where(users.c.id > after)
    return [row.id for row in await conn.execute(stmt)]
