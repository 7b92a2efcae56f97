"""DKIM signing keys, one per sending domain."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage.dialect import insert_for
from postern.storage.schema import dkim_keys


async def get_key(conn: AsyncConnection, domain: str) -> Row | None:
    return (await conn.execute(select(dkim_keys).where(dkim_keys.c.domain == domain))).first()


async def put_key(conn: AsyncConnection, domain: str, selector: str, algorithm: str, private_key_pem: str, now_ms: int) -> None:
    values = {"selector": selector, "algorithm": algorithm, "private_key_pem": private_key_pem, "created_ms": now_ms}
    stmt = insert_for(conn, dkim_keys).values(domain=domain, **values)
    await conn.execute(stmt.on_conflict_do_update(index_elements=["domain"], set_=values))


async def all_keys(conn: AsyncConnection) -> list[Row]:
    return list((await conn.execute(select(dkim_keys.c.domain, dkim_keys.c.selector))).all())
