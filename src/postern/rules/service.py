"""The rules service: filters and autoreplies as the admin API manages them, and the
users' rules as delivery reads them (cached, following change events).

Delivery asks ``for_users`` for the rules of a batch's recipients and applies them
with ``rules.engine``; it never reads the tables itself, and this module never writes
SQL itself (``storage.filters``, ``storage.autoreplies`` do).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy.engine import Row

from postern.accounts.service import require_user
from postern.errors import Forbidden, InvalidInput, NotFound
from postern.events import (
    Event,
    EventBus,
    EventsLost,
    FolderCreated,
    FolderDeleted,
    FolderRenamed,
    RulesChanged,
    UserDeleted,
)
from postern.rules.engine import Filter, UserRules
from postern.rules.model import clean_action, clean_query
from postern.storage import autoreplies as autoreply_store
from postern.storage import filters as filter_store
from postern.storage import folders as folder_store
from postern.storage.database import Database
from postern.storage.ids import is_id, new_id, now_ms
from postern.storage.pagination import Cursor

log = logging.getLogger("postern.rules")

# A cached user's rules are read again after this long even without an event (the
# user's addresses, name and forward limit change without one).
CACHE_TTL_S = 30.0
MAX_CACHED = 100_000
# WildDuck's limits of an autoreply's fields.
MAX_AUTOREPLY = {
    "name": 128,
    "subject": 2 * 1024,
    "text": 128 * 1024,
    "html": 128 * 1024,
}


# The events that change what delivery reads of a user's rules (the cache follows them).
FOLLOWED_EVENTS = (RulesChanged, FolderCreated, FolderDeleted, FolderRenamed, UserDeleted)


class TooMany(Forbidden):
    code = "TooMany"


def _filter_not_found() -> NotFound:
    return NotFound("Filter was not found", code="FilterNotFound")


class Rules:
    def __init__(
        self,
        db: Database,
        bus: EventBus,
        *,
        max_filters: int = 400,
        autoreply_interval_s: float = 4 * 3600,
        redis_url: str | None = None,
    ):
        self.db = db
        self.bus = bus
        self.max_filters = max_filters
        self.autoreply_interval_ms = int(autoreply_interval_s * 1000)
        self._redis_url = redis_url
        self._redis: Any = None
        self._cache: dict[str, tuple[float, UserRules]] = {}
        # Bumped by every change event of a user (and all of them by a lost event): a
        # load that raced a change is not kept.
        self._generation: dict[str, int] = {}
        self._epoch = 0
        bus.watch(self._on_events)

    # The cache -----------------------------------------------------------------------

    def _on_events(self, events: list[Event] | None) -> None:
        if events is None:
            self._forget_all()
            return
        for event in events:
            if isinstance(
                event,
                (
                    RulesChanged,
                    FolderCreated,
                    FolderDeleted,
                    FolderRenamed,
                    UserDeleted,
                ),
            ):
                self._cache.pop(event.user_id, None)
                self._generation[event.user_id] = self._generation.get(event.user_id, 0) + 1
            elif isinstance(event, EventsLost):
                self._forget_all()

    def _forget_all(self) -> None:
        self._cache.clear()
        self._generation.clear()
        self._epoch += 1

    async def for_users(self, user_ids: Sequence[str]) -> dict[str, UserRules]:
        """Each user's rules, from the cache or in one read for all that are missing."""
        now = time.monotonic()
        found: dict[str, UserRules] = {}
        missing: list[str] = []
        for user_id in user_ids:
            cached = self._cache.get(user_id)
            if cached is not None and now - cached[0] < CACHE_TTL_S:
                found[user_id] = cached[1]
            elif user_id not in found:
                missing.append(user_id)
        if not missing:
            return found
        epoch = self._epoch
        generations = {u: self._generation.get(u, 0) for u in missing}
        async with self.db.read() as conn:
            rows = await filter_store.delivery_rows(conn, missing)
        if len(self._cache) > MAX_CACHED:
            self._cache.clear()
        for user_id, entry in rows.items():
            rules = UserRules(
                user_id=user_id,
                filters=tuple(Filter.of(r.id, orjson.loads(r.query), orjson.loads(r.action)) for r in entry["filters"]),
                folders=entry["folders"],
                addresses=frozenset(entry["addresses"]),
                name=entry["name"],
                forwards_limit=entry["forwards"],
                autoreply=entry["autoreply"],
            )
            found[user_id] = rules
            if epoch == self._epoch and generations[user_id] == self._generation.get(user_id, 0):
                self._cache[user_id] = (now, rules)
        return found

    def _changed(self, user_id: str) -> None:
        self.bus.publish([RulesChanged(user_id)])

    # Filters -------------------------------------------------------------------------

    async def _check_mailbox(self, conn: Any, user_id: str, action: dict[str, Any]) -> None:
        mailbox = action.get("mailbox")
        if mailbox and await folder_store.get_folder(conn, user_id, mailbox) is None:
            raise NotFound("This mailbox does not exist", code="NoSuchMailbox")

    async def create_filter(
        self,
        user_id: str,
        *,
        name: str,
        query: dict[str, Any],
        action: dict[str, Any],
        disabled: bool,
    ) -> str:
        query, action = clean_query(query), clean_action(action)
        filter_id = new_id()
        async with self.db.write() as conn:
            user = await require_user(conn, user_id, lock=True)
            count, latest = await filter_store.usage(conn, user_id)
            allowed = self.allowed_filters(user)
            if count >= allowed:
                raise TooMany("Maximum filters limit reached")
            await self._check_mailbox(conn, user_id, action)
            await filter_store.insert(
                conn,
                {
                    "id": filter_id,
                    "user_id": user_id,
                    "name": name,
                    "query": orjson.dumps(query).decode(),
                    "action": orjson.dumps(action).decode(),
                    "disabled": disabled,
                    # Strictly after the user's latest: creation order is the order of use.
                    "created_ms": max(now_ms(), latest + 1),
                },
            )
        self._changed(user_id)
        return filter_id

    def allowed_filters(self, user: Row) -> int:
        return self.max_filters

    async def list_filters(self, user_id: str) -> tuple[list[Row], dict[str, str], int]:
        """The user's filters in order, the paths of their folders, and how many are allowed."""
        async with self.db.read() as conn:
            user = await require_user(conn, user_id)
            rows = await filter_store.of_user(conn, user_id)
            paths = await filter_store.folder_paths(
                conn,
                [m for m in (orjson.loads(r.action).get("mailbox") for r in rows) if m],
            )
        return rows, paths, self.allowed_filters(user)

    async def get_filter(self, user_id: str, filter_id: str) -> Row:
        async with self.db.read() as conn:
            row = await filter_store.get(conn, user_id, filter_id) if is_id(user_id) and is_id(filter_id) else None
            if row is None:
                await require_user(conn, user_id)
                raise _filter_not_found()
        return row

    async def update_filter(
        self,
        user_id: str,
        filter_id: str,
        *,
        name: str | None,
        disabled: bool | None,
        query: dict[str, Any] | None,
        action: dict[str, Any] | None,
    ) -> None:
        """Change what is given; in ``query`` and ``action``, a key given as empty
        (``""``, None, ``[]``) is removed, a key not given is kept."""
        async with self.db.write() as conn:
            row = await filter_store.get(conn, user_id, filter_id) if is_id(user_id) and is_id(filter_id) else None
            if row is None:
                await require_user(conn, user_id)
                raise _filter_not_found()
            values: dict[str, Any] = {}
            if name is not None:
                values["name"] = name
            if disabled is not None:
                values["disabled"] = disabled
            if query is not None:
                merged = {**orjson.loads(row.query), **query}
                values["query"] = orjson.dumps(clean_query(merged)).decode()
            if action is not None:
                merged = {**orjson.loads(row.action), **action}
                cleaned = clean_action(merged)
                if action.get("mailbox"):
                    await self._check_mailbox(conn, user_id, cleaned)
                values["action"] = orjson.dumps(cleaned).decode()
            if values:
                await filter_store.update_one(conn, user_id, filter_id, values)
        self._changed(user_id)

    async def delete_filter(self, user_id: str, filter_id: str) -> None:
        async with self.db.write() as conn:
            deleted = await filter_store.delete_one(conn, user_id, filter_id) if is_id(user_id) and is_id(filter_id) else False
            if not deleted:
                await require_user(conn, user_id)
                raise _filter_not_found()
        self._changed(user_id)

    async def all_filters(self, *, forward: str | None, limit: int, cursor: Cursor | None) -> tuple[list[Row], int, dict[str, str]]:
        async with self.db.read() as conn:
            rows, total = await filter_store.page_all(conn, forward=forward, limit=limit, cursor=cursor)
            paths = await filter_store.folder_paths(
                conn,
                [m for m in (orjson.loads(r.action).get("mailbox") for r in rows) if m],
            )
        return rows, total, paths

    # Autoreplies ---------------------------------------------------------------------

    async def set_autoreply(self, user_id: str, values: dict[str, Any]) -> str:
        for key, limit in MAX_AUTOREPLY.items():
            value = values.get(key)
            if value is not None and len(value) > limit:
                raise InvalidInput(
                    f'"{key}" length must be less than or equal to {limit} characters long',
                    field=key,
                )
        start, end = values.get("start_ms"), values.get("end_ms")
        async with self.db.write() as conn:
            await require_user(conn, user_id, lock=True)
            existing = await autoreply_store.get(conn, user_id)
            if "start_ms" not in values and existing is not None:
                start = existing.start_ms
            if "end_ms" not in values and existing is not None:
                end = existing.end_ms
            if start is not None and end is not None and end < start:
                raise InvalidInput('"end" must be later than "start"', field="end")
            await autoreply_store.upsert(conn, user_id, values, now_ms() // 1000 * 1000)
        self._changed(user_id)
        return user_id

    async def get_autoreply(self, user_id: str) -> Row | None:
        async with self.db.read() as conn:
            await require_user(conn, user_id)
            return await autoreply_store.get(conn, user_id)

    async def delete_autoreply(self, user_id: str) -> None:
        async with self.db.write() as conn:
            await require_user(conn, user_id)
            await autoreply_store.remove(conn, user_id)
        self._changed(user_id)

    async def claim_autoreply(self, user_id: str, sender: str) -> bool:
        """True at most once per user and sender per interval, across processes (in
        Redis when configured, else in the database)."""
        sender = sender.lower()[:512]
        if self._redis_url:
            try:
                if self._redis is None:
                    from redis.asyncio import Redis

                    self._redis = Redis.from_url(self._redis_url)
                return bool(
                    await self._redis.set(
                        f"postern:autoreply:{user_id}:{sender}",
                        b"1",
                        nx=True,
                        px=self.autoreply_interval_ms,
                    )
                )
            except Exception:
                log.exception("autoreply interval in Redis failed; none sent")
                return False
        async with self.db.write() as conn:
            return await autoreply_store.claim(conn, user_id, sender, now_ms(), self.autoreply_interval_ms)

    async def sweep(self) -> int:
        """Forget the replies older than the interval (the database's record only;
        Redis keys expire by themselves)."""
        async with self.db.write() as conn:
            return await autoreply_store.sweep(conn, now_ms() - self.autoreply_interval_ms)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
