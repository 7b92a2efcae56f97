"""The authentication log: every login, failure and security change of a user, kept 30
days (``GET /users/{user}/authlog``). Nothing secret is ever written to it."""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy.engine import Row

from postern.storage import authlog as store
from postern.storage.database import Database
from postern.storage.ids import new_id, now_ms
from postern.storage.pagination import Cursor

RETENTION_MS = 30 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class AuthMeta:
    """Where a request came from, as the caller tells it (all optional)."""

    protocol: str | None = None
    sess: str | None = None
    ip: str | None = None


NO_META = AuthMeta()


def entry_values(user_id: str, action: str, result: str, meta: AuthMeta, data: dict[str, Any]) -> dict[str, Any]:
    created = now_ms()
    return {
        "id": new_id(),
        "user_id": user_id,
        "action": action,
        "result": result,
        "protocol": meta.protocol,
        "sess": meta.sess,
        "ip": meta.ip,
        "data": orjson.dumps({k: v for k, v in data.items() if v is not None}).decode(),
        "created_ms": created,
        "expires_ms": created + RETENTION_MS,
    }


class AuthLog:
    def __init__(self, db: Database):
        self.db = db
        self._writer = store.EntryWriter(db)

    async def record(self, user_id: str, action: str, result: str, meta: AuthMeta = NO_META, **data: Any) -> None:
        """Record an entry, committed with the concurrent ones (one bulk INSERT for a
        batch): never call it inside a write transaction."""
        await self._writer.submit((entry_values(user_id, action, result, meta, data), None))

    async def record_login(self, user_id: str, meta: AuthMeta, scope: str, asp_id: str | None) -> None:
        """Record a successful authentication, and that the application password
        ``asp_id`` (if one was used) was used now; as ``record``."""
        values = entry_values(user_id, "authentication", "success", meta, {"scope": scope, "asp": asp_id})
        await self._writer.submit((values, asp_id))

    @staticmethod
    async def record_in(conn: Any, user_id: str, action: str, result: str, meta: AuthMeta = NO_META, **data: Any) -> None:
        """Record an entry inside the caller's write transaction (with the change it logs)."""
        await store.insert_entry(conn, entry_values(user_id, action, result, meta, data))

    async def list(
        self, conn: Any, user_id: str, *, action: str | None, sess: str | None, ip: str | None, limit: int, cursor: Cursor | None
    ) -> tuple[builtins.list[Row], int]:
        return await store.list_entries(conn, user_id, action=action, sess=sess, ip=ip, now_ms=now_ms(), limit=limit, cursor=cursor)

    async def list_for_user(
        self, user_id: str, *, action: str | None, sess: str | None, ip: str | None, limit: int, cursor: Cursor | None
    ) -> tuple[builtins.list[Row], int]:
        """A page of the user's live entries, newest first (NotFound for no such user)."""
        from postern.storage.users import require_user

        async with self.db.read() as conn:
            await require_user(conn, user_id)
            return await self.list(conn, user_id, action=action, sess=sess, ip=ip, limit=limit, cursor=cursor)

    async def expire(self) -> int:
        async with self.db.write() as conn:
            return await store.delete_expired(conn, now_ms())


def entry_data(row: Row) -> dict[str, Any]:
    return orjson.loads(row.data)
