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
from typing import Any, Literal, NamedTuple

import orjson
from sqlalchemy.engine import Row

from postern.errors import NotFound, OverQuota
from postern.events import Event, MessageAdded, MessagesChanged
from postern.mailstore.folders import normalise_path, parents
from postern.mailstore.service import FLAG_COLUMNS, MailStore
from postern.storage import flag_writes as flag_store
from postern.storage import folders as folder_store
from postern.storage import imap as imap_store
from postern.storage import imap_state
from postern.storage import mailbox_state as mailbox_store
from postern.storage import messages as message_store
from postern.storage import users as user_store
from postern.storage.blobs import BlobNotFound, LocalBlobStore
from postern.storage.ids import is_id, new_id, now_ms
from postern.storage.mailbox_state import FolderRow
from postern.storage.messages import UidRanges
from postern.storage.shared_writes import WriteBatcher

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
_COLUMN_OF = {flag: FLAG_COLUMNS[flag] for flag in SYSTEM_FLAGS}
_CANONICAL = {flag.lower(): flag for flag in SYSTEM_FLAGS}


class ImapMessage(NamedTuple):
    """One message's metadata, as IMAP shows it.

    A named tuple rather than a dataclass: FETCH and SEARCH build one per row of
    every chunk, and a tuple is built in one C call (see :func:`to_messages`)."""

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
    folder: Row | FolderRow
    uids: list[int]
    first_unseen_uid: int | None
    keywords: list[str]


@dataclass(frozen=True, slots=True)
class StoreOutcome:
    """``modseq`` of the change (None when nothing changed); ``messages`` every matched
    message as it is now; ``modified`` the UIDs UNCHANGEDSINCE kept from changing."""

    modseq: int | None
    messages: list[ImapMessage]
    modified: list[int]


def _flags_of(row: Any) -> tuple[str, ...]:
    return _flags(row.answered, row.flagged, row.deleted, row.seen, row.draft, row.keywords)


#: Flag tuples by their column values: a folder's messages share a handful of flag
#: combinations, so each is built (and its keywords JSON parsed) once.
_FLAG_TUPLES: dict[tuple[Any, ...], tuple[str, ...]] = {}
_FLAG_TUPLES_MAX = 4096


def _flags(answered: Any, flagged: Any, deleted: Any, seen: Any, draft: Any, keywords: str | None) -> tuple[str, ...]:
    key = (answered, flagged, deleted, seen, draft, keywords)
    found = _FLAG_TUPLES.get(key)
    if found is not None:
        return found
    system: tuple[str, ...] = ()  # in SYSTEM_FLAGS order
    if answered:
        system += ("\\Answered",)
    if flagged:
        system += ("\\Flagged",)
    if deleted:
        system += ("\\Deleted",)
    if seen:
        system += ("\\Seen",)
    if draft:
        system += ("\\Draft",)
    if keywords and keywords != "[]":
        system += tuple(orjson.loads(keywords))
    if len(_FLAG_TUPLES) >= _FLAG_TUPLES_MAX:
        _FLAG_TUPLES.clear()
    _FLAG_TUPLES[key] = system
    return system


def _as_prefix(value: Any) -> bytes:
    return value if type(value) is bytes else bytes(value or b"")


def to_message(row: Any) -> ImapMessage:
    return ImapMessage(
        int(row.uid), int(row.modseq), int(row.size), int(row.internal_ms), _flags_of(row), row.blob_key, _as_prefix(row.prefix)
    )


#: The columns of imap_store's metadata rows, in order: rows of this shape are unpacked
#: as tuples (attribute access on a Row costs more than the rest of the conversion).
_META_FIELDS = ("uid", "modseq", "size", "internal_ms", "seen", "flagged", "draft", "deleted", "answered", "keywords", "blob_key", "prefix")
_new_message = tuple.__new__


def to_messages(rows: Sequence[Any]) -> list[ImapMessage]:
    """:func:`to_message` of each row, cheaply for rows of the metadata columns."""
    if not rows or getattr(rows[0], "_fields", None) != _META_FIELDS:
        return [to_message(r) for r in rows]
    return meta_tuples_to_messages(rows)


