"""POP3's view of a user's INBOX: a snapshot of its messages with their exact POP3
sizes, each message's bytes as POP3 sends them, and the UPDATE state's changes.

POP3 sizes count the octets RETR sends before dot-stuffing: the stored bytes with
every bare LF made CRLF, and a final CRLF when the message does not end with one
(``CrlfNormaliser`` is the one definition of both). Measuring a message means
reading it once; the figures of each blob (content-addressed, so they never change)
are kept in a bounded in-process cache, so a client that polls every few minutes
costs one read of each new message, not of the whole INBOX at every login.
"""

from __future__ import annotations

import asyncio
import logging
from array import array
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from postern.errors import NotFound
from postern.mailstore.service import MailStore
from postern.storage import pop3 as pop3_store
from postern.storage.blobs import BlobNotFound

log = logging.getLogger(__name__)

CR, LF = 13, 10
NONE = -1  # no byte seen yet
# UID sets larger than this are updated in several statements (parameter limits).
RANGES_PER_STATEMENT = 2000


def _normalise(data: bytes) -> bytes:
    if b"\n" not in data:
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _normalised_length(data: bytes) -> int:
    return len(data) + data.count(b"\n") - data.count(b"\r\n")


class CrlfNormaliser:
    """Bare LF becomes CRLF, over a stream of chunks (a CRLF may be split between two
    chunks); ``finish`` ends the message with a line ending if it lacks one (a
    trailing CR gets its LF). A lone CR inside a line is left alone."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = NONE

    def feed(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        if self.last == CR and chunk[0] == LF:
            out = b"\n" + _normalise(chunk[1:])
        else:
            out = _normalise(chunk)
        self.last = chunk[-1]
        return out

    def finish(self) -> bytes:
        return _ending(self.last)


def _ending(last: int) -> bytes:
    if last in (NONE, LF):
        return b""
    return b"\n" if last == CR else b"\r\n"


@dataclass(frozen=True, slots=True)
class BlobFigures:
    """What the POP3 size of prefix + blob needs to know of the blob: its normalised
    length (read from the start of a message), whether it starts with LF (not bare
    after a prefix ending in CR) and its last byte."""

    length: int
    first_lf: bool
    last: int


def measure_chunks(chunks: Sequence[bytes]) -> BlobFigures:
    figures = _Measure()
    for chunk in chunks:
        figures.feed(chunk)
    return figures.result()


class _Measure:
    __slots__ = ("length", "first", "last")

    def __init__(self) -> None:
        self.length = 0
        self.first = NONE
        self.last = NONE

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        if self.first == NONE:
            self.first = chunk[0]
        self.length += _normalised_length(chunk)
        if self.last == CR and chunk[0] == LF:
            self.length -= 1  # a CRLF split between chunks
        self.last = chunk[-1]

    def result(self) -> BlobFigures:
        return BlobFigures(self.length, self.first == LF, self.last)


def pop3_size(prefix: bytes, blob: BlobFigures) -> int:
    """Octets of ``CrlfNormaliser`` over prefix + blob, ending included."""
    size = _normalised_length(prefix)
    last = prefix[-1] if prefix else NONE
    size += blob.length - (1 if last == CR and blob.first_lf else 0)
    if blob.last != NONE:
        last = blob.last
    return size + len(_ending(last))


@dataclass(slots=True)
class Maildrop:
    """The INBOX as it was at login: message number n is ``uids[n - 1]``."""

    folder_id: str
    uidvalidity: int
    retention_ms: int | None
    uids: array
    sizes: array

    def __len__(self) -> int:
        return len(self.uids)

    def unique_id(self, index: int) -> str:
        """UIDL of the message at ``index`` (0-based): the folder's UIDVALIDITY and the
        message's UID. Stable across sessions and restarts; a message moved away and
        back gets a new UID, and so counts as new."""
        return f"{self.uidvalidity}.{self.uids[index]}"


def uid_ranges(uids: Sequence[int]) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for uid in sorted(set(uids)):
        if ranges and ranges[-1][1] == uid - 1:
            ranges[-1] = (ranges[-1][0], uid)
        else:
            ranges.append((uid, uid))
    return ranges


class Pop3View:
    def __init__(self, mailstore: MailStore, *, cache_entries: int = 100_000, readers: int = 8):
        self.mailstore = mailstore
        self.cache_entries = cache_entries
        self._figures: OrderedDict[str, BlobFigures] = OrderedDict()
        self._readers = readers
        # Reading blobs to measure them is limited process-wide, so that many logins
        # at once do not flood the disk or the object store.
        self._reading = asyncio.Semaphore(readers)

    # The snapshot ---------------------------------------------------------------------

    async def open_maildrop(self, user_id: str) -> Maildrop:
        store = self.mailstore
        folder = await store.folder_by_path(user_id, "INBOX")
        async with store.db.read() as conn:
            rows = await pop3_store.maildrop(conn, folder.id)
        missing = list(dict.fromkeys(r.blob_key for r in rows if r.blob_key not in self._figures))
        measured = await self._measure_all(missing) if missing else {}
        uids, sizes = array("q"), array("q")
        for row in rows:
            uids.append(int(row.uid))
            figures = measured.get(row.blob_key) or self._cached(row.blob_key)
            prefix = bytes(row.prefix or b"")
            # A blob that cannot be read keeps its stored size; RETR will say why.
            sizes.append(pop3_size(prefix, figures) if figures is not None else int(row.size))
        return Maildrop(folder.id, int(folder.uidvalidity), folder.retention_ms, uids, sizes)

    def _cached(self, key: str) -> BlobFigures | None:
        figures = self._figures.get(key)
        if figures is not None:
            self._figures.move_to_end(key)
        return figures

    def _remember(self, key: str, figures: BlobFigures) -> None:
        self._figures[key] = figures
        self._figures.move_to_end(key)
        while len(self._figures) > self.cache_entries:
            self._figures.popitem(last=False)

    async def _measure_all(self, keys: list[str]) -> dict[str, BlobFigures]:
        pending = iter(keys)
        found: dict[str, BlobFigures] = {}

        async def reader() -> None:
            for key in pending:
                async with self._reading:
                    figures = await self._measure(key)
                if figures is not None:
                    found[key] = figures

        await asyncio.gather(*(reader() for _ in range(min(self._readers, len(keys)))))
        for key, figures in found.items():
            self._remember(key, figures)
        return found

    async def _measure(self, key: str) -> BlobFigures | None:
        figures = _Measure()
        try:
            async for chunk in self.mailstore.blobs.stream(key):
                figures.feed(chunk)
        except BlobNotFound:
            log.warning("POP3: blob %s of a stored message is missing", key)
            return None
        return figures.result()

    # Reading ---------------------------------------------------------------------------

    async def open_message(self, maildrop: Maildrop, uid: int) -> AsyncIterator[bytes]:
        """The message's bytes as POP3 sends them before dot-stuffing, in chunks.
        Raises NotFound (before anything is read) when the message or its bytes are
        gone since the snapshot (expunged by another client)."""
        async with self.mailstore.db.read() as conn:
            row = await pop3_store.message_source(conn, maildrop.folder_id, uid)
        if row is None:
            raise NotFound("This message was deleted by another session", code="MessageNotFound")
        blob = self.mailstore.blobs.stream(row.blob_key)
        try:
            first = await anext(blob, b"")
        except BlobNotFound:
            raise NotFound("This message's content is missing", code="MessageNotFound") from None
        return self._chunks(bytes(row.prefix or b""), first, blob)

    @staticmethod
    async def _chunks(prefix: bytes, first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        normaliser = CrlfNormaliser()
        try:
            for chunk in (prefix, first):
                out = normaliser.feed(chunk)
                if out:
                    yield out
            async for chunk in rest:
                out = normaliser.feed(chunk)
                if out:
                    yield out
            end = normaliser.finish()
            if end:
                yield end
        finally:
            await rest.aclose()  # type: ignore[attr-defined]

    # The UPDATE state ------------------------------------------------------------------

    async def update(self, user_id: str, maildrop: Maildrop, *, seen: Sequence[int], deleted: Sequence[int]) -> int:
        """Mark the retrieved messages seen, then move the deleted ones to Trash in one
        operation. Messages gone meanwhile are skipped. Returns how many moved."""
        store = self.mailstore
        seen_ranges = uid_ranges(seen)
        for start in range(0, len(seen_ranges), RANGES_PER_STATEMENT):
            try:
                await store.update_messages(
                    user_id, maildrop.folder_id, seen_ranges[start : start + RANGES_PER_STATEMENT], flags={"seen": True}
                )
            except NotFound:
                pass
        deleted_ranges = uid_ranges(deleted)
        if not deleted_ranges:
            return 0
        trash = await store.folder_by_special_use(user_id, "\\Trash")
        if trash is None:
            raise NotFound("This user has no Trash folder", code="NoSuchMailbox")
        moved = 0
        for start in range(0, len(deleted_ranges), RANGES_PER_STATEMENT):
            try:
                count, _ = await store.update_messages(
                    user_id, maildrop.folder_id, deleted_ranges[start : start + RANGES_PER_STATEMENT], flags={}, move_to=trash.id
                )
            except NotFound as error:
                if error.code != "MessageNotFound":
                    raise
                count = 0
            moved += count
        return moved
