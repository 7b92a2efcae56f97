"""Fixed-window counters of the rate limiter, kept in the database (one machine)."""

from __future__ import annotations

from sqlalchemy import case, delete
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage.database import Database
from postern.storage.dialect import insert_for
from postern.storage.quick_reads import in_list, read_rows
from postern.storage.schema import rate_limits


async def increment(conn: AsyncConnection, key: str, now_ms: int, window_ms: int) -> tuple[int, int]:
    """Count one more event in ``key``'s current window (a new window once the last one
    ended); returns the count and when the window ends."""
    expired = rate_limits.c.expires_ms <= now_ms
    stmt = insert_for(conn, rate_limits).values(key=key, window_start_ms=now_ms, count=1, expires_ms=now_ms + window_ms)
    stmt = stmt.on_conflict_do_update(
        index_elements=["key"],
        set_={
            "count": case((expired, 1), else_=rate_limits.c.count + 1),
            "window_start_ms": case((expired, now_ms), else_=rate_limits.c.window_start_ms),
            "expires_ms": case((expired, now_ms + window_ms), else_=rate_limits.c.expires_ms),
        },
    ).returning(rate_limits.c.count, rate_limits.c.expires_ms)
    count, expires_ms = (await conn.execute(stmt)).one()
    return int(count), int(expires_ms)


async def current_many(db: Database, keys: list[str], now_ms: int) -> list[tuple[int, int]]:
    """The count of each key's live window (0 when there is none) and its end, in
    order, read in one statement (``quick_reads``)."""
    if not keys:
        return []
    names, params = in_list("k", keys)
    rows = (await read_rows(db, [(f'SELECT "key", count, expires_ms FROM rate_limits WHERE "key" IN {names}', params)]))[0]
    live = {key: (int(count), int(expires)) for key, count, expires in rows if expires > now_ms}
    return [live.get(key, (0, now_ms)) for key in keys]


async def reset(conn: AsyncConnection, key: str) -> None:
    await conn.execute(delete(rate_limits).where(rate_limits.c.key == key))


async def delete_expired(conn: AsyncConnection, now_ms: int) -> int:
    result = await conn.execute(delete(rate_limits).where(rate_limits.c.expires_ms <= now_ms))
    return result.rowcount or 0
