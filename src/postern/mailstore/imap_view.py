"""The operations the IMAP door needs beyond the common ones of :class:`MailStore`:
a folder opened with its UID list, message metadata by UID, flag stores with
UNCHANGEDSINCE, COPY and MOVE answering with UID mappings, EXPUNGE of ``\\Deleted``
messages (all, or of a UID set), and what changed or vanished since a MODSEQ.

Every write publishes the same events as the other doors' writes (``MessagesChanged``,
``MessageAdded``, ``MessagesExpunged``), after its transaction commits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from sqlalchemy.engine import Row

from postern.errors import NotFound, OverQuota
from postern.events import Event, MessageAdded, MessagesChanged
from postern.mailstore.folders import normalise_path
from postern.mailstore.service import FLAG_COLUMNS, MailStore
from postern.storage import folders as folder_store
from postern.storage import imap as imap_store
from postern.storage import messages as message_store
from postern.storage import users as user_store
from postern.storage.blobs import BlobNotFound, LocalBlobStore
from postern.storage.ids import is_id, new_id, now_ms
from postern.storage.messages import UidRanges

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
_COLUMN_OF = {flag: FLAG_COLUMNS[flag] for flag in SYSTEM_FLAGS}
_CANONICAL = {flag.lower(): flag for flag in SYSTEM_FLAGS}


@dataclass(frozen=True, slots=True)
class ImapMessage:
    """One message's metadata, as IMAP shows it."""

    uid: int
    modseq: int
    size: int
    internal_ms: int
    flags: tuple[str, ...]
    blob_key: str
    prefix: bytes

    @property
    def internaldate(self) -> datetime:
        return datetime.fromtimestamp(self.internal_ms / 1000, UTC)


@dataclass(frozen=True, slots=True)
class OpenedFolder:
    folder: Row
    uids: list[int]
    first_unseen_uid: int | None


@dataclass(frozen=True, slots=True)
class StoreOutcome:
    """``modseq`` of the change (None when nothing changed); ``messages`` every matched
    message as it is now; ``modified`` the UIDs UNCHANGEDSINCE kept from changing."""

    modseq: int | None
    messages: list[ImapMessage]
    modified: list[int]


def _flags_of(row: Any) -> tuple[str, ...]:
    # Hot (every FETCH and SEARCH row): the columns read directly, in SYSTEM_FLAGS order.
    system: tuple[str, ...] = ()
    if row.answered:
        system += ("\\Answered",)
    if row.flagged:
        system += ("\\Flagged",)
    if row.deleted:
        system += ("\\Deleted",)
    if row.seen:
        system += ("\\Seen",)
    if row.draft:
        system += ("\\Draft",)
    keywords = row.keywords
    if keywords and keywords != "[]":
        return system + tuple(orjson.loads(keywords))
    return system


def to_message(row: Any) -> ImapMessage:
    return ImapMessage(
        int(row.uid), int(row.modseq), int(row.size), int(row.internal_ms), _flags_of(row), row.blob_key, bytes(row.prefix or b"")
    )


def canonical_flag(flag: str) -> str | None:
    """A system flag spelled canonically, a keyword as given; None for flags that
    cannot be stored (``\\Recent``, unknown ``\\`` flags)."""
    if flag.startswith("\\"):
        return _CANONICAL.get(flag.lower())
    return flag or None


