"""The timeline of each message (the admin API's message events)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage.ids import new_id
from postern.storage.schema import message_events


async def add_events(conn: AsyncConnection, events: Sequence[tuple[str, str, str, dict[str, Any], int]]) -> None:
    """Insert (user_id, mid, action, data, time_ms) events."""
    if events:
        await conn.execute(
            message_events.insert(),
            [
                {"id": new_id(), "user_id": u, "mid": m, "action": a, "data": orjson.dumps(d).decode(), "created_ms": t}
                for u, m, a, d, t in events
            ],
        )


async def events_of(conn: AsyncConnection, user_id: str, mid: str) -> list[Any]:
    stmt = (
        select(message_events)
        .where(message_events.c.user_id == user_id, message_events.c.mid == mid)
        .order_by(message_events.c.created_ms, message_events.c.id)
    )
    return list(await conn.execute(stmt))
