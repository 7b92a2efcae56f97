"""The mailstore service: folders and messages, and (from :mod:`.appends`) the one append
path that the admin API, SMTP, LMTP and IMAP all deliver through."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    NotPermitted,
)
from postern.events import (
    Event,
    EventBus,
    FolderCreated,
    FolderDeleted,
    FolderRenamed,
    MessageAdded,
    MessagesChanged,
    MessagesExpunged,
)

# The append path and its words, named here too for the many callers that import them from here.
from postern.mailstore.appends import FLAG_COLUMNS, Appending, AppendRequest, AppendResult, StagedAppends, split_flags, summary_json  # noqa: F401
from postern.mailstore.folders import folder_row, is_protected, normalise_path, parents
from postern.storage import folders as folder_store
from postern.storage import imap as imap_store
from postern.storage import message_events as event_store
from postern.storage import messages as message_store
from postern.storage import users as user_store
from postern.storage.blobs import BlobStore
from postern.storage.database import Database
from postern.storage.hot_reads import FolderHead, HotReads
from postern.storage.ids import is_id, now_ms
from postern.storage.messages import UidRanges
from postern.storage.pagination import Cursor
from postern.storage.users import require_user

# "Leave it as it is" for update_folder's optional arguments.
UNSET: Any = object()


class MailStore(Appending):
    def __init__(self, db: Database, blobs: BlobStore, bus: EventBus, max_message_size: int):
        self.db = db
        self.blobs = blobs
        self.bus = bus
        self.max_message_size = max_message_size
        self.hot = HotReads(db)
        # False: the batch's statements through SQLAlchemy (``append_batch``), which
        # the tests compare with the drivers' own path.
        self.fast_batches = True

    # Lookups -------------------------------------------------------------------------

    async def _user(self, conn: AsyncConnection, user_id: str) -> Row:
        return await require_user(conn, user_id)

    async def _folder(self, conn: AsyncConnection, user_id: str, folder_id: str) -> Row:
        # One query on the common path: a folder row implies its user exists.
        folder = await folder_store.get_folder(conn, user_id, folder_id) if is_id(folder_id) and is_id(user_id) else None
        if folder is None:
            await self._user(conn, user_id)
            raise NotFound("This mailbox does not exist", code="NoSuchMailbox")
        return folder

    # Folders -------------------------------------------------------------------------

    async def advance_counters_after_unclean_stop(self) -> int:
        """Move every folder's next UID and MODSEQ on, past any that a transaction
        lost in a crash can have shown to a client; return by how much. For the start
        after an unclean stop, before any door is open (``postern.serve.run_marks``)."""
        async with self.db.write() as conn:
            return await folder_store.advance_counters(conn)

    async def list_folders(self, user_id: str) -> list[Row]:
        async with self.db.read() as conn:
            await self._user(conn, user_id)
            return await folder_store.list_folders(conn, user_id)

    async def get_folder(self, user_id: str, folder_id: str) -> Row:
        async with self.db.read() as conn:
            return await self._folder(conn, user_id, folder_id)

    async def _folder_at(self, conn: AsyncConnection, user_id: str, path: str) -> Row:
        folder = await folder_store.get_folder_by_path(conn, user_id, path) if is_id(user_id) else None
        if folder is None:
            await self._user(conn, user_id)
            raise NotFound("This mailbox does not exist", code="NoSuchMailbox")
        return folder

    async def folder_by_special_use(self, user_id: str, special_use: str) -> Row | None:
        async with self.db.read() as conn:
            return await folder_store.get_folder_by_special_use(conn, user_id, special_use)

    async def folder_by_path(self, user_id: str, path: str) -> Row:
        async with self.db.read() as conn:
            await self._user(conn, user_id)
            folder = await folder_store.get_folder_by_path(conn, user_id, normalise_path(path))
        if folder is None:
            raise NotFound("This mailbox does not exist", code="NoSuchMailbox")
        return folder

    async def create_folder(self, user_id: str, path: str, retention_ms: int | None = None) -> str:
        path = normalise_path(path)
        events: list[Event] = []
        try:
            async with self.db.write() as conn:
                user = await self._user(conn, user_id)
                wanted = [*parents(path), path]
                existing = await folder_store.existing_paths(conn, user_id, wanted)
                if path in existing:
                    raise Conflict("Mailbox already exists", code="ALREADYEXISTS", field="path")
                retention = retention_ms if retention_ms is not None else user.retention_ms
                rows = [folder_row(user_id, p, None, retention) for p in wanted if p not in existing]
                await folder_store.insert_folders(conn, rows)
        except IntegrityError:
            raise Conflict("Mailbox already exists", code="ALREADYEXISTS", field="path") from None
        events = [FolderCreated(user_id, r["id"], r["path"]) for r in rows]
        self.bus.publish(events)
        return rows[-1]["id"]

    async def update_folder(
        self, user_id: str, folder_id: str, *, path: str | None = None, retention_ms: Any = UNSET, subscribed: bool | None = None
    ) -> None:
        events: list[Event] = []
        try:
            async with self.db.write() as conn:
                folder = await self._folder(conn, user_id, folder_id)
                values: dict[str, Any] = {}
                if retention_ms is not UNSET:
                    values["retention_ms"] = retention_ms or None
                if subscribed is not None:
                    values["subscribed"] = subscribed
                await folder_store.update_folder(conn, folder_id, values)
                if path is not None:
                    events = await self._rename(conn, folder, normalise_path(path))
        except IntegrityError:
            raise Conflict("Mailbox already exists", code="ALREADYEXISTS", field="path") from None
        self.bus.publish(events)

    async def _rename(self, conn: AsyncConnection, folder: Row, new_path: str) -> list[Event]:
        old_path = folder.path
        if new_path == old_path:
            return []
        if old_path == "INBOX":
            raise NotPermitted("INBOX can not be renamed")
        if new_path == "INBOX" or new_path.startswith(old_path + "/"):
            raise InvalidInput("A mailbox can not be moved to INBOX or into itself", code="CANNOT", field="path")
        user_id = folder.user_id
        if await folder_store.get_folder_by_path(conn, user_id, new_path) is not None:
            raise Conflict("Mailbox already exists", code="ALREADYEXISTS", field="path")
        events: list[Event] = []
        # Children move with their parent, as IMAP RENAME requires.
        for row in sorted(await folder_store.subtree(conn, user_id, old_path), key=lambda r: r.path):
            renamed = new_path + row.path[len(old_path) :]
            await folder_store.set_path(conn, row.id, renamed)
            events.append(FolderRenamed(user_id, row.id, row.path, renamed))
        missing = [p for p in parents(new_path) if p not in await folder_store.existing_paths(conn, user_id, parents(new_path))]
        rows = [folder_row(user_id, p) for p in missing]
        await folder_store.insert_folders(conn, rows)
        events.extend(FolderCreated(user_id, r["id"], r["path"]) for r in rows)
        return events

    async def delete_folder(self, user_id: str, folder_id: str) -> None:
        async with self.db.write() as conn:
            folder = await self._folder(conn, user_id, folder_id)
            await user_store.lock_user(conn, user_id)
            if is_protected(folder.path, folder.special_use):
                raise NotPermitted("Special mailboxes can not be deleted")
            contents = await message_store.folder_message_keys(conn, folder_id)
            await message_store.release_blobs(conn, [r.blob_key for r in contents])
            await user_store.add_storage_used(conn, user_id, -sum(r.size for r in contents))
            await message_store.delete_folder_messages(conn, folder_id)
            await folder_store.delete_folder(conn, folder_id)
        self.bus.publish([FolderDeleted(user_id, folder_id, folder.path)])

    # Reading -------------------------------------------------------------------------

    async def list_messages(
        self, user_id: str, folder_id: str, *, descending: bool, limit: int, cursor: Cursor | None
    ) -> tuple[Row, list[Row]]:
        async with self.db.read() as conn:
            folder = await self._folder(conn, user_id, folder_id)
            rows = await message_store.list_messages(conn, folder_id, descending=descending, limit=limit, cursor=cursor)
        return folder, rows

    async def message_page(
        self, user_id: str, folder_id: str, *, descending: bool, limit: int, cursor: Cursor | None
    ) -> tuple[FolderHead, list[Any]] | None:
        """``list_messages`` in one statement, for the hot path; None when the folder is
        not the user's (``list_messages`` then says precisely what is missing)."""
        forward = cursor is None or cursor.direction == "next"
        head, rows = await self.hot.folder_page(
            user_id, folder_id, ascending=forward != descending, after_uid=cursor.key[0] if cursor else None, limit=limit + 1
        )
        return None if head is None else (head, rows)

    async def get_message(self, user_id: str, folder_id: str, uid: int) -> Row:
        async with self.db.read() as conn:
            await self._folder(conn, user_id, folder_id)
            row = await message_store.get_message(conn, folder_id, uid)
        if row is None:
            raise NotFound("This message does not exist", code="MessageNotFound")
        return row

    async def message_bytes(self, row: Row) -> bytes:
        return bytes(row.prefix) + await self.blobs.get(row.blob_key)

    async def message_stream(self, row: Row) -> AsyncIterator[bytes]:
        if row.prefix:
            yield bytes(row.prefix)
        async for chunk in self.blobs.stream(row.blob_key):
            yield chunk

    async def message_events(self, user_id: str, folder_id: str, uid: int) -> tuple[Row, list[Row]]:
        async with self.db.read() as conn:
            await self._folder(conn, user_id, folder_id)
            row = await message_store.get_message(conn, folder_id, uid)
            if row is None:
                raise NotFound("This message does not exist", code="MessageNotFound")
            return row, await event_store.events_of(conn, user_id, row.mid)

    # Changing ------------------------------------------------------------------------

    async def update_messages(
        self,
        user_id: str,
        folder_id: str,
        uids: UidRanges,
        *,
        flags: dict[str, bool],
        expires_ms: Any = UNSET,
        move_to: str | None = None,
    ) -> tuple[int, list[tuple[int, int]] | None]:
        """Set flags and expiry, then move if asked. Returns (how many matched, the
        (old UID, new UID) pairs of a move)."""
        events: list[Event] = []
        moved: list[tuple[int, int]] | None = None
        async with self.db.write() as conn:
            folder = await self._folder(conn, user_id, folder_id)
            await user_store.lock_user(conn, user_id)
            target = await self._folder(conn, user_id, move_to) if move_to else None
            matched = await message_store.select_messages(conn, folder_id, uids)
            if not matched:
                raise NotFound("No such message", code="MessageNotFound")
            if flags or expires_ms is not UNSET:
                modseq = await folder_store.next_modseq(conn, folder_id)
                changed: set[int] = set()
                if flags:
                    before = await message_store.set_flags(conn, folder_id, uids, flags, modseq)
                    changed.update(r.uid for r in before)
                    if "seen" in flags:
                        flipped = sum(1 for r in before if r.seen != flags["seen"])
                        await folder_store.adjust_counters(conn, folder_id, unseen=-flipped if flags["seen"] else flipped)
                if expires_ms is not UNSET:
                    await message_store.set_expiry(conn, folder_id, uids, expires_ms, modseq)
                    changed.update(r.uid for r in matched)
                if changed:
                    events.append(MessagesChanged(user_id, folder_id, tuple(sorted(changed)), modseq))
            if target is not None and target.id != folder.id:
                moved, move_events = await self._move(conn, folder, target, uids)
                events.extend(move_events)
        self.bus.publish(events)
        return len(matched), moved

    async def _move(self, conn: AsyncConnection, source: Row, target: Row, uids: UidRanges) -> tuple[list[tuple[int, int]], list[Event]]:
        rows = await message_store.select_messages(conn, source.id, uids)
        first_uid, modseq = await folder_store.allocate(conn, target.id, len(rows))
        pairs: list[tuple[int, int]] = []
        copies = []
        for offset, row in enumerate(rows):
            values = dict(row._mapping)
            new_uid = first_uid + offset
            values.update(folder_id=target.id, uid=new_uid, modseq=modseq)
            # The target's retention decides, as in WildDuck: a message restored from
            # Trash to a folder without retention no longer expires.
            values["expires_ms"] = now_ms() + target.retention_ms if target.retention_ms else None
            copies.append(values)
            pairs.append((row.uid, new_uid))
        await message_store.insert_messages(conn, copies)
        deleted = await message_store.delete_messages(conn, source.id, [r.uid for r in rows])
        size = sum(r.size for r in rows)
        unseen = sum(1 for r in rows if not r.seen)
        expunge_modseq = await folder_store.next_modseq(conn, source.id)
        await imap_store.add_tombstones(conn, source.user_id, source.id, [r.uid for r in deleted], expunge_modseq)
        await folder_store.adjust_counters(conn, source.id, messages=-len(deleted), unseen=-unseen, size=-size)
        await folder_store.adjust_counters(conn, target.id, messages=len(rows), unseen=unseen, size=size)
        user_id = source.user_id
        events: list[Event] = [MessagesExpunged(user_id, source.id, tuple(r.uid for r in rows), expunge_modseq)]
        events.extend(MessageAdded(user_id, target.id, new, modseq) for _, new in pairs)
        return pairs, events

    async def delete_messages(self, user_id: str, folder_id: str, uids: Sequence[int]) -> int:
        async with self.db.write() as conn:
            await self._folder(conn, user_id, folder_id)
            deleted, event = await self._expunge(conn, user_id, folder_id, uids)
        if event is None:
            raise NotFound("This message does not exist", code="MessageNotFound")
        self.bus.publish([event])
        return len(deleted)

    async def _expunge(self, conn: AsyncConnection, user_id: str, folder_id: str, uids: Sequence[int]) -> tuple[list[Row], Event | None]:
        """Delete messages; the event is the caller's to publish once committed."""
        await user_store.lock_user(conn, user_id)
        deleted = await message_store.delete_messages(conn, folder_id, uids)
        if not deleted:
            return deleted, None
        await message_store.release_blobs(conn, [r.blob_key for r in deleted])
        size = sum(r.size for r in deleted)
        await user_store.add_storage_used(conn, user_id, -size)
        modseq = await folder_store.next_modseq(conn, folder_id)
        await imap_store.add_tombstones(conn, user_id, folder_id, [r.uid for r in deleted], modseq)
        unseen = sum(1 for r in deleted if not r.seen)
        await folder_store.adjust_counters(conn, folder_id, messages=-len(deleted), unseen=-unseen, size=-size)
        return deleted, MessagesExpunged(user_id, folder_id, tuple(r.uid for r in deleted), modseq)

    # Garbage collection --------------------------------------------------------------

    async def collect_garbage(self, batch: int = 500) -> tuple[int, int]:
        """Remove expired messages and the blobs nothing refers to any more.

        Returns (messages expired, blobs removed)."""
        expired_count = 0
        async with self.db.read() as conn:
            expired = await message_store.expired_messages(conn, now_ms(), batch)
        by_folder: dict[tuple[str, str], list[int]] = {}
        for row in expired:
            by_folder.setdefault((row.user_id, row.folder_id), []).append(row.uid)
        for (user_id, folder_id), uids in by_folder.items():
            async with self.db.write() as conn:
                deleted, event = await self._expunge(conn, user_id, folder_id, uids)
            expired_count += len(deleted)
            if event is not None:
                self.bus.publish([event])
        async with self.db.read() as conn:
            candidates = await message_store.unreferenced_blobs(conn, batch)
        if not candidates:
            return expired_count, 0
        # Files are deleted inside the transaction that deletes their rows. An append
        # of the same bytes that races with this either revives the row first (and the
        # DELETE skips it) or waits for this commit, finds the row gone and writes the
        # file again (see _store): either way no stored message loses its bytes.
        async with self.db.write() as conn:
            forgotten = await message_store.forget_blobs(conn, candidates)
            for key in forgotten:
                await self.blobs.delete(key)
        return expired_count, len(forgotten)

    async def sweep_orphan_blobs(self) -> int:
        """Hand blobs that no row knows (left by a crash between the blob write and
        the commit) to the collector, by giving each an unreferenced row."""
        orphans: list[str] = []
        batch: list[str] = []
        async for key in self.blobs.keys():
            batch.append(key)
            if len(batch) >= 500:
                orphans.extend(await self._unknown(batch))
                batch = []
        orphans.extend(await self._unknown(batch))
        if orphans:
            async with self.db.write() as conn:
                await message_store.claim_orphans(conn, orphans, now_ms())
        return len(orphans)

    async def _unknown(self, keys: list[str]) -> list[str]:
        if not keys:
            return []
        async with self.db.read() as conn:
            known = await message_store.known_blobs(conn, keys)
        return [k for k in keys if k not in known]
