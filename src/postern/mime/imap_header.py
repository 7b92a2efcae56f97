"""The header scanner IMAP's views share (:mod:`.imap_structure`, :mod:`.imap_envelope`):
Dovecot's rule for the end of the header (the first empty line, whatever comes
before it), every field with its offsets, unfolding and decoding for humans."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .parts import MAX_PARTS

ImapValue = None | int | bytes | tuple["ImapValue", ...]

#: A structured header is parsed up to this many bytes.
MAX_HEADER_VALUE = 256 * 1024
#: At most this many addresses per header in an ENVELOPE.
MAX_ADDRESSES = 5_000


# ---------------------------------------------------------------------------
# header scanning
# ---------------------------------------------------------------------------

_FIELD_NAME_RE = re.compile(rb"[!-9;-~]+[ \t]*:")


@dataclass(slots=True)
class _Field:
    name: bytes  # lower-cased
    line_start: int  # start of the field's first line
    value_start: int  # after the colon
    end: int  # after the last line's line ending


def _scan_header(raw: bytes, start: int, end: int) -> tuple[list[_Field], int]:
    """Fields of the header at raw[start:end] and where the body starts.

    The header ends after the first empty line (or at ``end``); a line that
    is neither a field nor a continuation belongs to the header but to no
    field, as Dovecot does it.
    """
    fields: list[_Field] = []
    pos = start
    find = raw.find
    current: _Field | None = None
    while pos < end:
        nl = find(b"\n", pos, end)
        line_end = end if nl < 0 else nl + 1
        content_end = nl if nl >= 0 else end
        if content_end > pos and raw[content_end - 1] == 13:
            content_end -= 1
        if content_end == pos and nl >= 0:
            return fields, line_end
        first = raw[pos]
        if (first == 32 or first == 9) and current is not None:
            current.end = line_end
        else:
            m = _FIELD_NAME_RE.match(raw, pos, content_end)
            if m is None:
                current = None
            else:
                name = raw[pos : m.end() - 1].rstrip(b" \t").lower()
                current = _Field(name, pos, m.end(), line_end)
                if len(fields) < MAX_PARTS:
                    fields.append(current)
        pos = line_end
    return fields, end


def _field_value(raw: bytes, f: _Field) -> bytes:
    return raw[f.value_start : min(f.end, f.value_start + MAX_HEADER_VALUE)]


def _first(raw: bytes, fields: list[_Field], name: bytes) -> bytes | None:
    for f in fields:
        if f.name == name:
            return _field_value(raw, f)
    return None


_FOLD_RE = re.compile(rb"\r?\n")
_WS_RUN_RE = re.compile(rb"[ \t\r\n]+")


def _unfolded(value: bytes) -> bytes:
    return _FOLD_RE.sub(b"", value).strip(b" \t")


def _for_humans(value: bytes) -> bytes:
    """Unfold and collapse white space, drop control characters."""
    value = _WS_RUN_RE.sub(b" ", value).strip(b" ")
    return bytes(b for b in value if b >= 32 and b != 127)


def _as_bytes(raw: object) -> bytes:
    if isinstance(raw, bytes):
        return raw
    try:
        return bytes(raw)  # type: ignore[call-overload]
    except Exception:
        return b""
