"""The rows of users' autoreplies, and the once-per-interval claim of a reply."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage.schema import autoreplies


async def get(conn: AsyncConnection, user_id: str) -> Row | None:
    return (await conn.execute(select(autoreplies).where(autoreplies.c.user_id == user_id))).first()


async def upsert(conn: AsyncConnection, user_id: str, values: dict[str, Any], created_ms: int) -> None:
    """Set the given fields of the user's autoreply, creating it if there is none."""
    existing = await get(conn, user_id)
    if existing is None:
        await conn.execute(autoreplies.insert().values(user_id=user_id, created_ms=created_ms, **values))
    else:
        await conn.execute(autoreplies.update().where(autoreplies.c.user_id == user_id).values(created_ms=created_ms, **values))


async def remove(conn: AsyncConnection, user_id: str) -> None:
    await conn.execute(delete(autoreplies).where(autoreplies.c.user_id == user_id))


_CLAIM = text(
    "INSERT INTO autoreply_sent (user_id, sender, sent_ms) VALUES (:user_id, :sender, :now)"
    " ON CONFLICT (user_id, sender) DO UPDATE SET sent_ms = excluded.sent_ms"
    " WHERE autoreply_sent.sent_ms <= :cutoff RETURNING sent_ms"
)
_SWEEP = text("DELETE FROM autoreply_sent WHERE sent_ms <= :cutoff")


async def claim(conn: AsyncConnection, user_id: str, sender: str, now_ms: int, interval_ms: int) -> bool:
    """True when no reply went from the user to ``sender`` in the last ``interval_ms``
    (and records this one): one statement, so concurrent deliveries agree."""
    result = await conn.execute(
        _CLAIM,
        {
            "user_id": user_id,
            "sender": sender,
            "now": now_ms,
            "cutoff": now_ms - interval_ms,
        },
    )
    return result.first() is not None


async def sweep(conn: AsyncConnection, before_ms: int) -> int:
    return (await conn.execute(_SWEEP, {"cutoff": before_ms})).rowcount
