"""Header/structure summary of a raw RFC 5322 message: from, to, cc, subject, date,
message ids, the intro (the first words of the text) and the attachments.

Everything in this module is a pure function over the raw message bytes, built from
the pieces beside it: :mod:`.parts` (the MIME structure as byte ranges of the
original), :mod:`.charsets` (bytes to text), :mod:`.addresses`,
:mod:`.message_ids`, :mod:`.dates` and :mod:`.body_text`.

Robustness rules: the public functions never raise for any ``bytes`` input.
Hostile input is bounded by :data:`~.parts.MAX_DEPTH` (multipart nesting),
:data:`~.parts.MAX_PARTS` (number of MIME parts) and linear-time scanning everywhere
(no regular expression here can backtrack super-linearly).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime

from .addresses import AddressInfo, _address_header
from .body_text import _INVISIBLE_TABLE, _html_to_text, _is_flowed, _normalise_text, _part_charset, _plain_from_text
from .charsets import _collapse, _decode_bytes, _decode_prefix, _header_text
from .dates import _parse_date
from .message_ids import _parse_msgids
from .parts import (
    AttachmentInfo,
    _as_bytes,
    _attachment_info,
    _attachment_leaves,
    _body_segments,
    _leaves,
    _parse_header_block,
    _parse_message,
    _Part,
)

__all__ = [
    "AddressInfo",
    "AttachmentInfo",
    "MessageSummary",
    "normalise_subject",
    "summarise",
]


#: Length of :attr:`MessageSummary.intro` before the ellipsis.
INTRO_LENGTH = 128


# ---------------------------------------------------------------------------
# public data types
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageSummary:
    from_: AddressInfo | None
    sender: AddressInfo | None
    reply_to: tuple[AddressInfo, ...]
    to: tuple[AddressInfo, ...]
    cc: tuple[AddressInfo, ...]
    bcc: tuple[AddressInfo, ...]
    subject: str
    message_id: str | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    date: datetime | None
    intro: str
    attachments: tuple[AttachmentInfo, ...]
    thread_subject: str
    is_reply: bool
    header_size: int


# ---------------------------------------------------------------------------
# subjects
# ---------------------------------------------------------------------------

_REPLY_WORDS = (
    r"re|fwd?|aw|sv|vs|antw|wg|tr|rv|odp|enc|res|ref|rif|"
    r"回复|回覆|答复|答覆|转发|轉寄|轉發"
)
_PREFIX_RE = re.compile(r"(?:\s*(?:(?:" + _REPLY_WORDS + r")\s?(?:\[\d{1,6}\]|\(\d{1,6}\))?\s?[:：]|\[[^\[\]]{0,100}\]))+")
_REPLY_PREFIX_RE = re.compile(r"(?:^|[\s\]])(?:" + _REPLY_WORDS + r")\s?(?:\[\d{1,6}\]|\(\d{1,6}\))?\s?[:：]")
_FWD_SUFFIX_RE = re.compile(r"(?:\s*\(fwd\))+\s*$")


def _normalise_subject(subject: str) -> tuple[str, bool]:
    s = _collapse(unicodedata.normalize("NFC", subject).casefold())
    reply = False
    m = _PREFIX_RE.match(s)
    if m is not None and m.end():
        if _REPLY_PREFIX_RE.search(m.group(0)):
            reply = True
        s = s[m.end() :]
    if s.endswith(")"):
        m2 = _FWD_SUFFIX_RE.search(s)
        if m2 is not None:
            reply = True
            s = s[: m2.start()]
    return s.strip(), reply


def normalise_subject(subject: str) -> str:
    """Thread subject: casefolded, whitespace collapsed, reply/forward
    prefixes (``Re:``, ``Fwd:``, ``Fw:``, ``Aw:``, ``Sv:``, ``Vs:``,
    ``Antw:``, ``Re[2]:``, ...), ``[list-tag]`` prefixes and trailing
    ``(fwd)`` removed."""
    try:
        return _normalise_subject(subject)[0]
    except Exception:  # pragma: no cover - defensive
        return _collapse(str(subject)).casefold()


# ---------------------------------------------------------------------------
# intro
# ---------------------------------------------------------------------------

_INTRO_PREFIX_BYTES = 8192
# The intro never looks further into a part than this (bounds the work on
# hostile input: e.g. megabytes of markup without any text).
_INTRO_MAX_PLAIN = 4 * 1024 * 1024
_INTRO_MAX_HTML = 512 * 1024


def _collapsed_head(text: str, normalise: bool = False) -> str:
    """``_collapse(text.translate(_INVISIBLE_TABLE))`` (of ``_normalise_text(text)``
    first if ``normalise``), or a prefix of it longer than INTRO_LENGTH, which is
    all the intro looks at.

    Every step works character by character (the one pair, CR LF, becomes a line
    break either way) and only merges whitespace, so doing them on a prefix of
    ``text`` gives a prefix of the whole result: a window of a few times
    INTRO_LENGTH usually suffices, where the whole would rewrite, split and join
    every word of up to 8 KB of text."""
    window = 4 * INTRO_LENGTH
    while window < len(text):
        head = text[:window]
        head = _collapse((_normalise_text(head) if normalise else head).translate(_INVISIBLE_TABLE))
        if len(head) > INTRO_LENGTH:
            return head
        window *= 4
    return _collapse((_normalise_text(text) if normalise else text).translate(_INVISIBLE_TABLE))


def _make_intro(text: str) -> str:
    s = _collapse(text.translate(_INVISIBLE_TABLE))
    if len(s) <= INTRO_LENGTH:
        return s
    cut = s[:INTRO_LENGTH]
    space = cut.rfind(" ")
    if space >= INTRO_LENGTH - 24:
        cut = cut[:space]
    return cut.rstrip() + "…"


def _intro(raw: bytes, parts: list[_Part]) -> str:
    collected: list[str] = []
    length = 0
    for part in parts:
        html = part.ctype == "text/html"
        limit = _INTRO_MAX_HTML if html else _INTRO_PREFIX_BYTES
        while True:
            data, complete = part.decoded_prefix(raw, limit)
            charset = _part_charset(part, data)
            text = _decode_bytes(data, charset) if complete else _decode_prefix(data, charset)
            if html:
                piece = _collapsed_head(_html_to_text(_plain_from_text(part, text), limit=4 * INTRO_LENGTH))
            elif _is_flowed(part):  # lines are joined: the whole text first
                piece = _collapsed_head(_plain_from_text(part, text))
            else:  # _plain_from_text is _normalise_text here
                piece = _collapsed_head(text, normalise=True)
            if complete or html or len(piece) > INTRO_LENGTH or limit >= _INTRO_MAX_PLAIN:
                break
            limit = min(limit * 8, _INTRO_MAX_PLAIN)
        if piece:
            collected.append(piece)
            length += len(piece) + 1
        if length > INTRO_LENGTH:
            break
    return _make_intro(" ".join(collected))


# ---------------------------------------------------------------------------
# summarise
# ---------------------------------------------------------------------------


def _first(headers: dict[bytes, list[bytes]], name: bytes) -> bytes | None:
    values = headers.get(name)
    return values[0] if values else None


def _summarise(raw: bytes) -> MessageSummary:
    parsed = _parse_message(raw)
    h = parsed.headers

    from_list = _address_header(h, b"from")
    sender_list = _address_header(h, b"sender")

    subject_raw = _first(h, b"subject")
    subject = _header_text(subject_raw) if subject_raw is not None else ""

    mid_raw = _first(h, b"message-id")
    mids = _parse_msgids(mid_raw) if mid_raw is not None else []
    irt_raw = _first(h, b"in-reply-to")
    in_reply_to = tuple(_parse_msgids(irt_raw)) if irt_raw is not None else ()
    refs_raw = _first(h, b"references")
    references = tuple(_parse_msgids(refs_raw)) if refs_raw is not None else ()

    date_raw = _first(h, b"date")
    date = _parse_date(date_raw) if date_raw is not None else None

    leaves = _leaves(parsed.root)
    attachments = tuple(_attachment_info(att_id, leaf, leaf.part.decoded_size(raw)) for att_id, leaf in _attachment_leaves(leaves))
    body_ids = {id(leaf.part) for leaf in leaves if leaf.is_body}
    text_parts, html_parts = _body_segments(parsed.root, body_ids)
    intro = _intro(raw, text_parts)
    if not intro and html_parts != text_parts:
        # e.g. an empty text/plain alternative next to the real HTML body
        intro = _intro(raw, html_parts)

    thread_subject, prefixed = _normalise_subject(subject)
    return MessageSummary(
        from_=from_list[0] if from_list else None,
        sender=sender_list[0] if sender_list else None,
        reply_to=tuple(_address_header(h, b"reply-to")),
        to=tuple(_address_header(h, b"to")),
        cc=tuple(_address_header(h, b"cc")),
        bcc=tuple(_address_header(h, b"bcc")),
        subject=subject,
        message_id=mids[0] if mids else None,
        in_reply_to=in_reply_to,
        references=references,
        date=date,
        intro=intro,
        attachments=attachments,
        thread_subject=thread_subject,
        is_reply=prefixed or bool(in_reply_to) or bool(references),
        header_size=parsed.header_size,
    )


def _fallback_summary(raw: bytes) -> MessageSummary:
    header_size = len(raw)
    try:
        _h, header_size = _parse_header_block(raw, 0, len(raw), frozenset())
    except Exception:  # pragma: no cover - defensive
        pass
    return MessageSummary(
        from_=None,
        sender=None,
        reply_to=(),
        to=(),
        cc=(),
        bcc=(),
        subject="",
        message_id=None,
        in_reply_to=(),
        references=(),
        date=None,
        intro="",
        attachments=(),
        thread_subject="",
        is_reply=False,
        header_size=header_size,
    )


def summarise(raw: bytes) -> MessageSummary:
    """Summary of a raw message; never raises for any bytes input."""
    data = _as_bytes(raw)
    try:
        return _summarise(data)
    except Exception:  # pragma: no cover - last-resort safety net
        return _fallback_summary(data)
