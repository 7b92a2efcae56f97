"""Building IMAP response bytes (pure).

Strings are sent quoted when that is safe and short, else as literals: a
literal is chosen for CR, LF, NUL, 8-bit bytes (unless the client enabled
UTF8=ACCEPT), ``"`` or ``\\`` (which could be escaped, but some clients get
escapes wrong) and for anything longer than :data:`MAX_QUOTED`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from postern.mime.imap_structure import Envelope, ImapValue

from .thread import ThreadNode
from .utf7 import encode_modified_utf7

__all__ = [
    "Atom",
    "MAX_QUOTED",
    "astring",
    "continuation",
    "encode_envelope",
    "encode_threads",
    "encode_value",
    "flag_list",
    "internaldate",
    "literal",
    "mailbox",
    "nstring",
    "number",
    "paren_list",
    "response_code",
    "sequence_set",
    "status_response",
    "string",
]

#: Longer strings are sent as literals.
MAX_QUOTED = 1024

_NEEDS_LITERAL_RE = re.compile(rb'[\x00\r\n"\\]')
_NEEDS_LITERAL_8BIT_RE = re.compile(rb'[\x00\r\n"\\\x80-\xff]')
_ATOM_RE = re.compile(rb"[!#$&'+\-.0-9:-Z^-z|}~\[]+")  # ATOM-CHAR minus ']' and '*%'
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class Atom(bytes):
    """Bytes that :func:`encode_value` writes as they are (NIL-like atoms, flags)."""


def _bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def literal(data: bytes, *, binary: bool = False) -> bytes:
    """``{n}CRLF data``, or literal8 ``~{n}CRLF data`` for BINARY."""
    prefix = b"~{" if binary else b"{"
    return prefix + str(len(data)).encode() + b"}\r\n" + data


def string(value: str | bytes, *, utf8: bool = False) -> bytes:
    """A quoted string, or a literal when quoting would be unsafe or long."""
    data = _bytes(value)
    pattern = _NEEDS_LITERAL_RE if utf8 else _NEEDS_LITERAL_8BIT_RE
    if len(data) > MAX_QUOTED or pattern.search(data):
        return literal(data)
    return b'"' + data + b'"'


def nstring(value: str | bytes | None, *, utf8: bool = False) -> bytes:
    return b"NIL" if value is None else string(value, utf8=utf8)


def astring(value: str | bytes, *, utf8: bool = False) -> bytes:
    """An atom when the value is a plain atom (and not NIL), else a string."""
    data = _bytes(value)
    if data and _ATOM_RE.fullmatch(data) and data.upper() != b"NIL":
        return data
    return string(data, utf8=utf8)


def number(value: int) -> bytes:
    return str(int(value)).encode()


def mailbox(name: str, *, utf8: bool = False) -> bytes:
    """A mailbox name as a (quoted) string: modified UTF-7 unless UTF8=ACCEPT."""
    data = name.encode("utf-8", "replace") if utf8 else encode_modified_utf7(name)
    return string(data, utf8=utf8)


def paren_list(items: Iterable[bytes]) -> bytes:
    return b"(" + b" ".join(items) + b")"


def flag_list(flags: Iterable[str]) -> bytes:
    """``(\\Seen $Forwarded)``: flags are atoms and are written as they are."""
    return paren_list(f.encode("utf-8", "replace") for f in flags)


def internaldate(value: datetime) -> bytes:
    """``"17-Jul-1996 02:44:25 -0700"`` (naive datetimes are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    offset = value.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    text = (
        f'"{value.day:02d}-{_MONTHS[value.month - 1]}-{value.year:04d} '
        f'{value.hour:02d}:{value.minute:02d}:{value.second:02d} {sign}{minutes // 60:02d}{minutes % 60:02d}"'
    )
    return text.encode("ascii")


def encode_value(value: ImapValue | Atom | str, *, utf8: bool = False) -> bytes:
    """A nested value: None is NIL, int a number, bytes/str a string,
    a tuple or list a parenthesised list, :class:`Atom` itself."""
    if value is None:
        return b"NIL"
    if isinstance(value, Atom):
        return bytes(value)
    if isinstance(value, bool):
        raise TypeError("booleans have no IMAP form")
    if isinstance(value, int):
        return number(value)
    if isinstance(value, (bytes, str)):
        return string(value, utf8=utf8)
    return b"(" + b" ".join(encode_value(v, utf8=utf8) for v in value) + b")"


def encode_envelope(envelope: Envelope, *, utf8: bool = False) -> bytes:
    return encode_value(envelope.to_imap(), utf8=utf8)


def sequence_set(numbers: Iterable[int]) -> bytes:
    """Sorted, de-duplicated numbers as a compact set: ``1:3,5,7:9``."""
    ordered = sorted(set(numbers))
    pieces: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        pieces.append(str(ordered[i]) if i == j else f"{ordered[i]}:{ordered[j]}")
        i = j + 1
    return ",".join(pieces).encode()


def response_code(name: str, *arguments: bytes) -> bytes:
    """``[NAME arg ...]``, e.g. ``response_code("UIDNEXT", b"42")``."""
    return b"[" + b" ".join((name.encode("ascii"), *arguments)) + b"]"


def status_response(tag: str | None, status: str, text: str, code: bytes | None = None) -> bytes:
    """``tag OK [CODE] text CRLF`` (``*`` when ``tag`` is None)."""
    parts = [(tag or "*").encode("ascii"), status.encode("ascii")]
    if code:
        parts.append(code)
    parts.append(text.replace("\r", " ").replace("\n", " ").encode("utf-8", "replace"))
    return b" ".join(parts) + b"\r\n"


def continuation(text: str | bytes = b"Ready") -> bytes:
    return b"+ " + _bytes(text) + b"\r\n"


def encode_threads(threads: Sequence[ThreadNode]) -> bytes:
    """THREAD response data (RFC 5256 §4): ``(1 2)(3 (4)(5))``."""
    return b"".join(_thread(node) for node in threads)


def _thread(node: ThreadNode) -> bytes:
    # A chain of single children is written flat; several children each
    # get their own parenthesised sub-thread.
    members: list[bytes] = []
    current: ThreadNode | None = node
    while current is not None:
        if current.message is not None:
            members.append(number(current.message))
        children = current.children
        if len(children) == 1 and current.message is not None:
            current = children[0]
            continue
        if children:
            members.append(b"".join(_thread(child) for child in children))
        current = None
    return b"(" + b" ".join(members) + b")"
