"""Evaluating SEARCH programs and SORT criteria over messages (pure).

The server gives each message as a :class:`SearchableMessage`;
:class:`RawMessageView` is one built from the raw bytes and the message's
metadata, with the parsing done lazily and once.  Text matching is
case-insensitive substring matching on decoded text (RFC 3501 §6.4.4);
dates compare by day, ignoring time and zone.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Protocol

from postern.mime import extract_content, summarise
from postern.mime.imap_structure import decoded_headers
from postern.mime.summary import MessageSummary

from . import commands as c
from .thread import ThreadMessage, base_subject

__all__ = [
    "RawMessageView",
    "SearchContext",
    "SearchableMessage",
    "matches",
    "search",
    "sort_messages",
]


class SearchableMessage(Protocol):
    """What SEARCH and SORT need to know about one message."""

    @property
    def seq(self) -> int: ...
    @property
    def uid(self) -> int: ...
    @property
    def flags(self) -> Collection[str]: ...
    @property
    def recent(self) -> bool: ...
    @property
    def internaldate(self) -> datetime: ...
    @property
    def size(self) -> int: ...
    @property
    def modseq(self) -> int: ...

    def header_values(self, name: str) -> Sequence[str]:
        """Decoded values of a header field (case-insensitive name)."""

    def header_text(self) -> str:
        """The whole header, decoded, for TEXT."""

    def body_text(self) -> str:
        """The decoded text of the body, for BODY and TEXT."""

    def sent_date(self) -> datetime | None:
        """The parsed Date field, None when missing or unreadable."""

    def first_address(self, name: str) -> tuple[str, str] | None:
        """(display name, addr-spec) of the first address of From/To/Cc."""


@dataclass(frozen=True, slots=True)
class SearchContext:
    """The mailbox around the messages.

    ``largest_seq``/``largest_uid`` give ``*``; ``saved_uids`` is the
    SEARCHRES ``$`` result; ``now`` is for OLDER/YOUNGER.
    """

    largest_seq: int
    largest_uid: int
    saved_uids: frozenset[int] = frozenset()
    now: datetime = field(default_factory=lambda: datetime.now(UTC))


def _contains(haystack: str, needle: str) -> bool:
    return needle.casefold() in haystack.casefold()


def _compare_day(day: object, relation: str, wanted: object) -> bool:
    if relation == "before":
        return day < wanted  # type: ignore[operator]
    if relation == "on":
        return day == wanted
    return day >= wanted  # type: ignore[operator]


def _in_set(numbers: c.SequenceSet, value: int, largest: int, saved: frozenset[int], uid: int) -> bool:
    if numbers.saved:
        return uid in saved
    if largest == 0:
        return False
    return numbers.contains(value, largest)


def matches(key: c.SearchKey, message: SearchableMessage, context: SearchContext) -> bool:
    """Whether ``message`` satisfies the search key ``key``."""
    return _matches(key, message, context, 0)


def _matches(key: c.SearchKey, m: SearchableMessage, ctx: SearchContext, depth: int) -> bool:
    if depth > 200:  # the parser bounds nesting; this guards hand-built keys
        return False
    match key:
        case c.SearchAll():
            return True
        case c.SearchAnd(keys=keys):
            return all(_matches(k, m, ctx, depth + 1) for k in keys)
        case c.SearchOr(left=left, right=right):
            return _matches(left, m, ctx, depth + 1) or _matches(right, m, ctx, depth + 1)
        case c.SearchNot(key=inner):
            return not _matches(inner, m, ctx, depth + 1)
        case c.SearchFlag(flag=flag, present=present):
            if flag.startswith("\\"):
                has = flag in m.flags
            else:  # keywords compare case-insensitively, as Dovecot does
                wanted = flag.casefold()
                has = any(f.casefold() == wanted for f in m.flags)
            return has == present
        case c.SearchRecent(present=present):
            return m.recent == present
        case c.SearchHeader(name=name, value=value):
            values = m.header_values(name)
            if not value:
                return bool(values)
            return any(_contains(v, value) for v in values)
        case c.SearchBody(value=value):
            return _contains(m.body_text(), value)
        case c.SearchText(value=value):
            return _contains(m.header_text(), value) or _contains(m.body_text(), value)
        case c.SearchDate(field=field_name, relation=relation, value=value):
            when = m.internaldate if field_name == "internal" else m.sent_date()
            if when is None:
                return False
            return _compare_day(when.date(), relation, value)
        case c.SearchSize(relation=relation, size=size):
            return m.size > size if relation == "larger" else m.size < size
        case c.SearchSequence(numbers=numbers):
            return _in_set(numbers, m.seq, ctx.largest_seq, ctx.saved_uids, m.uid)
        case c.SearchUid(uids=uids):
            return _in_set(uids, m.uid, ctx.largest_uid, ctx.saved_uids, m.uid)
        case c.SearchModSeq(modseq=modseq):
            return m.modseq >= modseq
        case c.SearchWithin(relation=relation, seconds=seconds):
            internal = m.internaldate if m.internaldate.tzinfo else m.internaldate.replace(tzinfo=UTC)
            age = ctx.now - internal
            return age >= timedelta(seconds=seconds) if relation == "older" else age <= timedelta(seconds=seconds)
    return False


def search(
    key: c.SearchKey, messages: Iterable[SearchableMessage], context: SearchContext
) -> list[SearchableMessage]:
    """The messages that match, in the order given."""
    return [m for m in messages if _matches(key, m, context, 0)]


# ---------------------------------------------------------------------------
# SORT (RFC 5256 §3, RFC 5957 DISPLAYFROM/DISPLAYTO)
# ---------------------------------------------------------------------------


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _address_key(m: SearchableMessage, field_name: str, display: bool) -> str:
    first = m.first_address(field_name)
    if first is None:
        return ""
    name, address = first
    if display:
        return (name or address).casefold()
    return address.rpartition("@")[0].casefold() if "@" in address else address.casefold()


def _sort_key(m: SearchableMessage, key: str) -> object:
    if key == "ARRIVAL":
        return _utc(m.internaldate)
    if key == "DATE":
        sent = m.sent_date()
        return _utc(sent if sent is not None else m.internaldate)
    if key == "SIZE":
        return m.size
    if key == "SUBJECT":
        subjects = m.header_values("Subject")
        return base_subject(subjects[0] if subjects else "")[0].casefold()
    if key in ("FROM", "TO", "CC"):
        return _address_key(m, key.capitalize(), display=False)
    if key in ("DISPLAYFROM", "DISPLAYTO"):
        return _address_key(m, key[7:].capitalize(), display=True)
    raise ValueError(f"unknown sort key {key}")


def sort_messages(
    messages: Iterable[SearchableMessage], criteria: Sequence[c.SortCriterion]
) -> list[SearchableMessage]:
    """Messages sorted by the criteria; ties keep mailbox (sequence) order."""
    ordered = sorted(messages, key=lambda m: m.seq)
    # Stable sorts from the last criterion to the first give the combined order.
    for criterion in reversed(criteria):
        keys = {id(m): _sort_key(m, criterion.key) for m in ordered}
        ordered.sort(key=lambda m: keys[id(m)], reverse=criterion.reverse)  # type: ignore[arg-type,return-value]
    return ordered


# ---------------------------------------------------------------------------
# a message view over raw bytes
# ---------------------------------------------------------------------------


def _decoded_values(raw: bytes, wanted: str) -> list[str]:
    """``[v for k, v in decoded_headers(raw) if k == wanted]`` without decoding the
    other fields."""
    from postern.mime.imap_structure import _field_value, _scan_header
    from postern.mime.summary import _header_text

    if not wanted.isascii():
        return []  # field names are printable ASCII
    key = wanted.encode("ascii")
    raw = bytes(raw)
    try:
        fields, _ = _scan_header(raw, 0, len(raw))
        return [_header_text(_field_value(raw, f)) for f in fields if f.name == key]
    except Exception:  # pragma: no cover - the same last-resort net as decoded_headers
        return [value for k, value in decoded_headers(raw) if k == wanted]


@dataclass(slots=True)
class RawMessageView:
    """A :class:`SearchableMessage` from raw bytes plus mailbox metadata."""

    seq: int
    uid: int
    raw: bytes
    internaldate: datetime
    flags: frozenset[str] = frozenset()
    recent: bool = False
    modseq: int = 0
    _headers: list[tuple[str, str]] | None = None
    _summary: MessageSummary | None = None
    _body: str | None = None

    @property
    def size(self) -> int:
        return len(self.raw)

    def _all_headers(self) -> list[tuple[str, str]]:
        if self._headers is None:
            self._headers = decoded_headers(self.raw)
        return self._headers

    def summary(self) -> MessageSummary:
        if self._summary is None:
            self._summary = summarise(self.raw)
        return self._summary

    def header_values(self, name: str) -> Sequence[str]:
        wanted = name.lower()
        if self._headers is None:
            # Decode only the fields asked for (FROM, SUBJECT ... look at one or two);
            # the whole decoded header is built only for TEXT.
            return _decoded_values(self.raw, wanted)
        return [value for key, value in self._headers if key == wanted]

    def header_text(self) -> str:
        return "\n".join(f"{key}: {value}" for key, value in self._all_headers())

    def body_text(self) -> str:
        if self._body is None:
            self._body = extract_content(self.raw).text
        return self._body

    def sent_date(self) -> datetime | None:
        # In the Date field's own zone: SENT* compare the day the sender wrote.
        values = self.header_values("Date")
        if not values:
            return None
        try:
            parsed = parsedate_to_datetime(values[0])
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)

    def first_address(self, name: str) -> tuple[str, str] | None:
        summary = self.summary()
        lowered = name.lower()
        if lowered == "from":
            first = summary.from_
        else:
            found = summary.to if lowered == "to" else summary.cc if lowered == "cc" else ()
            first = found[0] if found else None
        return None if first is None else (first.name, first.address)

    def thread_message(self, number: int) -> ThreadMessage:
        """The THREAD view of this message, answering with ``number``."""
        summary = self.summary()
        references = summary.references or summary.in_reply_to[:1]
        return ThreadMessage(
            number=number,
            order=self.seq,
            message_id=summary.message_id,
            references=tuple(references),
            subject=summary.subject,
            date=summary.date or self.internaldate,
        )
