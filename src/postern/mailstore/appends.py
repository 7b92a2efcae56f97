"""Appending: the one path that the admin API, SMTP, LMTP and IMAP all deliver
through. Requests are staged (parsed and summarised, blobs written) outside the
database, then committed in batches (``GroupCommitter``): folder, UID, MODSEQ, quota,
thread and summary in one transaction. ``MailStore`` takes these methods from
:class:`Appending`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from postern import mime
from postern.errors import (
    DomainError,
    NotFound,
    OverQuota,
    TooLarge,
)
from postern.events import (
    Event,
    EventBus,
    MessageAdded,
)
from postern.storage.append_batch import AppendRows, append_rows
from postern.storage.blobs import BlobStore
from postern.storage.database import Database
from postern.storage.ids import is_id, new_id, now_ms

FLAG_COLUMNS = {"\\Seen": "seen", "\\Flagged": "flagged", "\\Draft": "draft", "\\Deleted": "deleted", "\\Answered": "answered"}
# A reply joins the thread of an earlier message with the same subject only if that
# thread saw mail recently; old threads with a common subject stay apart.
THREAD_SUBJECT_WINDOW_MS = 30 * 24 * 3600 * 1000
# Summaries of messages larger than this are parsed in a worker thread.
INLINE_PARSE_LIMIT = 256 * 1024


@dataclass(slots=True)
class AppendRequest:
    user_id: str
    # The folder, by id; or None to deliver into the folder at ``folder_path``.
    folder_id: str | None
    raw: bytes
    flags: Sequence[str] = ()
    internal_ms: int | None = None
    # Header lines for this copy alone (e.g. Delivered-To), stored beside the shared
    # blob: the message's bytes are prefix + raw.
    prefix: bytes = b""
    folder_path: str = "INBOX"
    # The STORE event of the message's timeline (source, origin, transtype, ...).
    event: dict[str, Any] | None = None
    # Store even if this takes the user past the quota. For SMTP with several
    # recipients, where the quota was checked at RCPT and one reply covers all copies:
    # refusing one copy at DATA would mean losing it or duplicating the others.
    quota_grace: bool = False
    # When the folder ``folder_id`` no longer exists, deliver into ``folder_path``
    # instead (a filter's folder deleted meanwhile) rather than refuse the message.
    fallback_to_path: bool = False
    # Rows that go with this copy (a filter's forwards, an autoreply), written in the
    # same transaction once the copy is stored: ``along(conn, result)``.
    along: Any = None
    # The summary of ``raw`` when the caller has it already (the filters needed it).
    summary: mime.MessageSummary | None = None


@dataclass(frozen=True, slots=True)
class AppendResult:
    user_id: str
    folder_id: str
    uid: int
    modseq: int
    size: int
    blob_key: str
    uidvalidity: int
    mid: str


@dataclass(slots=True)
class _Prepared:
    request: AppendRequest
    summary: mime.MessageSummary
    key: str = ""
    # The message row's columns that depend on the message alone (flags, summary),
    # made before the batch takes the write lock.
    columns: dict[str, Any] = field(default_factory=dict)


def _message_columns(request: AppendRequest, summary: mime.MessageSummary) -> dict[str, Any]:
    values, keywords = split_flags(request.flags)
    sender = summary.from_
    return {
        **values,
        "keywords": orjson.dumps(keywords).decode(),
        "from_name": sender.name if sender else "",
        "from_address": sender.address if sender else "",
        "subject": summary.subject,
        "message_id": summary.message_id,
        "date_ms": int(summary.date.timestamp() * 1000) if summary.date else None,
        "intro": summary.intro,
        "has_attachments": bool(summary.attachments),
        "summary": summary_json(summary).decode(),
        "prefix": request.prefix,
    }


@dataclass(slots=True)
class StagedAppends:
    """Appends whose blobs are written and synced (``MailStore.stage``), ready to be
    committed, alone or with others (``MailStore.commit``)."""

    results: list[AppendResult | DomainError | None]  # refused already (too large), by index
    prepared: list[tuple[int, _Prepared]]


def split_flags(flags: Sequence[str]) -> tuple[dict[str, bool], list[str]]:
    """System flags as column values, and the remaining keywords (deduplicated)."""
    values = {column: False for column in FLAG_COLUMNS.values()}
    keywords: dict[str, None] = {}
    for flag in flags:
        # "\\SEEN" and "\\seen" are "\\Seen": capitalise the name after the backslash.
        column = FLAG_COLUMNS.get("\\" + flag[1:].capitalize() if flag.startswith("\\") else flag)
        if column:
            values[column] = True
        elif flag and not flag.startswith("\\"):
            keywords[flag] = None
    return values, list(keywords)


def _address_json(info: mime.AddressInfo | None) -> dict[str, str] | None:
    return {"name": info.name, "address": info.address} if info else None


def summary_json(summary: mime.MessageSummary) -> bytes:
    return orjson.dumps(
        {
            "to": [_address_json(a) for a in summary.to],
            "cc": [_address_json(a) for a in summary.cc],
            "bcc": [_address_json(a) for a in summary.bcc],
            "replyTo": [_address_json(a) for a in summary.reply_to],
            "sender": _address_json(summary.sender),
            "inReplyTo": list(summary.in_reply_to),
            "references": list(summary.references),
            "attachments": [
                {
                    "id": a.id,
                    "filename": a.filename,
                    "contentType": a.content_type,
                    "size": a.size,
                    "disposition": a.disposition,
                    "cid": a.content_id,
                    "part": a.part,
                }
                for a in summary.attachments
            ],
        }
    )


class Appending:
    """The append half of :class:`~postern.mailstore.service.MailStore`, which sets
    these attributes and has these lookups."""

    db: Database
    blobs: BlobStore
    bus: EventBus
    max_message_size: int
    fast_batches: bool

    if TYPE_CHECKING:

        async def _folder(self, conn: AsyncConnection, user_id: str, folder_id: str) -> Row: ...

        async def _folder_at(self, conn: AsyncConnection, user_id: str, path: str) -> Row: ...

    # Appending -----------------------------------------------------------------------

    async def append(
        self, user_id: str, folder_id: str, raw: bytes, flags: Sequence[str] = (), internal_ms: int | None = None
    ) -> AppendResult:
        result = (await self.append_many([AppendRequest(user_id, folder_id, raw, flags, internal_ms)]))[0]
        if isinstance(result, DomainError):
            raise result
        return result

    async def append_many(self, requests: Sequence[AppendRequest]) -> list[AppendResult | DomainError]:
        """Store messages durably, all in one transaction (a group commit).

        Each request gets its own result: a message that cannot be stored (unknown
        folder, quota, size) does not stop the others. The blobs are written and synced
        before the rows are committed; so when this returns, every message it reports
        stored is durable, and a crash in between leaves at most an orphan blob, which
        the garbage collector removes.
        """
        return (await self.commit([await self.stage(requests)]))[0]

    async def stage(self, requests: Sequence[AppendRequest]) -> StagedAppends:
        """The first half of ``append_many``: the summaries parsed and the blobs written
        and synced. Nothing is visible before ``commit``; blobs staged but never
        committed are orphans, which the garbage collector removes."""
        results: list[AppendResult | DomainError | None] = [None] * len(requests)
        fitting: list[tuple[int, AppendRequest]] = []
        for index, request in enumerate(requests):
            if len(request.prefix) + len(request.raw) > self.max_message_size:
                results[index] = TooLarge(f"Message is larger than the allowed {self.max_message_size} bytes")
            else:
                fitting.append((index, request))
        if not fitting:
            return StagedAppends(results, [])
        # The blobs are written and synced in a thread while this one parses them:
        # the disk's wait and the parse overlap.
        writing = asyncio.ensure_future(self.blobs.put_many([request.raw for _, request in fitting]))  # noqa: RUF006 (awaited below)
        prepared: list[tuple[int, _Prepared]] = []
        try:
            for index, request in fitting:
                if request.summary is not None:
                    summary = request.summary
                elif len(request.raw) > INLINE_PARSE_LIMIT:
                    summary = await asyncio.to_thread(mime.summarise, request.raw)
                else:
                    summary = mime.summarise(request.raw)
                prepared.append((index, _Prepared(request, summary, columns=_message_columns(request, summary))))
        finally:
            # Whatever happens to the parse, the write is waited for (or its failure
            # heard): nothing is left running behind the caller's back.
            keys = await writing
        for (_, item), key in zip(prepared, keys):
            item.key = key
        return StagedAppends(results, prepared)

    async def commit(self, batches: Sequence[StagedAppends]) -> list[list[AppendResult | DomainError]]:
        """The second half of ``append_many``: the rows of every staged batch, in one
        transaction and in order (a group commit). One list of results per batch."""
        merged: list[tuple[int, _Prepared]] = []
        origin: list[tuple[StagedAppends, int]] = []
        for batch in batches:
            for index, item in batch.prepared:
                merged.append((len(merged), item))
                origin.append((batch, index))
        if merged:
            async with self.db.write() as conn:
                outcomes = await self._store_batch(conn, merged)
                for number, item in merged:
                    if item.request.along is not None and isinstance(outcomes.get(number), AppendResult):
                        await item.request.along(conn, outcomes[number])
            events: list[Event] = []
            for number, (batch, index) in enumerate(origin):
                outcome = outcomes[number]
                batch.results[index] = outcome
                if isinstance(outcome, AppendResult):
                    events.append(MessageAdded(outcome.user_id, outcome.folder_id, outcome.uid, outcome.modseq))
            self.bus.publish(events)
        return [[r for r in batch.results if r is not None] for batch in batches]

    async def _store_batch(self, conn: AsyncConnection, prepared: Sequence[tuple[int, _Prepared]]) -> dict[int, AppendResult | DomainError]:
        """The rows of a batch of appends, by index. The outcome is that of storing the
        messages one by one in order (folder, quota, UID and MODSEQ, blob reference,
        thread), in a number of statements that does not grow with the batch."""
        outcomes: dict[int, AppendResult | DomainError] = {}
        store = await append_rows(conn, fast=self.fast_batches)
        folder_of = await self._folders_for(conn, store, prepared, outcomes)
        live = [(index, item) for index, item in prepared if index in folder_of]
        if not live:
            return outcomes

        # Locks in a fixed order (users, then folders, then blobs, each by key), as
        # every mailstore write takes them: concurrent batches cannot deadlock.
        read_usage: dict[str, tuple[int, int]] = {}
        read_heads: dict[str, tuple[int, int]] = {}
        for index, _ in live:
            row = folder_of[index]
            read_heads[row.id] = (int(row.uid_next), int(row.modseq))
            used = getattr(row, "storage_used", None)  # not on a folder looked up alone
            if used is not None:
                read_usage[row.user_id] = (int(used), int(row.quota_allowed))
        usage = await store.lock_usage([item.request.user_id for _, item in live], read_usage)
        heads = await store.lock_folders([folder_of[index].id for index, _ in live], read_heads)
        accepted: list[tuple[int, _Prepared, Any, int]] = []
        deltas: dict[str, int] = {}
        for index, item in live:
            request, folder = item.request, folder_of[index]
            if folder.id not in heads or request.user_id not in usage:  # deleted meanwhile (PostgreSQL)
                outcomes[index] = NotFound("This mailbox does not exist", code="NoSuchMailbox")
                continue
            size = len(request.prefix) + len(request.raw)
            used, quota = usage[request.user_id]
            if not request.quota_grace and used + size > quota:
                outcomes[index] = OverQuota("Mailbox is over quota")
                continue
            usage[request.user_id] = (used + size, quota)
            deltas[request.user_id] = deltas.get(request.user_id, 0) + size
            accepted.append((index, item, folder, size))
        if not accepted:
            return outcomes
        await store.add_usage(deltas)
        appends: dict[str, tuple[int, int, int]] = {}
        for _, item, folder, size in accepted:
            count, unseen, total = appends.get(folder.id, (0, 0, 0))
            appends[folder.id] = (count + 1, unseen + (0 if item.columns["seen"] else 1), total + size)
        await store.add_appends(appends)
        next_uid = {f: heads[f][0] for f in appends}
        next_modseq = {f: heads[f][1] + 1 for f in appends}

        created = now_ms()
        refs: dict[str, tuple[int, int]] = {}
        raw_of: dict[str, bytes] = {}
        for _, item, _, _ in accepted:
            _, count = refs.get(item.key, (0, 0))
            refs[item.key] = (len(item.request.raw), count + 1)
            raw_of[item.key] = item.request.raw
        fresh = await store.add_blob_refs(refs, created)
        if fresh:
            # Rows that were new or revived from zero references: the collector may
            # have deleted the file since stage() wrote or found it; ensure_many
            # writes again whichever is missing (and only checks the others).
            await self.blobs.ensure_many({key: raw_of[key] for key in fresh})

        threads = await self._threads_for(store, [(item.request.user_id, item.summary) for _, item, _, _ in accepted], created)
        rows: list[dict[str, Any]] = []
        store_events: list[tuple[str, str, str, dict[str, Any], int]] = []
        for (index, item, folder, size), thread_id in zip(accepted, threads):
            request = item.request
            uid, modseq = next_uid[folder.id], next_modseq[folder.id]
            next_uid[folder.id], next_modseq[folder.id] = uid + 1, modseq + 1
            internal_ms = request.internal_ms if request.internal_ms is not None else created
            mid = new_id()
            rows.append(
                {
                    **item.columns,
                    "folder_id": folder.id,
                    "uid": uid,
                    "user_id": request.user_id,
                    "blob_key": item.key,
                    "size": size,
                    "internal_ms": internal_ms,
                    "modseq": modseq,
                    "thread_id": thread_id,
                    "expires_ms": internal_ms + folder.retention_ms if folder.retention_ms else None,
                    "mid": mid,
                }
            )
            if request.event is not None:
                store_events.append((request.user_id, mid, "STORE", request.event, created))
            outcomes[index] = AppendResult(request.user_id, folder.id, uid, modseq, size, item.key, int(folder.uidvalidity), mid)
        await store.insert_messages(rows)
        await store.add_events(store_events)
        return outcomes

    async def _folders_for(
        self,
        conn: AsyncConnection,
        store: AppendRows,
        prepared: Sequence[tuple[int, _Prepared]],
        outcomes: dict[int, AppendResult | DomainError],
    ) -> dict[int, Any]:
        """Each request's folder, by index, from one query; a request whose folder it
        does not find is looked up alone, for the precise error (into ``outcomes``)."""
        by_id = [
            p.request.folder_id
            for _, p in prepared
            if p.request.folder_id is not None and is_id(p.request.folder_id) and is_id(p.request.user_id)
        ]
        by_path = [
            (p.request.user_id, p.request.folder_path) for _, p in prepared if p.request.folder_id is None and is_id(p.request.user_id)
        ]
        rows = await store.folders(by_id, by_path)
        with_id = {r.id: r for r in rows}
        at_path = {(r.user_id, r.path): r for r in rows}
        found: dict[int, Any] = {}
        for index, item in prepared:
            request = item.request
            if request.folder_id is not None:
                row = with_id.get(request.folder_id)
                if row is not None and row.user_id != request.user_id:
                    row = None
            else:
                row = at_path.get((request.user_id, request.folder_path))
            if row is None:
                try:
                    if request.folder_id is not None:
                        try:
                            row = await self._folder(conn, request.user_id, request.folder_id)
                        except NotFound:
                            if not request.fallback_to_path:
                                raise
                            row = await self._folder_at(conn, request.user_id, request.folder_path)
                    else:
                        row = await self._folder_at(conn, request.user_id, request.folder_path)
                except NotFound as error:
                    outcomes[index] = error
                    continue
            found[index] = row
        return found

    async def _threads_for(self, store: AppendRows, messages: Sequence[tuple[str, mime.MessageSummary]], now: int) -> list[str]:
        """The thread of each (user, summary), in order, as if appended one by one: by
        References/In-Reply-To first; a reply with no known reference joins a recent
        thread with the same normalised subject; anything else starts a thread. A
        message may join a thread that an earlier one of the batch started."""
        user_ids = sorted({user for user, _ in messages})
        wanted: set[str] = set()
        subjects: set[str] = set()
        for _, summary in messages:
            for ref in (*summary.references, *summary.in_reply_to, *((summary.message_id,) if summary.message_id else ())):
                wanted.update((ref, ref[:255]))  # refs are stored cut at 255 characters
            if summary.is_reply and summary.thread_subject:
                subjects.add(summary.thread_subject)
        known: dict[tuple[str, str], str] = {}
        subject_of: dict[str, str] = {}
        for row in await store.threads_of_refs(user_ids, sorted(wanted)):
            known[(row.user_id, row.ref)] = row.thread_id
            subject_of[row.thread_id] = row.subject
        # The most recently updated thread per (user, subject) before this batch.
        stored: dict[tuple[str, str], tuple[int, str]] = {}
        if subjects:
            for row in await store.threads_by_subjects(user_ids, sorted(subjects), now - THREAD_SUBJECT_WINDOW_MS):
                key = (row.user_id, row.subject)
                if key not in stored or row.updated_ms > stored[key][0]:
                    stored[key] = (int(row.updated_ms), row.id)
        recent: dict[tuple[str, str], str] = {}  # threads this batch started or touched (updated now)
        new_threads: dict[str, dict[str, Any]] = {}
        touched: set[str] = set()
        new_refs: dict[tuple[str, str], str] = {}
        result: list[str] = []
        for user, summary in messages:
            own = [summary.message_id] if summary.message_id else []
            refs = [*summary.references, *summary.in_reply_to]
            matches = sorted(ref for ref in {*refs, *own} if (user, ref) in known)
            thread_id = known[(user, matches[0])] if matches else None
            if thread_id is None and summary.is_reply and summary.thread_subject:
                thread_id = recent.get((user, summary.thread_subject))
                if thread_id is None and (user, summary.thread_subject) in stored:
                    thread_id = stored[(user, summary.thread_subject)][1]
                    subject_of[thread_id] = summary.thread_subject
            if thread_id is None:
                thread_id = new_id()
                new_threads[thread_id] = {"id": thread_id, "user_id": user, "subject": summary.thread_subject, "updated_ms": now}
                subject_of[thread_id] = summary.thread_subject
            elif thread_id not in new_threads:
                touched.add(thread_id)
            recent[(user, subject_of[thread_id])] = thread_id
            for ref in dict.fromkeys([*own, *refs]):
                key = (user, ref[:255])
                if key not in known:  # a ref already known keeps its thread
                    known[key] = new_refs[key] = thread_id
            result.append(thread_id)
        await store.insert_threads(list(new_threads.values()))
        await store.touch_threads(sorted(touched), now)
        await store.add_thread_refs([(user, ref, thread) for (user, ref), thread in new_refs.items()])
        return result
