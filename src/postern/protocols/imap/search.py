"""Evaluating SEARCH programs and SORT criteria over messages (pure).

The server gives each message as a :class:`SearchableMessage`;
:class:`RawMessageView` is one built from the raw bytes and the message's
metadata, with the parsing done lazily and once; :class:`HeaderView` one built
from the header cache's parse of it (for programs that read no body). A program
is compiled once (:func:`compile_search`) and run on each message.  Text matching is
case-insensitive substring matching on decoded text (RFC 3501 §6.4.4);
dates compare by day, ignoring time and zone.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from postern.mime import extract_content, summarise
from postern.mime.dates import sent_date_of
from postern.mime.imap_structure import address_list, decode_value, decoded_headers
from postern.mime.summary import MessageSummary

from . import commands as c
from .thread import ThreadMessage, base_subject

if TYPE_CHECKING:
    from postern.mailstore.imap_view import ImapMessage

    from .header_cache import ParsedHeader

__all__ = [
    "HeaderView",
    "RawMessageView",
    "SearchContext",
    "SearchableMessage",
    "compile_search",
    "matches",
    "search",
    "sent_date_of",
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
    return _compile(key, context, 0)(message)


Predicate = Callable[[SearchableMessage], bool]


def compile_search(key: c.SearchKey, context: SearchContext) -> Predicate:
    """``key`` as a function of a message, for matching many messages: what can be
    worked out once (the key's shape, needles folded, ``*``) is, instead of for
    every message."""
    return _compile(key, context, 0)


def _never(m: SearchableMessage) -> bool:
    return False


def _always(m: SearchableMessage) -> bool:
    return True


def _compile(key: c.SearchKey, ctx: SearchContext, depth: int) -> Predicate:
    if depth > 200:  # the parser bounds nesting; this guards hand-built keys
        return _never
    if isinstance(key, c.SearchAll):
        return _always
    if isinstance(key, c.SearchAnd):
        parts = tuple(_compile(k, ctx, depth + 1) for k in key.keys)
        if len(parts) == 1:
            return parts[0]
        return lambda m: all(p(m) for p in parts)
    if isinstance(key, c.SearchOr):
        left = _compile(key.left, ctx, depth + 1)
        right = _compile(key.right, ctx, depth + 1)
        return lambda m: left(m) or right(m)
    if isinstance(key, c.SearchNot):
        inner = _compile(key.key, ctx, depth + 1)
        return lambda m: not inner(m)
    if isinstance(key, c.SearchFlag):
        flag, present = key.flag, key.present
        if flag.startswith("\\"):
            return lambda m: (flag in m.flags) == present
        wanted = flag.casefold()  # keywords compare case-insensitively, as Dovecot does
        return lambda m: any(f.casefold() == wanted for f in m.flags) == present
    if isinstance(key, c.SearchRecent):
        recent = key.present
        return lambda m: m.recent == recent
    if isinstance(key, c.SearchHeader):
        name, value = key.name, key.value
        if not value:
            return lambda m: bool(m.header_values(name))
        needle = value.casefold()
        if name.lower() in _ADDRESS_FIELDS:
            return lambda m: any(needle in v.casefold() or needle in _addresses_text(v) for v in m.header_values(name))
        return lambda m: any(needle in v.casefold() for v in m.header_values(name))
    if isinstance(key, c.SearchBody):
        needle = key.value.casefold()
        return lambda m: needle in m.body_text().casefold()
    if isinstance(key, c.SearchText):
        needle = key.value.casefold()
        return lambda m: needle in m.header_text().casefold() or needle in m.body_text().casefold()
    if isinstance(key, c.SearchDate):
        relation, day = key.relation, key.value
        if key.field == "internal":
            return lambda m: _compare_day(m.internaldate.date(), relation, day)

        def sent(m: SearchableMessage) -> bool:
            when = m.sent_date()
            return when is not None and _compare_day(when.date(), relation, day)

        return sent
    if isinstance(key, c.SearchSize):
        size = key.size
        if key.relation == "larger":
            return lambda m: m.size > size
        return lambda m: m.size < size
    if isinstance(key, c.SearchSequence):
        numbers = key.numbers
        return lambda m: _in_set(numbers, m.seq, ctx.largest_seq, ctx.saved_uids, m.uid)
    if isinstance(key, c.SearchUid):
        uids = key.uids
        return lambda m: _in_set(uids, m.uid, ctx.largest_uid, ctx.saved_uids, m.uid)
    if isinstance(key, c.SearchModSeq):
        modseq = key.modseq
        return lambda m: m.modseq >= modseq
    if isinstance(key, c.SearchWithin):
        limit = timedelta(seconds=key.seconds)
        older = key.relation == "older"

        def within(m: SearchableMessage) -> bool:
            internal = m.internaldate if m.internaldate.tzinfo else m.internaldate.replace(tzinfo=UTC)
            age = ctx.now - internal
            return age >= limit if older else age <= limit

        return within
    return _never


def search(key: c.SearchKey, messages: Iterable[SearchableMessage], context: SearchContext) -> list[SearchableMessage]:
    """The messages that match, in the order given."""
    predicate = _compile(key, context, 0)
    return [m for m in messages if predicate(m)]


# ---------------------------------------------------------------------------
# SORT (RFC 5256 §3, RFC 5957 DISPLAYFROM/DISPLAYTO)
# ---------------------------------------------------------------------------


_ADDRESS_FIELDS = frozenset({"from", "to", "cc", "bcc", "sender", "reply-to"})


def _addresses_text(value: str) -> str:
    """An address field as its parsed addresses ("name <local@domain>", comments and
    folding dropped): FROM user@domain.org finds ``<user (c)@ (c) domain.org>``, as in
    Dovecot."""
    parts = []
    for address in address_list(value.encode("utf-8", "replace")):
        name = (address.name or b"").decode("utf-8", "replace")
        if address.host is None:  # a group's start (its name) or end
            parts.append(name if address.mailbox is None else address.mailbox.decode("utf-8", "replace"))
            continue
        spec = (address.mailbox or b"").decode("utf-8", "replace") + "@" + address.host.decode("utf-8", "replace")
        parts.append(f"{name} <{spec}>" if name else spec)
    return ", ".join(parts).casefold()


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _address_key(m: SearchableMessage, field_name: str, display: bool) -> str:
    """RFC 5256's key: the addr-mailbox of the first address; RFC 5957's display key:
    its display name, else its addr-spec. A field that starts with a group gives the
    group's name (as its ENVELOPE does). Compared as i;ascii-casemap."""
    values = m.header_values(field_name)
    if not values:
        return ""
    addresses = address_list(values[0].encode("utf-8", "replace"))
    if not addresses:
        return ""
    first = addresses[0]
    mailbox = (first.mailbox or b"").decode("utf-8", "replace")
    if first.host is None:  # a group's name
        return mailbox.upper()
    if not display:
        return mailbox.upper()
    if first.name:
        return first.name.decode("utf-8", "replace").upper()
    host = first.host.decode("utf-8", "replace")
    return (mailbox if host == "MISSING_DOMAIN" else f"{mailbox}@{host}").upper()


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
        # i;ascii-casemap compares upper-cased: "[" and "_" sort after letters.
        return base_subject(subjects[0] if subjects else "")[0].upper()
    if key in ("FROM", "TO", "CC"):
        return _address_key(m, key.capitalize(), display=False)
    if key in ("DISPLAYFROM", "DISPLAYTO"):
        return _address_key(m, key[7:].capitalize(), display=True)
    raise ValueError(f"unknown sort key {key}")


def sort_messages(messages: Iterable[SearchableMessage], criteria: Sequence[c.SortCriterion]) -> list[SearchableMessage]:
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
    from postern.mime.charsets import _header_text
    from postern.mime.imap_header import _field_value, _scan_header

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
        return sent_date_of(self.header_values("Date"))

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


class MetaMessage:
    """A message as SEARCH sees it when the program needs no content."""

    __slots__ = ("seq", "message", "recent")

    def __init__(self, seq: int, message: ImapMessage, recent: bool) -> None:
        self.seq = seq
        self.message = message
        self.recent = recent

    @property
    def uid(self) -> int:
        return self.message.uid

    @property
    def flags(self) -> Collection[str]:
        return self.message.flags

    @property
    def internaldate(self) -> datetime:
        return self.message.internaldate

    @property
    def size(self) -> int:
        return self.message.size

    @property
    def modseq(self) -> int:
        return self.message.modseq

    def header_values(self, name: str) -> Sequence[str]:  # pragma: no cover - never asked
        return ()

    def header_text(self) -> str:  # pragma: no cover
        return ""

    def body_text(self) -> str:  # pragma: no cover
        return ""

    def sent_date(self) -> datetime | None:  # pragma: no cover
        return None

    def first_address(self, name: str) -> tuple[str, str] | None:  # pragma: no cover
        return None


class HeaderView(MetaMessage):
    """A :class:`SearchableMessage` from a message's metadata and its parsed header
    (a :class:`~.header_cache.ParsedHeader`): what header keys, SENT* and SORT read,
    without the message's bytes. The summary facts are there when SORT or THREAD
    asked for them."""

    __slots__ = ("parsed",)

    def __init__(self, seq: int, message: ImapMessage, recent: bool, parsed: ParsedHeader) -> None:
        super().__init__(seq, message, recent)
        self.parsed = parsed

    def header_values(self, name: str) -> Sequence[str]:
        key = name.lower()
        fields = self.parsed.fields
        values = fields.get(key)
        if not values:
            return ()
        if type(values[0]) is bytes:
            # Decoded on first use and kept decoded in the cache entry.
            values = tuple(decode_value(v) for v in values)  # type: ignore[arg-type]
            fields[key] = values
        return values  # type: ignore[return-value]

    # TEXT and BODY make run_search read the message's bytes (RawMessageView).
    def header_text(self) -> str:
        raise LookupError("a header view keeps no whole header")

    def body_text(self) -> str:
        raise LookupError("a header view has no body")

    def sent_date(self) -> datetime | None:
        return self.parsed.sent_date

    def first_address(self, name: str) -> tuple[str, str] | None:
        facts = self.parsed.summary
        assert facts is not None, "SORT by address asks for the summary facts"
        lowered = name.lower()
        if lowered == "from":
            return facts.from_
        return facts.to if lowered == "to" else facts.cc if lowered == "cc" else None

    def thread_message(self, number: int) -> ThreadMessage:
        """The THREAD view of this message, answering with ``number``."""
        facts = self.parsed.summary
        assert facts is not None, "THREAD asks for the summary facts"
        return ThreadMessage(
            number=number,
            order=self.seq,
            message_id=facts.message_id,
            references=facts.references,
            subject=facts.subject,
            date=facts.date or self.internaldate,
        )