class ImapView:
    """IMAP's operations over one :class:`MailStore`."""

    def __init__(self, mailstore: MailStore):
        self.store = mailstore
        self.db = mailstore.db

    # Folders -------------------------------------------------------------------------

    async def folder_at(self, user_id: str, path: str) -> Row:
        return await self.store.folder_by_path(user_id, path)

    async def open(self, user_id: str, path: str) -> OpenedFolder:
        """A folder with its UIDs, read in one transaction."""
        async with self.db.read() as conn:
            folder = await folder_store.get_folder_by_path(conn, user_id, normalise_path(path)) if is_id(user_id) else None
            if folder is None:
                raise NotFound("This mailbox does not exist", code="NoSuchMailbox")
            uids = await imap_store.folder_uids(conn, folder.id)
            unseen = await imap_store.first_unseen_uid(conn, folder.id)
        return OpenedFolder(folder, uids, unseen)

    async def folder_keywords(self, folder_id: str) -> list[str]:
        async with self.db.read() as conn:
            lists = await imap_store.folder_keywords(conn, folder_id)
        seen: dict[str, None] = {}
        for item in lists:
            for keyword in orjson.loads(item):
                seen.setdefault(keyword, None)
        return list(seen)

    async def count_deleted(self, folder_id: str) -> int:
        async with self.db.read() as conn:
            return await imap_store.count_deleted(conn, folder_id)

    async def create_folder(self, user_id: str, path: str, special_use: str | None = None) -> str:
        folder_id = await self.store.create_folder(user_id, path)
        if special_use:
            async with self.db.write() as conn:
                await imap_store.set_special_use(conn, folder_id, special_use)
        return folder_id

    # Reading -------------------------------------------------------------------------

    async def uids_after(self, folder_id: str, uid: int) -> list[int]:
        async with self.db.read() as conn:
            return await imap_store.folder_uids(conn, folder_id, uid)

    async def messages(self, folder_id: str, uids: UidRanges) -> list[ImapMessage]:
        async with self.db.read() as conn:
            return [to_message(r) for r in await imap_store.message_meta(conn, folder_id, uids)]

    async def messages_by_uid(self, folder_id: str, uids: Sequence[int]) -> list[ImapMessage]:
        async with self.db.read() as conn:
            return [to_message(r) for r in await imap_store.message_meta_by_uid(conn, folder_id, uids)]

    async def changed_since(self, folder_id: str, modseq: int) -> list[ImapMessage]:
        async with self.db.read() as conn:
            return [to_message(r) for r in await imap_store.changed_since(conn, folder_id, modseq)]

    async def vanished_since(self, folder_id: str, modseq: int) -> list[int]:
        async with self.db.read() as conn:
            return await imap_store.tombstones_since(conn, folder_id, modseq)

    async def raw(self, message: ImapMessage) -> bytes:
        return message.prefix + await self.store.blobs.get(message.blob_key)

    async def raw_many(self, messages: Sequence[ImapMessage]) -> list[bytes]:
        """The bytes of several messages, in order. From a local store they are read
        in one worker-thread hop rather than one per message (FETCH and SEARCH read a
        chunk of small messages at a time); callers bound the total size."""
        blobs = self.store.blobs
        if len(messages) < 2 or not isinstance(blobs, LocalBlobStore):
            return [await self.raw(m) for m in messages]
        paths = [blobs.path_for(m.blob_key) for m in messages]

        def read_all() -> list[bytes | None]:
            out: list[bytes | None] = []
            for path in paths:
                try:
                    with open(path, "rb") as fh:
                        out.append(fh.read())
                except (FileNotFoundError, NotADirectoryError):
                    out.append(None)
            return out

        contents = await asyncio.to_thread(read_all)
        result = []
        for message, data in zip(messages, contents, strict=True):
            if data is None:
                raise BlobNotFound(message.blob_key)
            result.append(message.prefix + data)
        return result

    # Changing ------------------------------------------------------------------------

    async def store_flags(
        self,
        user_id: str,
        folder_id: str,
        uids: UidRanges,
        mode: Literal["replace", "add", "remove"],
        flags: Sequence[str],
        unchanged_since: int | None = None,
    ) -> StoreOutcome:
        wanted: dict[str, None] = {}
        for flag in flags:
            canonical = canonical_flag(flag)
            if canonical is not None:
                wanted.setdefault(canonical, None)
        system = {f for f in wanted if f.startswith("\\")}
        keywords = [f for f in wanted if not f.startswith("\\")]

        async def store(conn: Any) -> tuple[int | None, dict[int, ImapMessage], list[int], list[Event]]:
            events: list[Event] = []
            await self.store._folder(conn, user_id, folder_id)
            await user_store.lock_user(conn, user_id)
            rows = await imap_store.message_meta(conn, folder_id, uids)
            updates: list[dict[str, Any]] = []
            modified: list[int] = []
            result: dict[int, ImapMessage] = {}
            unseen_delta = 0
            for row in rows:
                current = to_message(row)
                result[current.uid] = current
                if unchanged_since is not None and current.modseq > unchanged_since:
                    modified.append(current.uid)
                    continue
                new_system, new_keywords = _apply(current.flags, mode, system, keywords)
                old_system = {f for f in current.flags if f.startswith("\\")}
                old_keywords = [f for f in current.flags if not f.startswith("\\")]
                if new_system == old_system and new_keywords == old_keywords:
                    continue
                values = {_COLUMN_OF[f]: f in new_system for f in SYSTEM_FLAGS}
                updates.append({"uid": current.uid, **values, "keywords": orjson.dumps(new_keywords).decode()})
                if ("\\Seen" in new_system) != ("\\Seen" in old_system):
                    unseen_delta += -1 if "\\Seen" in new_system else 1
                result[current.uid] = ImapMessage(
                    current.uid,
                    0,
                    current.size,
                    current.internal_ms,
                    tuple(f for f in SYSTEM_FLAGS if f in new_system) + tuple(new_keywords),
                    current.blob_key,
                    current.prefix,
                )
            modseq = None
            if updates:
                modseq = await folder_store.next_modseq(conn, folder_id)
                await imap_store.update_flags_many(conn, folder_id, updates, modseq)
                if unseen_delta:
                    await folder_store.adjust_counters(conn, folder_id, unseen=unseen_delta)
                for item in updates:
                    m = result[item["uid"]]
                    result[item["uid"]] = ImapMessage(m.uid, modseq, m.size, m.internal_ms, m.flags, m.blob_key, m.prefix)
                events.append(MessagesChanged(user_id, folder_id, tuple(sorted(u["uid"] for u in updates)), modseq))
            return modseq, result, modified, events

        # Shared with concurrent sessions' flag changes: one commit for a burst.
        modseq, result, modified, events = await self.db.write_shared(store)
        self.store.bus.publish(events)
        return StoreOutcome(modseq, [result[u] for u in sorted(result)], modified)

    async def copy(self, user_id: str, folder_id: str, uids: Sequence[int], target_id: str) -> tuple[int, list[tuple[int, int]]]:
        """Copy messages; (the target's UIDVALIDITY, (source UID, new UID) pairs)."""
        events: list[Event] = []
        async with self.db.write() as conn:
            await self.store._folder(conn, user_id, folder_id)
            target = await self.store._folder(conn, user_id, target_id)
            usage = await user_store.lock_usage(conn, [user_id])
            rows = await message_store.select_messages(conn, folder_id, [(u, u) for u in sorted(set(uids))]) if uids else []
            if not rows:
                return int(target.uidvalidity), []
            size = sum(int(r.size) for r in rows)
            used, quota = usage.get(user_id, (0, 0))
            if used + size > quota:
                raise OverQuota("Mailbox is over quota")
            first_uid, modseq = await folder_store.allocate(conn, target.id, len(rows))
            created = now_ms()
            copies: list[dict[str, Any]] = []
            pairs: list[tuple[int, int]] = []
            refs: dict[str, tuple[int, int]] = {}
            for offset, row in enumerate(rows):
                values = dict(row._mapping)
                new_uid = first_uid + offset
                values.update(folder_id=target.id, uid=new_uid, modseq=modseq, mid=new_id())
                values["expires_ms"] = created + target.retention_ms if target.retention_ms else None
                copies.append(values)
                pairs.append((int(row.uid), new_uid))
                blob_size, count = refs.get(row.blob_key, (0, 0))
                refs[row.blob_key] = (blob_size, count + 1)
            # The source messages hold references to these blobs: none can be collected.
            await message_store.add_blob_refs(conn, refs, created)
            await message_store.insert_messages(conn, copies)
            await user_store.add_storage_used(conn, user_id, size)
            unseen = sum(1 for r in rows if not r.seen)
            await folder_store.adjust_counters(conn, target.id, messages=len(rows), unseen=unseen, size=size)
            events.extend(MessageAdded(user_id, target.id, new, modseq) for _, new in pairs)
        self.store.bus.publish(events)
        return int(target.uidvalidity), pairs

    async def move(self, user_id: str, folder_id: str, uids: Sequence[int], target_id: str) -> tuple[int, list[tuple[int, int]]]:
        """Move messages; (the target's UIDVALIDITY, (source UID, new UID) pairs)."""
        target = await self.store.get_folder(user_id, target_id)
        if not uids:
            return int(target.uidvalidity), []
        try:
            _, pairs = await self.store.update_messages(
                user_id, folder_id, [(u, u) for u in sorted(set(uids))], flags={}, move_to=target_id
            )
        except NotFound as error:
            if error.code == "MessageNotFound":
                return int(target.uidvalidity), []
            raise
        return int(target.uidvalidity), list(pairs or [])

    async def expunge_deleted(self, user_id: str, folder_id: str, uids: Sequence[int] | None = None) -> list[int]:
        """Remove the folder's ``\\Deleted`` messages (those among ``uids`` when given);
        returns the UIDs removed."""
        events: list[Event] = []
        async with self.db.write() as conn:
            await self.store._folder(conn, user_id, folder_id)
            candidates = await imap_store.deleted_uids(conn, folder_id)
            if uids is not None:
                allowed = set(uids)
                candidates = [u for u in candidates if u in allowed]
            if not candidates:
                return []
            deleted, event = await self.store._expunge(conn, user_id, folder_id, candidates)
            if event is not None:
                events.append(event)
        self.store.bus.publish(events)
        return sorted(int(r.uid) for r in deleted)

    async def quota(self, user_id: str) -> tuple[int, int]:
        """(storage used, quota) in bytes."""
        async with self.db.read() as conn:
            user = await user_store.get_user(conn, user_id) if is_id(user_id) else None
        if user is None:
            raise NotFound("This user does not exist", code="UserNotFound")
        return int(user.storage_used), int(user.quota_allowed)


def _apply(
    current: tuple[str, ...], mode: str, system: set[str], keywords: list[str]
) -> tuple[set[str], list[str]]:
    old_system = {f for f in current if f.startswith("\\")}
    old_keywords = [f for f in current if not f.startswith("\\")]
    if mode == "replace":
        return set(system), list(keywords)
    if mode == "add":
        known = {k.casefold() for k in old_keywords}
        return old_system | system, old_keywords + [k for k in keywords if k.casefold() not in known]
    removed = {k.casefold() for k in keywords}
    return old_system - system, [k for k in old_keywords if k.casefold() not in removed]
