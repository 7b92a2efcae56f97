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
_SPACES = re.compile(r"\s+")
_LIST_ID = re.compile(r"<([^>]+)")
MAX_HEAD = 256 * 1024


@dataclass(frozen=True, slots=True)
class Filter:
    id: str
    query: dict[str, Any]
    action: dict[str, Any]


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
        self._text: str | None = None
        self._attachments: bool | None = None

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
        if self._text is None:
            self._text = _SPACES.sub(" ", mime.extract_content(self.data).text).lower()
        return self._text

    @property
    def has_attachments(self) -> bool:
        if self._attachments is None:
            self._attachments = bool(mime.summarise(self.data).attachments)
        return self._attachments


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


def matches(query: dict[str, Any], message: Message) -> bool:
    size = query.get("size")
    if size:
        if size > 0 and message.size < size:
            return False
        if size < 0 and message.size > -size:
            return False
    for key in ("from", "to", "subject", "listId"):
        wanted = query.get(key)
        if not wanted:
            continue
        wanted = wanted.lower()
        if key == "listId" and "<" in wanted:
            inner = _LIST_ID.search(wanted)
            if inner and inner.group(1).strip():
                wanted = inner.group(1).strip()
        if not any(wanted in value.lower() for value in _header_values(message, key)):
            return False
    ha = query.get("ha")
    if ha is not None and message.has_attachments != ha:
        return False
    text = query.get("text")
    return not (text and text.lower() not in message.text)


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
        return (("\\Seen",) if self.seen else ()) + (
            ("\\Flagged",) if self.flagged else ()
        )


def decide(rules: UserRules, message: Message) -> Decision:
    decision = Decision()
    if not rules.filters:
        return decision
    chosen: dict[str, Any] = {}
    targets: dict[str, None] = {}
    for item in rules.filters:
        if not matches(item.query, message):
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
