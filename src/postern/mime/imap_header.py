"""The header scanner IMAP's views share (:mod:`.imap_structure`, :mod:`.imap_envelope`):
Dovecot's rule for the end of the header (the first empty line, whatever comes
before it), every field with its offsets, unfolding and decoding for humans."""

from __future__ import annotations

import re

from .header_fields import FIELD_NAME, HeaderField, scan
from .parts import MAX_PARTS

ImapValue = None | int | bytes | tuple["ImapValue", ...]

#: A structured header is parsed up to this many bytes.
MAX_HEADER_VALUE = 256 * 1024
#: At most this many addresses per header in an ENVELOPE.
MAX_ADDRESSES = 5_000


# ---------------------------------------------------------------------------
# header scanning
# ---------------------------------------------------------------------------

# The scanner is the program's one header scanner (``header_fields``): IMAP finds the
# same fields as the submission check, DMARC and the APIs.
_FIELD_NAME_RE = FIELD_NAME
_Field = HeaderField


def _scan_header(raw: bytes, start: int, end: int) -> tuple[list[_Field], int]:
    """Fields of the header at raw[start:end] and where the body starts.

    The header ends after the first empty line (or at ``end``); a line that
    is neither a field nor a continuation belongs to the header but to no
    field, as Dovecot does it.
    """
    return scan(raw, start, end, MAX_PARTS)


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
