"""Profile pictures of the user API: small images kept in the database."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage.dialect import insert_for
from postern.storage.schema import profile_pictures


async def get(conn: AsyncConnection, user_id: str) -> Row | None:
    return (await conn.execute(select(profile_pictures).where(profile_pictures.c.user_id == user_id))).first()


async def token_of(conn: AsyncConnection, user_id: str) -> str | None:
    return await conn.scalar(select(profile_pictures.c.token).where(profile_pictures.c.user_id == user_id))


async def put(conn: AsyncConnection, values: dict[str, Any]) -> None:
    stmt = insert_for(conn, profile_pictures).values(**values)
    changes = {k: v for k, v in values.items() if k != "user_id"}
    await conn.execute(stmt.on_conflict_do_update(index_elements=["user_id"], set_=changes))


async def remove(conn: AsyncConnection, user_id: str) -> None:
    await conn.execute(delete(profile_pictures).where(profile_pictures.c.user_id == user_id))
