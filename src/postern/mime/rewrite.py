"""Header rewriting for forwarded alias mail (pure functions over bytes).

A forwarded message keeps the original bytes: the body, and every header field that
is not rewritten, byte for byte (folding and 8-bit text included). Only whole fields
are removed, replaced or added; nothing is re-serialised. None of the functions
raises for any ``bytes`` input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from . import header_writing
from .addresses import _parse_addresses
from .charsets import decode_words

# Fields that name the path a message took to us or that forwarding breaks: an
# original DKIM signature or ARC seal does not verify once From, To and Cc change;
# Return-Path, Delivered-To and X-Original-To are the receiving side's own; Sender and
# receipt requests would lead replies around the alias.
PATH_FIELDS = frozenset(
    {
        "dkim-signature",
        "arc-seal",
        "arc-message-signature",
        "arc-authentication-results",
        "return-path",
        "delivered-to",
        "x-original-to",
        "sender",
        "disposition-notification-to",
        "return-receipt-to",
    }
)

SENDER_FORMATS = ("AT", "A", "NAME_ONLY", "AT_ONLY", "NO_NAME")
# Display names are shortened to this many characters.
MAX_NAME = 200
# Header lines longer than this are folded before the limit of RFC 5322 (998).
_NAME_RE = re.compile(rb"^([!-9;-~]+)[ \t]*:")  # header_fields.FIELD_NAME, with the name as a group


@dataclass(frozen=True, slots=True)
class Field:
    name: str  # lowercase
    raw: bytes  # the whole field, its line breaks included


@dataclass(frozen=True, slots=True)
class Split:
    fields: list[Field]
    separator: bytes  # the empty line (b"\r\n", b"\n" or b"" when there is no body)
    body: bytes


def split(raw: bytes) -> Split:
    """The header fields (continuation lines kept with their field), the blank line
    and the body. The header section ends at the first empty line, or at the first
    line that is neither a field nor a continuation (which then starts the body, as
    it does for every mail reader)."""
    fields: list[Field] = []
    pos = 0
    size = len(raw)
    while pos < size:
        nl = raw.find(b"\n", pos)
        end = size if nl < 0 else nl + 1
        line = raw[pos:end]
        if line in (b"\r\n", b"\n"):
            return Split(fields, line, raw[end:])
        if line[:1] in (b" ", b"\t") and fields:
            last = fields[-1]
            fields[-1] = Field(last.name, last.raw + line)
        else:
            match = _NAME_RE.match(line)
            if match is None:
                return Split(fields, b"", raw[pos:])
            fields.append(Field(match.group(1).decode("ascii").lower(), line))
        pos = end
    return Split(fields, b"", b"")


def value_of(field: Field) -> str:
    """A field's value as text: unfolded, 8-bit read as UTF-8 (else Latin-1)."""
    raw = field.raw.split(b":", 1)[1] if b":" in field.raw else b""
    raw = raw.replace(b"\r", b"").replace(b"\n", b"").strip(b" \t")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def values(parsed: Split, name: str) -> list[str]:
    return [value_of(f) for f in parsed.fields if f.name == name]


def addresses(value: str) -> list[tuple[str, str]]:
    """(display name, address) of each mailbox of an address list, leniently; only
    entries with an address that has an @ (never raises)."""
    try:
        found = _parse_addresses(value)
    except Exception:  # pragma: no cover - the parser is total
        return []
    out = []
    for info in found:
        address = (info.address or "").strip()
        if address.count("@") >= 1 and not any(c.isspace() for c in address):
            out.append((_clean_name(info.name or ""), address))
    return out


def _clean_name(name: str) -> str:
    try:
        name = decode_words(name)
    except Exception:  # pragma: no cover - decode_words is total
        pass
    name = "".join(c if c.isprintable() else " " for c in name)
    return " ".join(name.split())[:MAX_NAME]


def mailbox(name: str, address: str) -> str:
    """``"Name" <address>``: an ASCII name quoted, any other RFC 2047-encoded
    (``header_writing.mailbox``)."""
    return header_writing.mailbox(name, address, always_quote=True)


def sender_label(sender_format: str, name: str, email: str) -> str | None:
    """The display name the reverse alias gets in the user's sender format (None: a
    bare address)."""
    at, paren = email.replace("@", " at "), email.replace("@", "(a)")
    if sender_format == "NO_NAME":
        return None
    if sender_format == "NAME_ONLY":
        return name or at
    if sender_format == "AT_ONLY":
        return at
    if sender_format == "A":
        return f"{name} - {paren}" if name else paren
    return f"{name} - {at}" if name else at  # AT, and any unknown format


def sender_value(sender_format: str, name: str, email: str, reverse_alias: str) -> str:
    """The From (or Reply-To) value a forward shows: the reverse alias, labelled."""
    name = header_writing.clean(name)[:MAX_NAME]
    email = header_writing.clean(email)
    label = sender_label(sender_format, name, email)
    return mailbox(label, reverse_alias) if label else reverse_alias


def header_line(name: str, value: str) -> bytes:
    """One field, CRLF-terminated and folded (``header_writing.field``): no line
    break in ``value`` gets through."""
    return header_writing.field(name, value)


def rewrite(
    raw: bytes,
    *,
    remove: Iterable[str] = PATH_FIELDS,
    replace: Mapping[str, str | None] | None = None,
    prepend: Sequence[tuple[str, str]] = (),
) -> bytes:
    """``raw`` with the fields named in ``remove`` taken out, each field named in
    ``replace`` (lowercase name -> value) replaced in place by one field with the new
    value (its other occurrences removed; a value of None removes them all; a name
    not present is added at the end of the header), and ``prepend``'s fields added
    on top. Every other byte is kept as it was."""
    replace = dict(replace or {})
    removed = {name.lower() for name in remove}
    parsed = split(raw)
    out: list[bytes] = [header_line(name, value) for name, value in prepend]
    done: set[str] = set()
    for field in parsed.fields:
        if field.name in replace:
            if field.name not in done and replace[field.name] is not None:
                out.append(header_line(_display_name(field), replace[field.name] or ""))
            done.add(field.name)
            continue
        if field.name in removed:
            continue
        raw_field = field.raw
        if not raw_field.endswith(b"\n"):
            raw_field += b"\r\n"  # the last field of a message without a body
        out.append(raw_field)
    for name, value in replace.items():
        if name not in done and value is not None:
            out.append(header_line(_canonical(name), value))
    separator = parsed.separator or b"\r\n"
    return b"".join(out) + separator + parsed.body


def _display_name(field: Field) -> str:
    match = _NAME_RE.match(field.raw)
    return match.group(1).decode("ascii") if match else _canonical(field.name)


def _canonical(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-"))


def count(parsed: Split, name: str) -> int:
    return sum(1 for f in parsed.fields if f.name == name)
