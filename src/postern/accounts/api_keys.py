"""The user API's keys (SimpleLogin's "API code").

A key is 43 random URL-safe characters from ``secrets``; only its keyed digest
(``ServerKey.digest``, purpose "api_key") is stored, under a unique index, and a
presented key is found by its digest: no secret is ever compared as a string.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Row

from postern.accounts.server_key import ServerKey
from postern.storage import api_keys as store
from postern.storage import users as user_store
from postern.storage.database import Database
from postern.storage.ids import new_id, now_ms

# last_used_ms is written at most this often per key (a write per request would cost).
TOUCH_EVERY_MS = 60_000
SUDO_MS = 5 * 60 * 1000
MAX_DEVICE = 256


@dataclass(frozen=True, slots=True)
class KeyHolder:
    """The user behind a presented key."""

    key_id: str
    user: Row
    sudo_until_ms: int | None

    @property
    def in_sudo(self) -> bool:
        return self.sudo_until_ms is not None and self.sudo_until_ms > now_ms()


class ApiKeys:
    def __init__(self, db: Database, server_key: ServerKey):
        self.db = db
        self.server_key = server_key

    def digest(self, key: str) -> str:
        return self.server_key.digest(key, purpose="api_key")

    async def create(self, user_id: str, device: str, *, conn: Any = None) -> str:
        """A new key for ``device`` (inside ``conn``'s transaction when given)."""
        key = secrets.token_urlsafe(32)
        values = {
            "id": new_id(),
            "user_id": user_id,
            "name": (device.strip() or "unknown device")[:MAX_DEVICE],
            "key_digest": self.digest(key),
            "created_ms": now_ms(),
        }
        if conn is not None:
            await store.insert(conn, values)
        else:
            async with self.db.write() as own:
                await store.insert(own, values)
        return key

    async def authenticate(self, key: str) -> KeyHolder | None:
        """The holder of a live key of an enabled, activated user, or None."""
        if not key or len(key) > 512:
            return None
        try:
            digest = self.digest(key)
        except UnicodeError:
            return None
        async with self.db.read() as conn:
            row = await store.get_by_digest(conn, digest)
            user = await user_store.get_user(conn, row.user_id) if row is not None else None
        if row is None or user is None or user.disabled or not user.activated:
            return None
        now = now_ms()
        if row.last_used_ms is None or now - row.last_used_ms >= TOUCH_EVERY_MS:
            async with self.db.write() as conn:
                await store.touch(conn, row.id, now)
        return KeyHolder(row.id, user, row.sudo_until_ms)

    async def revoke(self, key_id: str) -> None:
        async with self.db.write() as conn:
            await store.delete_key(conn, key_id)

    @staticmethod
    async def revoke_all(conn: Any, user_id: str) -> int:
        """Every key of the user, inside the caller's transaction."""
        return await store.delete_for_user(conn, user_id)

    async def open_sudo(self, key_id: str) -> int:
        until = now_ms() + SUDO_MS
        async with self.db.write() as conn:
            await store.set_sudo(conn, key_id, until)
        return until
