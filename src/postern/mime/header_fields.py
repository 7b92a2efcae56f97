"""Reading a header section: the one scanner of header fields that every part of
postern uses to find a field (pure functions over bytes; nothing here raises).

What is a field, once and for all:

* a field starts at a line that begins with a name (printable ASCII but the colon)
  followed by optional spaces or tabs and a colon: ``From:`` and the obsolete
  ``From :`` (RFC 5322 4.5.1, ``obs-optional``) are both a From field, as every mail
  reader takes them;
* a line that begins with a space or a tab continues the field before it;
* the header section ends at the first empty line (CRLF or bare LF); a line that is
  neither a field nor a continuation belongs to the header but to no field, as
  Dovecot reads it (so nothing after it can hide from a check).

The submission check (``mime.senders``), the reply checks, DMARC's RFC5322.From, the
IMAP ENVELOPE and header fetches, the summaries of the APIs and the header rewriting
all find their fields through ``FIELD_NAME`` and ``scan``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "FIELD_NAME",
    "HeaderField",
    "field_name",
    "fields",
    "scan",
    "unfold",
    "values",
]

#: A field name and its colon at the start of a line (obsolete WSP before the colon).
FIELD_NAME = re.compile(rb"[!-9;-~]+[ \t]*:")
_FOLD = re.compile(rb"\r?\n")


@dataclass(slots=True)
class HeaderField:
    name: bytes  # lower-cased, without the white space before the colon
    line_start: int  # start of the field's first line
    value_start: int  # after the colon
    end: int  # after the last line's line ending


def field_name(line: bytes) -> bytes | None:
    """The lower-cased name of the field ``line`` starts, None when it starts none."""
    match = FIELD_NAME.match(line)
    if match is None:
        return None
    return line[: match.end() - 1].rstrip(b" \t").lower()


def scan(raw: bytes, start: int = 0, end: int | None = None, limit: int | None = None) -> tuple[list[HeaderField], int]:
    """The fields of the header section at ``raw[start:end]`` (at most ``limit`` of
    them) and the offset where the body starts (after the empty line, or ``end``)."""
    end = len(raw) if end is None else end
    found: list[HeaderField] = []
    pos = start
    find = raw.find
    current: HeaderField | None = None
    while pos < end:
        nl = find(b"\n", pos, end)
        line_end = end if nl < 0 else nl + 1
        content_end = nl if nl >= 0 else end
        if content_end > pos and raw[content_end - 1] == 13:
            content_end -= 1
        if content_end == pos and nl >= 0:
            return found, line_end
        first = raw[pos]
        if (first == 32 or first == 9) and current is not None:
            current.end = line_end
        else:
            match = FIELD_NAME.match(raw, pos, content_end)
            if match is None:
                current = None
            else:
                current = HeaderField(
                    raw[pos : match.end() - 1].rstrip(b" \t").lower(),
                    pos,
                    match.end(),
                    line_end,
                )
                if limit is None or len(found) < limit:
                    found.append(current)
        pos = line_end
    return found, end


def unfold(value: bytes) -> bytes:
    """A field's value without its line breaks (the white space after them kept),
    trimmed."""
    return _FOLD.sub(b"", value).strip(b" \t")


def fields(raw: bytes) -> list[tuple[str, bytes]]:
    """(lower-cased name, unfolded value) of every field of the message's header."""
    found, _ = scan(raw)
    return [(f.name.decode("latin-1"), unfold(raw[f.value_start : f.end])) for f in found]


def values(raw: bytes, name: str) -> list[bytes]:
    """The unfolded values of every field called ``name`` (any case, any obsolete
    spelling), in order."""
    wanted = name.lower().encode("latin-1")
    found, _ = scan(raw)
    return [unfold(raw[f.value_start : f.end]) for f in found if f.name == wanted]


def without_obsolete_space(raw: bytes) -> bytes:
    """``raw`` with the white space between each header field's name and its colon
    removed (``From :`` becomes ``From:``), every other byte kept: RFC 5322 forbids
    generating the obsolete form, and some readers (dkimpy among them) do not see
    such a field at all. ``raw`` itself when there is none."""
    found, _ = scan(raw)
    spaced = [f for f in found if raw[f.value_start - 2 : f.value_start - 1] in (b" ", b"\t")]
    if not spaced:
        return raw
    out: list[bytes] = []
    pos = 0
    for item in spaced:
        name_end = item.line_start + len(raw[item.line_start : item.value_start - 1].rstrip(b" \t"))
        out.append(raw[pos:name_end])
        pos = item.value_start - 1  # the colon
    out.append(raw[pos:])
    return b"".join(out)
