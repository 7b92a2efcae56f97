"""The filter engine: what the user's filters do with one message. Pure: the caller
gives the user's rules (``UserRules``, loaded by ``rules.service``) and the message's
bytes; no I/O here.

Matching follows WildDuck's: every header condition is a case-insensitive substring
of the decoded header (``to`` also looks at Cc and Delivered-To, ``from`` at Sender,
``listId`` at the part of List-Id inside ``<...>``), ``text`` a substring of the
message's plain text with whitespace collapsed, ``ha`` whether it has attachments,
``size`` larger than (positive) or smaller than (negative). All conditions of a
filter must hold. Enabled filters apply in creation order; for each action the first
matching filter that sets it wins; the forward targets of every matching filter add up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from typing import Any

from postern import mime

# Headers a filter or an autoreply decision looks at.
_WANTED = frozenset(
    {
        b"from", b"sender", b"to", b"cc", b"delivered-to", b"subject", b"list-id", b"message-id", b"references",
        b"auto-submitted", b"precedence", b"list-unsubscribe", b"x-auto-response-suppress", b"x-postern-loop",
    }
)  # fmt: skip
_HEADER_LINE = re.compile(rb"^([!-9;-~]+)[ \t]*:(.*)$")
_LIST_ID = re.compile(r"<([^>]+)")
MAX_HEAD = 256 * 1024
# What makes a message's plain text differ from its raw bytes: transfer encodings,
# HTML, charsets that are not ASCII-compatible, flowed text that joins words.
_NOT_AS_IS = (
    b"base64",
    b"quoted-printable",
    b"text/html",
    b"utf-16",
    b"utf-32",
    b"utf-7",
    b"ucs-",
    b"delsp",
    b"=?",
)


@dataclass(frozen=True, slots=True)
class Filter:
    id: str
    query: dict[str, Any]
    action: dict[str, Any]
    # The query's header conditions, lowercased (``listId``: the part inside <...>),
    # and its text as a pattern (any whitespace between its words).
    headers: tuple[tuple[str, str], ...] = ()
    text: re.Pattern[str] | None = None
    ascii_word: bytes | None = None  # the text's longest word, when ASCII (a quick test)

    @classmethod
    def of(cls, filter_id: str, query: dict[str, Any], action: dict[str, Any]) -> Filter:
        headers = []
        for key in ("from", "to", "subject", "listId"):
            wanted = query.get(key)
            if not wanted:
                continue
            wanted = wanted.lower()
            if key == "listId" and "<" in wanted:
                inner = _LIST_ID.search(wanted)
                if inner and inner.group(1).strip():
                    wanted = inner.group(1).strip()
            headers.append((key, wanted))
        text = query.get("text")
        pattern = word = None
        if text:
            words = text.lower().split()
            pattern = re.compile(r"\s+".join(map(re.escape, words)))
            longest = max(words, key=len)
            word = longest.encode() if longest.isascii() else None
        return cls(filter_id, query, action, tuple(headers), pattern, word)


@dataclass(frozen=True, slots=True)
class UserRules:
    """What delivery needs of one user: enabled filters in order, folders (id ->
    special use), addresses (normalised), display name, forwards per day, autoreply."""

    user_id: str
    filters: tuple[Filter, ...] = ()
    folders: dict[str, str | None] = field(default_factory=dict)
    addresses: frozenset[str] = frozenset()
    name: str = ""
    forwards_limit: int = 0
    autoreply: Any = None  # an autoreplies row with status true, or None

    @property
    def empty(self) -> bool:
        return not self.filters and self.autoreply is None

    def junk_folder(self) -> str | None:
        for folder_id, special in self.folders.items():
            if special == "\\Junk":
                return folder_id
        return None


def _decode(value: bytes) -> str:
    text = value.decode("utf-8", "replace")
    text = text.replace("\r", "").replace("\n", "")
    if "=?" in text:
        try:
            text = str(make_header(decode_header(text)))
        except (ValueError, LookupError, UnicodeError, TypeError):
            pass  # a malformed encoded word: the text stays as it is
    return text.strip()


class Message:
    """One message's facts, computed when first asked for."""

    def __init__(self, data: bytes, delivered_to: str = ""):
        self.data = data
        self.size = len(data)
        self.delivered_to = delivered_to.lower()
        self._headers: dict[str, list[str]] | None = None
        self._lowered: dict[str, list[str]] = {}
        self._text: str | None = None
        self._plain_body: bool | None = None
        self._raw_lower: bytes | None = None
        self.summary: mime.MessageSummary | None = None

    @property
    def headers(self) -> dict[str, list[str]]:
        """Wanted headers by lowercased name, values decoded and unfolded, in order."""
        if self._headers is None:
            data = self.data
            end = data.find(b"\r\n\r\n", 0, MAX_HEAD)
            if end < 0:
                end = data.find(b"\n\n", 0, MAX_HEAD)
            head = data[: end if end >= 0 else MAX_HEAD]
            found: dict[str, list[str]] = {}
            name: bytes | None = None
            parts: list[bytes] = []
            for line in head.split(b"\n"):
                if line[:1] in (b" ", b"\t"):
                    if name is not None:
                        parts.append(line)
                    continue
                if name is not None:
                    found.setdefault(name.decode(), []).append(_decode(b"".join(parts)))
                    name = None
                match = _HEADER_LINE.match(line)
                if match is not None:
                    key = match.group(1).lower()
                    if key in _WANTED:
                        name, parts = key, [match.group(2)]
            if name is not None:
                found.setdefault(name.decode(), []).append(_decode(b"".join(parts)))
            self._headers = found
        return self._headers

    def first(self, name: str) -> str | None:
        values = self.headers.get(name)
        return values[0] if values else None

    @property
    def text(self) -> str:
        """The plain text, lowercased (its whitespace as it is)."""
        if self._text is None:
            self._text = mime.extract_text(self.data).lower()
        return self._text

    def may_contain(self, word: bytes) -> bool:
        """False only when the plain text surely lacks ``word`` (ASCII): a message
        without encoded or HTML parts holds its text as it is, so the raw bytes tell."""
        if self._raw_lower is None:
            self._raw_lower = self.data.lower()
            raw = self._raw_lower
            self._plain_body = not any(mark in raw for mark in _NOT_AS_IS)
        return not self._plain_body or word in self._raw_lower

    @property
    def has_attachments(self) -> bool:
        if self.summary is None:
            self.summary = mime.summarise(self.data)
        return bool(self.summary.attachments)

    def lowered(self, key: str) -> list[str]:
        values = self._lowered.get(key)
        if values is None:
            values = self._lowered[key] = [v.lower() for v in _header_values(self, key)]
        return values