def meta_tuples_to_messages(rows: Sequence[Any]) -> list[ImapMessage]:
    """:func:`to_message` of rows that unpack as the metadata columns, in their order
    (``_META_FIELDS``), whatever their type."""
    flags_get = _FLAG_TUPLES.get
    out: list[ImapMessage] = []
    append = out.append
    for uid, modseq, size, internal_ms, seen, flagged, draft, deleted, answered, keywords, blob_key, prefix in rows:
        flags = flags_get((answered, flagged, deleted, seen, draft, keywords))
        if flags is None:
            flags = _flags(answered, flagged, deleted, seen, draft, keywords)
        if type(prefix) is not bytes:
            prefix = bytes(prefix or b"")
        # The columns are BigInteger: ints from both databases' drivers.
        append(_new_message(ImapMessage, (uid, modseq, size, internal_ms, flags, blob_key, prefix)))
    return out


def canonical_flag(flag: str) -> str | None:
    """A system flag spelled canonically, a keyword as given; None for flags that
    cannot be stored (``\\Recent``, unknown ``\\`` flags)."""
    if flag.startswith("\\"):
        return _CANONICAL.get(flag.lower())
    return flag or None


class _FlagWriter(WriteBatcher[flag_store.FlagStore]):
    """The STOREs of concurrent sessions, in one transaction and one commit (SQLite),
    in a few statements each (``flag_writes``) on the driver's own connection. Unlike
    ``Database.write_shared``, no SAVEPOINT per STORE: a STORE whose folder is gone
    writes nothing, and any error fails the whole batch, whose callers all hear it."""

    sqlite_batches = True

    def _write_batch_sqlite(self, conn: Any, items: Sequence[flag_store.FlagStore]) -> list[Any]:
        return flag_store.store_flags_sqlite(conn, items)  # type: ignore[no-any-return]

    async def _write_batch(self, conn: Any, items: Sequence[flag_store.FlagStore]) -> list[Any]:
        return await flag_store.store_flags(conn, items)


