"""A bounded in-process cache of what IMAP parses from message headers.

A message's bytes are its prefix and an immutable blob named by the hash of its
content, so whatever is parsed from them, keyed by (blob key, prefix), never goes
stale: no write needs to invalidate anything. Dovecot keeps the same in its index
cache. FETCH ENVELOPE, header SEARCH keys and SORT/THREAD read entries from here
and read message bytes only for the misses; bodies are never cached.

The bound is an estimate of the bytes the entries hold (the least recently used
go first), never a number of connections or messages.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from postern.mailstore.imap_view import ImapMessage
from postern.mime import summarise
from postern.mime.dates import sent_date_of
from postern.mime.imap_structure import decode_value, has_whole_header, header_facts

from . import encode as enc

__all__ = ["DEFAULT_MAX_BYTES", "HeaderCache", "MessageReader", "ParsedHeader", "SummaryFacts", "parse_header"]

DEFAULT_MAX_BYTES = 32 * 1024 * 1024
#: Misses are read together while their sizes add up to at most this (one read hop).
READ_BYTES = 256 * 1024
#: Of a message whose header is all that is needed, this much is read first; the
#: rest only when the header is longer.
HEAD_BYTES = 32 * 1024
#: Rough per-object costs of CPython, for the size estimate.
_ENTRY_OVERHEAD = 400
_FIELD_OVERHEAD = 72
_STR_OVERHEAD = 50


@dataclass(frozen=True, slots=True)
class SummaryFacts:
    """What SORT's address keys and THREAD take from the message summary."""

    from_: tuple[str, str] | None
    to: tuple[str, str] | None
    cc: tuple[str, str] | None
    message_id: str | None
    references: tuple[str, ...]  # References, else the first In-Reply-To
    subject: str
    date: datetime | None


@dataclass(frozen=True, slots=True)
class ParsedHeader:
    """One message's header as IMAP uses it.

    ``envelope`` is the encoded ENVELOPE; ``fields`` the values of each header
    field by lower-cased name, in order: as sent until first asked for, then
    decoded (:meth:`~.search.HeaderView.header_values` does it, once, in place:
    most fields are never searched); ``sent_date`` the parsed Date field;
    ``summary`` is filled only when SORT or THREAD asked for it; ``size`` is the
    estimated memory the entry holds."""

    envelope: bytes
    fields: dict[str, tuple[str, ...] | tuple[bytes, ...]]
    sent_date: datetime | None
    summary: SummaryFacts | None
    size: int


def _text_size(text: str | None) -> int:
    if text is None:
        return 0
    return _STR_OVERHEAD + len(text) * (1 if text.isascii() else 4)


def _value_size(value: bytes) -> int:
    # Decoded (which header_values does in place), 8-bit text may take 4 bytes a character.
    return _STR_OVERHEAD + len(value) * (1 if value.isascii() else 4)


def _summary_facts(raw: bytes) -> SummaryFacts:
    summary = summarise(raw)
    first_to = summary.to[0] if summary.to else None
    first_cc = summary.cc[0] if summary.cc else None
    return SummaryFacts(
        from_=None if summary.from_ is None else (summary.from_.name, summary.from_.address),
        to=None if first_to is None else (first_to.name, first_to.address),
        cc=None if first_cc is None else (first_cc.name, first_cc.address),
        message_id=summary.message_id,
        references=tuple(summary.references or summary.in_reply_to[:1]),
        subject=summary.subject,
        date=summary.date,
    )


def parse_header(raw: bytes, *, summary: bool = False) -> ParsedHeader:
    """The cache entry for a message's bytes (the summary parses the whole message,
    so it is made only when asked)."""
    facts = header_facts(raw)
    envelope = enc.encode_envelope(facts.envelope)
    grouped: dict[str, list[bytes]] = {}
    for name, value in facts.fields:
        grouped.setdefault(name, []).append(value)
    fields: dict[str, tuple[str, ...] | tuple[bytes, ...]] = {name: tuple(values) for name, values in grouped.items()}
    dates = grouped.get("date")
    sent = sent_date_of([decode_value(dates[0])]) if dates else None
    size = _ENTRY_OVERHEAD + len(envelope) + _FIELD_OVERHEAD * len(fields)
    size += sum(_FIELD_OVERHEAD + _text_size(name) + _value_size(value) for name, value in facts.fields)
    found = None
    if summary:
        found = _summary_facts(raw)
        size += _ENTRY_OVERHEAD + _text_size(found.message_id) + _text_size(found.subject)
        size += sum(_FIELD_OVERHEAD + _text_size(r) for r in found.references)
        for pair in (found.from_, found.to, found.cc):
            if pair is not None:
                size += _FIELD_OVERHEAD + _text_size(pair[0]) + _text_size(pair[1])
    return ParsedHeader(envelope, fields, sent, found, size)


