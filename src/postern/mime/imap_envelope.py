"""ENVELOPE (RFC 3501 §7.4.2): the addresses of From, Sender, Reply-To, To, Cc and Bcc
parsed as RFC 5322 address lists (groups, comments, obsolete routes), and the other
fields as sent. Also the address lists SEARCH and SORT compare."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .imap_header import (
    MAX_ADDRESSES,
    ImapValue,
    _as_bytes,
    _Field,
    _first,
    _for_humans,
    _scan_header,
    _unfolded,
)

# ---------------------------------------------------------------------------
# ENVELOPE
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Address:
    """An ENVELOPE address; a group is framed by (None, None, name, None)
    and (None, None, None, None), as RFC 3501 writes it."""

    name: bytes | None
    adl: bytes | None
    mailbox: bytes | None
    host: bytes | None

    def to_imap(self) -> ImapValue:
        return (self.name, self.adl, self.mailbox, self.host)


@dataclass(frozen=True, slots=True)
class Envelope:
    date: bytes | None = None
    subject: bytes | None = None
    from_: tuple[Address, ...] | None = None
    sender: tuple[Address, ...] | None = None
    reply_to: tuple[Address, ...] | None = None
    to: tuple[Address, ...] | None = None
    cc: tuple[Address, ...] | None = None
    bcc: tuple[Address, ...] | None = None
    in_reply_to: bytes | None = None
    message_id: bytes | None = None

    def to_imap(self) -> ImapValue:
        def addresses(value: tuple[Address, ...] | None) -> ImapValue:
            return None if not value else tuple(a.to_imap() for a in value)

        return (
            self.date,
            self.subject,
            addresses(self.from_),
            addresses(self.sender),
            addresses(self.reply_to),
            addresses(self.to),
            addresses(self.cc),
            addresses(self.bcc),
            self.in_reply_to,
            self.message_id,
        )


_ADDRESS_TOKEN_RE = re.compile(
    rb'"(?:[^"\\]|\\.)*"?'  # quoted string (maybe unterminated)
    rb"|\[(?:[^\[\]\\]|\\.)*\]?"  # domain literal
    rb"|[<>,:;@]"  # specials that matter
    rb"|[ \t\r\n]+"  # white space
    rb"|\("  # comment start, handled separately
    rb'|[^"\[\]<>,:;@ \t\r\n()\\]+'  # atom (dots included: obs-phrase)
    rb"|.",
    re.DOTALL,
)


def _tokens(value: bytes) -> list[tuple[str, bytes]]:
    """(kind, text) tokens: word, quoted, special, comment, space."""
    out: list[tuple[str, bytes]] = []
    pos = 0
    n = len(value)
    while pos < n:
        if value[pos] == 0x28:  # '(' comment, nested, with escapes
            depth = 0
            i = pos
            while i < n:
                ch = value[i]
                if ch == 0x5C:
                    i += 2
                    continue
                if ch == 0x28:
                    depth += 1
                elif ch == 0x29:
                    depth -= 1
                    if depth == 0:
                        break
                i += 1
            out.append(("comment", value[pos + 1 : min(i, n)]))
            pos = i + 1
            continue
        m = _ADDRESS_TOKEN_RE.match(value, pos)
        assert m is not None  # the last alternative matches any byte
        text = m.group()
        pos = m.end()
        first = text[0]
        if first in b" \t\r\n":
            out.append(("space", b" "))
        elif first == 0x22:
            out.append(("quoted", text))
        elif text in (b"<", b">", b",", b":", b";", b"@"):
            out.append(("special", text))
        else:
            out.append(("word", text))
    return out


def _unquote(text: bytes) -> bytes:
    if text.startswith(b'"'):
        text = text[1:]
        if text.endswith(b'"'):
            text = text[:-1]
    return re.sub(rb"\\(.)", rb"\1", text, flags=re.DOTALL)


def _phrase(tokens: list[tuple[str, bytes]]) -> bytes | None:
    words = [_unquote(t) if kind == "quoted" else t for kind, t in tokens if kind in ("word", "quoted")]
    text = _for_humans(b" ".join(words))
    return text or None


def _addr_spec(
    tokens: list[tuple[str, bytes]],
) -> tuple[bytes | None, bytes | None, bytes | None]:
    """(adl, mailbox, host) from the tokens of an addr-spec (maybe with route)."""
    adl = None
    colon = next((i for i, (k, t) in enumerate(tokens) if t == b":" and k == "special"), None)
    if colon is not None and tokens[0][1] == b"@":
        adl = b"".join(t for k, t in tokens[:colon] if k != "space") or None
        tokens = tokens[colon + 1 :]
    at = None
    for i in range(len(tokens) - 1, -1, -1):
        if tokens[i] == ("special", b"@"):
            at = i
            break
    local_tokens = tokens if at is None else tokens[:at]
    domain_tokens = [] if at is None else tokens[at + 1 :]
    local = b"".join(t for k, t in local_tokens if k in ("word", "quoted", "special"))
    domain = b"".join(t for k, t in domain_tokens if k in ("word", "quoted", "special"))
    return adl, local or b"MISSING_MAILBOX", domain or b"MISSING_DOMAIN"


def _mailbox(tokens: list[tuple[str, bytes]]) -> Address | None:
    meaningful = [t for t in tokens if t[0] != "space"]
    if not meaningful:
        return None
    if not [t for t in meaningful if t[0] != "comment"]:
        return None
    angle = next((i for i, t in enumerate(tokens) if t == ("special", b"<")), None)
    if angle is not None:
        close = next(
            (i for i in range(angle + 1, len(tokens)) if tokens[i] == ("special", b">")),
            len(tokens),
        )
        name = _phrase(tokens[:angle])
        inner = [t for t in tokens[angle + 1 : close] if t[0] != "comment"]
        if not [t for t in inner if t[0] != "space"]:
            return Address(name, None, b"MISSING_MAILBOX", b"MISSING_DOMAIN")
        adl, local, host = _addr_spec(inner)
        return Address(name, adl, local, host)
    comments = [t for k, t in tokens if k == "comment"]
    spec = [t for t in tokens if t[0] != "comment"]
    adl, local, host = _addr_spec(spec)
    name = _for_humans(comments[-1]) if comments else None
    return Address(name or None, adl, local, host)


def _address_list(value: bytes | None) -> tuple[Address, ...] | None:
    if value is None:
        return None
    tokens = _tokens(value)
    result: list[Address] = []
    current: list[tuple[str, bytes]] = []
    in_group = False
    in_angle = False

    def flush() -> None:
        address = _mailbox(current)
        if address is not None:
            result.append(address)
        current.clear()

    for kind, text in tokens:
        if len(result) >= MAX_ADDRESSES:
            break
        if kind == "special":
            if text == b"<":
                in_angle = True
            elif text == b">":
                in_angle = False
            elif not in_angle and text == b",":
                flush()
                continue
            elif not in_angle and text == b":" and not in_group and not any(t == b"@" for _, t in current):
                result.append(Address(None, None, _phrase(current) or b"", None))
                current.clear()
                in_group = True
                continue
            elif not in_angle and text == b";" and in_group:
                flush()
                result.append(Address(None, None, None, None))
                in_group = False
                continue
        current.append((kind, text))
    flush()
    if in_group:
        result.append(Address(None, None, None, None))
    return tuple(result) or None


def _nonempty(value: bytes | None, humans: bool = False) -> bytes | None:
    if value is None:
        return None
    value = _for_humans(value) if humans else _unfolded(value)
    return value or None


def _envelope_of(raw: bytes, fields: list[_Field]) -> Envelope:
    def header(name: bytes) -> bytes | None:
        return _first(raw, fields, name)

    def addresses(name: bytes) -> tuple[Address, ...] | None:
        value = header(name)
        return None if value is None else _address_list(_unfolded(value))

    from_ = addresses(b"from")
    return Envelope(
        date=_nonempty(header(b"date")),
        subject=_nonempty(header(b"subject"), humans=True),
        from_=from_,
        sender=addresses(b"sender") or from_,
        reply_to=addresses(b"reply-to") or from_,
        to=addresses(b"to"),
        cc=addresses(b"cc"),
        bcc=addresses(b"bcc"),
        in_reply_to=_nonempty(header(b"in-reply-to")),
        message_id=_nonempty(header(b"message-id")),
    )


def envelope(raw: bytes) -> Envelope:
    """The ENVELOPE of a message (never raises)."""
    raw = _as_bytes(raw)
    try:
        fields, _ = _scan_header(raw, 0, len(raw))
        return _envelope_of(raw, fields)
    except Exception:  # pragma: no cover - last-resort net; fuzzed without it
        return Envelope()


def address_list(value: bytes) -> tuple[Address, ...]:
    """The addresses of a header value (groups framed as in ENVELOPE); () for none."""
    return _address_list(_unfolded(value)) or ()