def _header_values(message: Message, key: str) -> list[str]:
    headers = message.headers
    if key == "to":
        values = [
            *headers.get("to", ()),
            *headers.get("cc", ()),
            *headers.get("delivered-to", ()),
        ]
        if message.delivered_to:
            values.append(message.delivered_to)
        return values
    if key == "from":
        return [*headers.get("from", ()), *headers.get("sender", ())]
    if key == "listId":
        return headers.get("list-id", [])
    return headers.get(key, [])


def matches(item: Filter, message: Message) -> bool:
    query = item.query
    size = query.get("size")
    if size:
        if size > 0 and message.size < size:
            return False
        if size < 0 and message.size > -size:
            return False
    for key, wanted in item.headers:
        if not any(wanted in value for value in message.lowered(key)):
            return False
    ha = query.get("ha")
    if ha is not None and message.has_attachments != ha:
        return False
    if item.text is None:
        return True
    if item.ascii_word is not None and not message.may_contain(item.ascii_word):
        return False
    return item.text.search(message.text) is not None


@dataclass(slots=True)
class Decision:
    """What to do with one copy of a message."""

    drop: bool = False
    seen: bool = False
    flagged: bool = False
    spam: bool = False
    folder_id: str | None = None  # None: INBOX
    targets: list[str] = field(default_factory=list)
    matched: list[str] = field(default_factory=list)

    @property
    def flags(self) -> tuple[str, ...]:
        return (("\\Seen",) if self.seen else ()) + (("\\Flagged",) if self.flagged else ())


def decide(rules: UserRules, message: Message) -> Decision:
    decision = Decision()
    if not rules.filters:
        return decision
    chosen: dict[str, Any] = {}
    targets: dict[str, None] = {}
    for item in rules.filters:
        if not matches(item, message):
            continue
        decision.matched.append(item.id)
        for key, value in item.action.items():
            if key == "targets":
                targets.update(dict.fromkeys(value or ()))
            elif key not in chosen:
                chosen[key] = value
    decision.drop = bool(chosen.get("delete"))
    decision.seen = bool(chosen.get("seen"))
    decision.flagged = bool(chosen.get("flag"))
    decision.spam = bool(chosen.get("spam"))
    if decision.spam:
        decision.folder_id = rules.junk_folder()
    else:
        mailbox = chosen.get("mailbox")
        # A folder deleted since the filter was made: the message stays in INBOX.
        decision.folder_id = mailbox if mailbox and mailbox in rules.folders else None
    # Spam is never forwarded.
    decision.targets = [] if decision.spam else list(targets)
    return decision
