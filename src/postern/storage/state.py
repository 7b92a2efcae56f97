"""Server-wide key/value state (e.g. the admin token digest)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage.dialect import insert_for
from postern.storage.schema import server_state


async def get_value(conn: AsyncConnection, key: str) -> str | None:
    return await conn.scalar(select(server_state.c.value).where(server_state.c.key == key))


async def set_value(conn: AsyncConnection, key: str, value: str) -> None:
    stmt = insert_for(conn, server_state).values(key=key, value=value)
    await conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={"value": value}))
