"""The user API's keys: looked up by their keyed digest, never stored in clear."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage.schema import api_keys


async def insert(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(api_keys.insert().values(**values))


async def get_by_digest(conn: AsyncConnection, key_digest: str) -> Row | None:
    return (await conn.execute(select(api_keys).where(api_keys.c.key_digest == key_digest))).first()


async def touch(conn: AsyncConnection, key_id: str, now_ms: int) -> None:
    await conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(last_used_ms=now_ms))


async def set_sudo(conn: AsyncConnection, key_id: str, until_ms: int) -> None:
    await conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(sudo_until_ms=until_ms))


async def delete_key(conn: AsyncConnection, key_id: str) -> bool:
    result = await conn.execute(delete(api_keys).where(api_keys.c.id == key_id))
    return result.rowcount == 1


async def delete_for_user(conn: AsyncConnection, user_id: str) -> int:
    result = await conn.execute(delete(api_keys).where(api_keys.c.user_id == user_id))
    return int(result.rowcount or 0)
