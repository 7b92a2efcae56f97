"""Fetching an IMAP account: per folder, UIDVALIDITY and the UIDs fetched; new mail
and (``all``) the history, newest first, resumable at any moment (every message's
position is committed with its local copy). Read-only (EXAMINE, BODY.PEEK) unless
the user asked for delete-after-fetch. After a UIDVALIDITY change, messages already
fetched are recognised by Message-ID, then by content hash, and not delivered again."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from postern.errors import DomainError
from postern.mailstore.service import AppendResult
from postern.remote.deliver import (
    FetchedDelivery,
    Position,
    content_hash,
    message_id_of,
)
from postern.remote.imap_client import FetchItem, FolderMissing, ImapClient, uid_ranges
from postern.remote.wire import ProtocolError, RemoteError
from postern.storage import remote_identities as store
from postern.storage.database import Database

log = logging.getLogger("postern.remote")

BATCH = 64  # UIDs per UID FETCH
IN_FLIGHT = 32  # deliveries waiting for their group commit at once


class Cancelled(Exception):
    """The user asked to stop: ``cancel`` (cancel_fetch_required: the rest of the
    history is given up) or ``stop`` (connection_required false, deleted)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class Rematch:
    """Positions recorded under an old UIDVALIDITY, to recognise their messages."""

    by_message_id: dict[str, list[Any]] = field(default_factory=dict)
    by_hash: dict[str, list[Any]] = field(default_factory=dict)

    def take(self, message_id: str | None, digest: str | None) -> Any:
        for key, index in ((message_id, self.by_message_id), (digest, self.by_hash)):
            rows = index.get(key or "") if key else None
            if rows:
                row = rows.pop()
                # The same row must not match twice through the other index.
                other = self.by_hash if index is self.by_message_id else self.by_message_id
                other_key = row.content_hash if index is self.by_message_id else row.message_id
                if other_key and row in other.get(other_key, []):
                    other[other_key].remove(row)
                return row
        return None


def _internal_ms(text: str | None) -> int | None:
    if not text:
        return None
    try:
        return int(parsedate_to_datetime(text.replace("-", " ", 2)).timestamp() * 1000)
    except (TypeError, ValueError, IndexError):
        return None


def _since(ms: int) -> bytes:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%d-%b-%Y").encode()


