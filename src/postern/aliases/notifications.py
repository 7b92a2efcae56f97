"""Notifications: what a user must hear about (an alias disabled after bounces, a
refused reply, quarantined mail), listed by the user API."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from postern.errors import NotFound
from postern.storage import notifications as store
from postern.storage.database import Database
from postern.storage.ids import now_ms

PAGE_SIZE = 20


@dataclass(frozen=True, slots=True)
class Notification:
    id: int
    title: str
    message: str  # HTML
    read: bool
    created_ms: int


def quote(text: str) -> str:
    """User or sender supplied text, made safe to put in a notification's HTML."""
    return html.escape(text, quote=True)


class Notifications:
    def __init__(self, db: Database):
        self.db = db

    async def notify(self, user_id: str, title: str, message: str, conn: AsyncConnection | None = None) -> int:
        """Record a notification; ``message`` is HTML, so quote() what it quotes.
        With ``conn``, in the caller's transaction (it then shares its fate)."""
        if conn is not None:
            return await store.insert(conn, user_id=user_id, title=title, message=message, created_ms=now_ms())
        async with self.db.write() as own:
            return await store.insert(own, user_id=user_id, title=title, message=message, created_ms=now_ms())

    async def page(self, user_id: str, page: int) -> tuple[list[Notification], bool]:
        """One page of PAGE_SIZE, newest first, and whether there are more."""
        async with self.db.read() as conn:
            rows = await store.page(conn, user_id, page * PAGE_SIZE, PAGE_SIZE + 1)
        items = [Notification(r.id, r.title, r.message, r.read, r.created_ms) for r in rows[:PAGE_SIZE]]
        return items, len(rows) > PAGE_SIZE

    async def mark_read(self, user_id: str, notification_id: int) -> None:
        async with self.db.write() as conn:
            if not await store.mark_read(conn, user_id, notification_id):
                raise NotFound("Notification not found")

    async def all_for(self, user_id: str) -> Sequence[Notification]:
        async with self.db.read() as conn:
            rows = await store.page(conn, user_id, 0, 1 << 31)
        return [Notification(r.id, r.title, r.message, r.read, r.created_ms) for r in rows]