class ImapView:
    """IMAP's operations over one :class:`MailStore`."""

    def __init__(self, mailstore: MailStore):
        self.store = mailstore
        self.db = mailstore.db
        self._flag_writer = _FlagWriter(self.db)

    # Folders -------------------------------------------------------------------------

    async def folder_at(self, user_id: str, path: str) -> Row | FolderRow:
        """The user's folder at ``path``, in one quick read (APPEND's, for every message)."""
        folder = await mailbox_store.folder_at(self.db, user_id, normalise_path(path)) if is_id(user_id) else None
        if folder is None:
            raise NotFound("This mailbox does not exist", code="NoSuchMailbox")
        return folder

    async def open(self, user_id: str, path: str) -> OpenedFolder:
        """A folder with its UIDs, the first unseen one and the keywords in use, read
        in one snapshot."""
        state = await mailbox_store.mailbox_state(self.db, user_id, normalise_path(path)) if is_id(user_id) else None
        if state is None:
            raise NotFound("This mailbox does not exist", code="NoSuchMailbox")
        return OpenedFolder(state.folder, state.uids, state.first_unseen_uid, state.keywords)

    async def count_deleted(self, folder_id: str) -> int:
        async with self.db.read() as conn:
            return await imap_store.count_deleted(conn, folder_id)

    async def create_folder(self, user_id: str, path: str, special_use: str | None = None) -> str:
        """CREATE: the folder (and any missing parents), not subscribed (RFC 3501
        §6.3.3) unless its name was subscribed before it existed."""
        path = normalise_path(path)
        wanted = [*parents(path), path]
        async with self.db.read() as conn:
            before = await folder_store.existing_paths(conn, user_id, wanted) if is_id(user_id) else set()
        folder_id = await self.store.create_folder(user_id, path)
        created = [p for p in wanted if p not in before]
        async with self.db.write() as conn:
            if special_use:
                await imap_store.set_special_use(conn, folder_id, special_use)
            orphans = set(await imap_state.orphan_subscriptions(conn, user_id))
            await imap_state.set_subscribed(conn, user_id, [p for p in created if p not in orphans], False)
            for p in created:
                if p in orphans:
                    await imap_state.remove_orphan_subscription(conn, user_id, p)
        return folder_id

    async def delete_folder(self, user_id: str, folder_id: str) -> None:
        """DELETE: the folder goes, its subscription stays (RFC 3501 §6.3.4)."""
        folder = await self.store.get_folder(user_id, folder_id)
        await self.store.delete_folder(user_id, folder_id)
        if folder.subscribed:
            async with self.db.write() as conn:
                await imap_state.add_orphan_subscription(conn, user_id, folder.path)

    # Reading -------------------------------------------------------------------------

    async def uids_after(self, folder_id: str, uid: int) -> list[int]:
        return await mailbox_store.uids_after(self.db, folder_id, uid)

    async def messages(self, folder_id: str, uids: UidRanges) -> list[ImapMessage]:
        async with self.db.read() as conn:
            return to_messages(await imap_store.message_meta(conn, folder_id, uids))

    async def messages_by_uid(self, folder_id: str, uids: Sequence[int]) -> list[ImapMessage]:
        async with self.db.read() as conn:
            return to_messages(await imap_store.message_meta_by_uid(conn, folder_id, uids))

    async def changed_since(self, folder_id: str, modseq: int) -> list[ImapMessage]:
        # Read after every command that sees the MODSEQ move: a quick read, which on
        # SQLite costs a tenth of a transaction through the engine.
        return meta_tuples_to_messages(await imap_state.changed_since(self.db, folder_id, modseq))

    async def vanished_since(self, folder_id: str, modseq: int) -> list[int]:
        return await imap_state.vanished_since(self.db, folder_id, modseq)

    async def raw(self, message: ImapMessage) -> bytes:
        return message.prefix + await self.store.blobs.get(message.blob_key)

    async def raw_many(self, messages: Sequence[ImapMessage]) -> list[bytes]:
        """The bytes of several messages, in order. From a local store they are read
        in one worker-thread hop rather than one per message (FETCH and SEARCH read a
        chunk of small messages at a time); callers bound the total size."""
        return await self._read_many(messages, None)

    async def heads_many(self, messages: Sequence[ImapMessage], limit: int) -> list[bytes]:
        """The first bytes of several messages, in order: each one's prefix and the
        first ``limit`` bytes of its blob (all of it when shorter; all of it, too, from
        a store that cannot read part of a blob). For reading headers without
        reading large bodies; a header can be longer than ``limit``."""
        return await self._read_many(messages, limit)

    async def _read_many(self, messages: Sequence[ImapMessage], limit: int | None) -> list[bytes]:
        blobs = self.store.blobs
        if not isinstance(blobs, LocalBlobStore) or (len(messages) < 2 and limit is None):
            return [await self.raw(m) for m in messages]
        keys = [m.blob_key for m in messages]
        contents = await asyncio.to_thread(blobs.read_many, keys, limit)
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

        result: dict[int, ImapMessage] = {}
        modified: list[int] = []
        updated: list[int] = []

        def plan(rows: list[Any]) -> tuple[list[dict[str, Any]], int]:
            # Runs inside the write transaction (on SQLite in the driver's thread): no I/O.
            result.clear()
            modified.clear()
            updated.clear()
            updates: list[dict[str, Any]] = []
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
                updated.append(current.uid)
                if ("\\Seen" in new_system) != ("\\Seen" in old_system):
                    unseen_delta += -1 if "\\Seen" in new_system else 1
                result[current.uid] = current._replace(flags=tuple(f for f in SYSTEM_FLAGS if f in new_system) + tuple(new_keywords))
            return updates, unseen_delta

        request = flag_store.FlagStore(user_id, folder_id, uids, plan)
        if self.db.is_sqlite:
            # Shared with concurrent sessions' flag changes: one commit for a burst.
            stored = await self._flag_writer.submit(request)
        else:
            async with self.db.write() as conn:
                stored = (await flag_store.store_flags(conn, [request]))[0]
        if not stored.found:
            await self.store.get_folder(user_id, folder_id)  # NotFound, for the user or the folder
            raise NotFound("This mailbox does not exist", code="NoSuchMailbox")
        modseq = stored.modseq
        if modseq is not None:
            for uid in updated:
                result[uid] = result[uid]._replace(modseq=modseq)
            self.store.bus.publish([MessagesChanged(user_id, folder_id, tuple(sorted(updated)), modseq)])
        return StoreOutcome(modseq, [result[u] for u in sorted(result)], modified)

    async def copy(self, user_id: str, folder_id: str, uids: Sequence[int], target_id: str) -> tuple[int, list[tuple[int, int]]]:
        """Copy messages; (the target's UIDVALIDITY, (source UID, new UID) pairs)."""
        events: list[Event] = []
        async with self.db.write() as conn:
            uidvalidity, pairs = await self._copy(conn, user_id, folder_id, uids, target_id, events)
        self.store.bus.publish(events)
        return uidvalidity, pairs

    async def _copy(
        self, conn: Any, user_id: str, folder_id: str, uids: Sequence[int], target_id: str, events: list[Event]
    ) -> tuple[int, list[tuple[int, int]]]:
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
        return int(target.uidvalidity), pairs

    async def move_within(self, user_id: str, folder_id: str, uids: Sequence[int]) -> tuple[int, list[tuple[int, int]]]:
        """MOVE into the folder itself (RFC 6851 allows it): each message gets a new UID,
        the old ones are expunged, in one transaction."""
        events: list[Event] = []
        async with self.db.write() as conn:
            uidvalidity, pairs = await self._copy(conn, user_id, folder_id, uids, folder_id, events)
            if pairs:
                _, event = await self.store._expunge(conn, user_id, folder_id, [old for old, _ in pairs])
                if event is not None:
                    events.append(event)
        self.store.bus.publish(events)
        return uidvalidity, pairs

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
        # Most EXPUNGEs find nothing to remove: they are answered from a read, without
        # waiting for the writers' turn (a message marked \Deleted after this read
        # was marked after this EXPUNGE).
        found = await mailbox_store.deleted_uids(self.db, user_id, folder_id) if is_id(folder_id) and is_id(user_id) else None
        if found is not None and not (set(found) & set(uids) if uids is not None else found):
            return []
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

    # Shared session state ---------------------------------------------------------

    async def folder_state(self, folder_id: str) -> tuple[int, int] | None:
        """(UIDNEXT, HIGHESTMODSEQ) as committed now; None when the folder is gone."""
        return await imap_state.folder_state(self.db, folder_id)

    async def claim_recent(self, folder_id: str, uids: Sequence[int]) -> set[int]:
        """The UIDs among ``uids`` no read-write session claimed before: they are now
        this caller's \\Recent, and no other session's, in any process."""
        if not uids:
            return set()
        up_to = max(uids)
        if await imap_state.claimed_uid(self.db, folder_id) >= up_to:
            return set()  # the common case, read without a write
        # Every session that sees a new message claims it: a small write that shares
        # one commit with the concurrent ones (``write_shared``).
        before = await self.db.write_shared(lambda conn: imap_state.claim_recent(conn, folder_id, up_to))
        return {u for u in uids if before < u <= up_to}

    async def unclaimed_recent(self, folder_id: str, uids: Sequence[int]) -> set[int]:
        """The UIDs among ``uids`` that no session has claimed as \\Recent (EXAMINE)."""
        claimed = await imap_state.claimed_uid(self.db, folder_id)
        return {u for u in uids if u > claimed}

    async def count_recent(self, folder_id: str) -> int:
        async with self.db.read() as conn:
            return await imap_state.count_recent(conn, folder_id)

    async def orphan_subscriptions(self, user_id: str) -> list[str]:
        """Subscribed names that are no folder now."""
        async with self.db.read() as conn:
            return await imap_state.orphan_subscriptions(conn, user_id)

    async def subscribe(self, user_id: str, path: str, subscribed: bool) -> None:
        """SUBSCRIBE / UNSUBSCRIBE a name: a folder's flag, or for a name that is no
        folder, a row of its own (RFC 3501 §6.3.6 lets any name be subscribed)."""
        path = normalise_path(path)
        async with self.db.write() as conn:
            found = await folder_store.existing_paths(conn, user_id, [path])
            if found:
                await imap_state.set_subscribed(conn, user_id, [path], subscribed)
                await imap_state.remove_orphan_subscription(conn, user_id, path)
            elif subscribed:
                await imap_state.add_orphan_subscription(conn, user_id, path)
            else:
                await imap_state.remove_orphan_subscription(conn, user_id, path)

    async def quota(self, user_id: str) -> tuple[int, int]:
        """(storage used, quota) in bytes."""
        async with self.db.read() as conn:
            user = await user_store.get_user(conn, user_id) if is_id(user_id) else None
        if user is None:
            raise NotFound("This user does not exist", code="UserNotFound")
        return int(user.storage_used), int(user.quota_allowed)


def _apply(current: tuple[str, ...], mode: str, system: set[str], keywords: list[str]) -> tuple[set[str], list[str]]:
    old_system = {f for f in current if f.startswith("\\")}
    old_keywords = [f for f in current if not f.startswith("\\")]
    if mode == "replace":
        return set(system), list(keywords)
    if mode == "add":
        known = {k.casefold() for k in old_keywords}
        return old_system | system, old_keywords + [k for k in keywords if k.casefold() not in known]
    removed = {k.casefold() for k in keywords}
    return old_system - system, [k for k in old_keywords if k.casefold() not in removed]
