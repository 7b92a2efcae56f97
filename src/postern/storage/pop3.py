"""The reads POP3 needs: a folder's messages in UID order with what it takes to
measure and send them (blob key, stored size, per-copy prefix)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage.schema import messages


async def maildrop(conn: AsyncConnection, folder_id: str) -> list[Row]:
    """(uid, blob_key, size, prefix) of every message of the folder, by UID."""
    stmt = (
        select(messages.c.uid, messages.c.blob_key, messages.c.size, messages.c.prefix)
        .where(messages.c.folder_id == folder_id)
        .order_by(messages.c.uid)
    )
    return list(await conn.execute(stmt))


async def message_source(conn: AsyncConnection, folder_id: str, uid: int) -> Row | None:
    """(blob_key, prefix) of one message, or None when it is gone."""
    stmt = select(messages.c.blob_key, messages.c.prefix).where(messages.c.folder_id == folder_id, messages.c.uid == uid)
    return (await conn.execute(stmt)).first()