class MessageReader(Protocol):
    """How the cache reads messages (:class:`~postern.mailstore.imap_view.ImapView`)."""

    async def raw_many(self, messages: Sequence[ImapMessage]) -> list[bytes]: ...

    async def heads_many(self, messages: Sequence[ImapMessage], limit: int) -> list[bytes]: ...


class HeaderCache:
    """:class:`ParsedHeader` entries by (blob key, prefix), least recently used
    dropped first once their estimated size passes ``max_bytes``."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[tuple[str, bytes], ParsedHeader] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def _cost(key: tuple[str, bytes], parsed: ParsedHeader) -> int:
        return parsed.size + _STR_OVERHEAD * 3 + len(key[0]) + len(key[1])

    def get(self, blob_key: str, prefix: bytes) -> ParsedHeader | None:
        key = (blob_key, prefix)
        parsed = self._entries.get(key)
        if parsed is not None:
            self._entries.move_to_end(key)
        return parsed

    def put(self, blob_key: str, prefix: bytes, parsed: ParsedHeader) -> None:
        key = (blob_key, prefix)
        cost = self._cost(key, parsed)
        if cost > self.max_bytes // 8:
            return  # one huge header would push out hundreds of ordinary ones
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= self._cost(key, old)
        self._entries[key] = parsed
        self.bytes += cost
        while self.bytes > self.max_bytes and self._entries:
            gone_key, gone = self._entries.popitem(last=False)
            self.bytes -= self._cost(gone_key, gone)

    async def parsed_many(self, reader: MessageReader, messages: Sequence[ImapMessage], *, summary: bool = False) -> list[ParsedHeader]:
        """The entries of ``messages``, in order; the misses (and, with ``summary``,
        the entries without one) are read a few at a time, parsed and kept. Without
        ``summary`` only the first HEAD_BYTES of a miss are read when they hold its
        whole header."""
        found: list[ParsedHeader | None] = []
        missing: list[int] = []
        entries = self._entries
        for i, message in enumerate(messages):
            key = (message.blob_key, message.prefix)
            parsed = entries.get(key)
            if parsed is None or (summary and parsed.summary is None):
                missing.append(i)
                found.append(None)
            else:
                entries.move_to_end(key)
                found.append(parsed)
        limit = None if summary else HEAD_BYTES
        long_headers: list[int] = []
        for batch in _batches(messages, missing, limit):
            chosen = [messages[i] for i in batch]
            raws = await (reader.raw_many(chosen) if limit is None else reader.heads_many(chosen, limit))
            for i, raw in zip(batch, raws, strict=True):
                if len(raw) < messages[i].size and not has_whole_header(raw):
                    long_headers.append(i)
                    continue
                found[i] = self._parse(messages[i], raw, summary)
        for batch in _batches(messages, long_headers, None):
            raws = await reader.raw_many([messages[i] for i in batch])
            for i, raw in zip(batch, raws, strict=True):
                found[i] = self._parse(messages[i], raw, summary)
        return found  # type: ignore[return-value]  # every None was filled

    def _parse(self, message: ImapMessage, raw: bytes, summary: bool) -> ParsedHeader:
        parsed = parse_header(raw, summary=summary)
        self.put(message.blob_key, message.prefix, parsed)
        return parsed


def _batches(messages: Sequence[ImapMessage], indexes: list[int], limit: int | None) -> Iterator[list[int]]:
    """``indexes`` in runs whose reads (at most ``limit`` bytes of each message) add up
    to at most READ_BYTES, at least one message each."""
    batch: list[int] = []
    total = 0
    for i in indexes:
        size = messages[i].size if limit is None else min(messages[i].size, limit)
        if batch and total + size > READ_BYTES:
            yield batch
            batch, total = [], 0
        batch.append(i)
        total += size
    if batch:
        yield batch