class ImapFetch:
    """One fetch of one identity over an open, authenticated client."""

    def __init__(
        self,
        db: Database,
        delivery: FetchedDelivery,
        client: ImapClient,
        identity: Any,
        check: Callable[[], Awaitable[Any]],
    ):
        self.db, self.delivery, self.client, self.identity, self.check = db, delivery, client, identity, check
        self.errors: list[str] = []

    async def folders(self) -> list[str]:
        wanted = json.loads(self.identity.folders)
        if wanted == ["*"]:
            return [
                name for name, flags in await self.client.list_folders() if b"\\NOSELECT" not in flags and b"\\NONEXISTENT" not in flags
            ]
        return list(wanted)

    async def run(self, only: list[str] | None = None) -> int:
        """Fetch every folder (or ``only`` these); the number of messages stored."""
        stored = 0
        for name in only or await self.folders():
            try:
                stored += await self.folder(name)
            except FolderMissing as error:
                # Deleted remotely: the others are still fetched; the state says why.
                self.errors.append(str(error))
        return stored

    async def folder(self, name: str) -> int:
        identity = self.identity
        selected = await self.client.select(name, readonly=bool(identity.keep_on_server))
        async with self.db.read() as conn:
            state = await store.folder_state(conn, identity.id, name)
        rematch: Rematch | None = None
        if state is None:
            first_uid = 1 if identity.fetch_method == "all" else await self._first_new_uid(selected.uidnext)
            async with self.db.write() as conn:
                await store.set_folder_state(conn, identity.id, identity.user_id, name, selected.uidvalidity, first_uid)
        elif int(state.uidvalidity) != selected.uidvalidity:
            rematch = await self._rematch_index(name, selected.uidvalidity)
            first_uid = 1
        else:
            first_uid = int(state.first_uid)
        present = [u for u in await self.client.uid_search(b"UID %d:*" % first_uid) if u >= first_uid] if selected.exists else []
        async with self.db.read() as conn:
            done = await store.fetched_uids(conn, identity.id, name, selected.uidvalidity)
        todo = sorted(set(present) - done, reverse=True)  # newest first
        if todo:
            async with self.db.write() as conn:
                await store.add_history_total(conn, identity.id, len(todo))
        local = await self.delivery.local_folder(identity, name) if todo else "INBOX"
        try:
            stored = await self._fetch(name, selected.uidvalidity, todo, rematch, local)
        except Cancelled as cancelled:
            if cancelled.reason == "cancel":
                # The history is given up: from now on, only mail newer than this.
                async with self.db.write() as conn:
                    await store.set_folder_state(
                        conn, identity.id, identity.user_id, name, selected.uidvalidity, max(present, default=0) + 1
                    )
            raise
        if rematch is not None:
            async with self.db.write() as conn:
                await store.forget_positions(conn, identity.id, name, selected.uidvalidity)
                await store.set_folder_state(conn, identity.id, identity.user_id, name, selected.uidvalidity, 1)
        if not identity.keep_on_server:
            async with self.db.read() as conn:
                done = await store.fetched_uids(conn, identity.id, name, selected.uidvalidity)
            await self.client.delete_uids(sorted(done & set(present)))
        return stored

    async def _first_new_uid(self, uidnext: int | None) -> int:
        """from_now: the first UID of mail that arrived after the identity was made."""
        since = await self.client.uid_search(b"SINCE " + _since(self.identity.created_ms))
        later: list[int] = []

        async def seen(item: FetchItem) -> None:
            ms = _internal_ms(item.internal_date)
            if item.uid is not None and ms is not None and ms >= self.identity.created_ms:
                later.append(item.uid)

        if since:
            await self.client.uid_fetch(",".join(map(str, since[-1000:])), b"(UID INTERNALDATE)", seen)
        if later:
            return min(later)
        if uidnext is not None:
            return uidnext
        everything = await self.client.uid_search(b"ALL")
        return max(everything, default=0) + 1

    async def _rematch_index(self, name: str, uidvalidity: int) -> Rematch:
        async with self.db.read() as conn:
            rows = await store.old_positions(conn, self.identity.id, name, uidvalidity)
        index = Rematch()
        for row in rows:
            if row.message_id:
                index.by_message_id.setdefault(row.message_id, []).append(row)
            if row.content_hash:
                index.by_hash.setdefault(row.content_hash, []).append(row)
        log.info("remote identity %s: UIDVALIDITY of %r changed; recognising %d known messages", self.identity.id, name, len(rows))
        return index

    async def _fetch(self, name: str, uidvalidity: int, todo: list[int], rematch: Rematch | None, local: str = "INBOX") -> int:
        identity = self.identity
        stored = 0
        waiting: set[asyncio.Task[AppendResult | DomainError | None]] = set()
        slots = asyncio.Semaphore(IN_FLIGHT)
        failures: list[BaseException] = []

        def finished(task: asyncio.Task[Any]) -> None:
            nonlocal stored
            waiting.discard(task)
            slots.release()
            if task.cancelled():
                return
            error = task.exception()
            if error is not None:
                failures.append(error)
            elif isinstance(task.result(), AppendResult):
                stored += 1
            elif isinstance(task.result(), DomainError):
                failures.append(RemoteError(f"a message could not be stored: {task.result()}"))

        for start in range(0, len(todo), BATCH):
            await self.check()
            batch = todo[start : start + BATCH]
            wanted = set(batch)
            passed: list[tuple[Position, str | None, str | None, str | None]] = []

            async def item(fetched: FetchItem, wanted: set[int] = wanted, passed: list[Any] = passed) -> None:
                if fetched.uid is None or fetched.uid not in wanted:
                    return  # an unsolicited FETCH (flags changed), or one not asked for
                wanted.discard(fetched.uid)
                position = Position(name, uidvalidity, fetched.uid, "")
                if fetched.too_big is not None:
                    self.errors.append(f"a message of {fetched.too_big} bytes in {name!r} is larger than allowed; skipped")
                    passed.append((position, None, None, None))
                    return
                if fetched.body is None:
                    raise ProtocolError("the server sent no body for a message")
                data = fetched.body
                internal = _internal_ms(fetched.internal_date)
                if rematch is not None:
                    message_id, digest = message_id_of(data), content_hash(data)
                    known = rematch.take(message_id, digest)
                    if known is not None:
                        passed.append((position, message_id, digest, known.local_mid))
                        return
                    if identity.fetch_method != "all" and internal is not None and internal < identity.created_ms:
                        passed.append((position, message_id, digest, None))
                        return
                if failures:
                    raise failures[0]
                await slots.acquire()
                task = asyncio.ensure_future(self.delivery.deliver(identity, position, data, "IMAP", internal, local))
                waiting.add(task)
                task.add_done_callback(finished)

            try:
                await self.client.uid_fetch(uid_ranges(batch), b"(UID INTERNALDATE BODY.PEEK[])", item)
            finally:
                if waiting:
                    await asyncio.gather(*list(waiting), return_exceptions=True)
                await self.delivery.pass_over(identity, passed)
            if failures:
                raise failures[0]
        return stored
