"""FETCH data items (RFC 3501 §6.4.5): the macros, BODY[section]<partial>, and
RFC 3516 BINARY[section]."""

from __future__ import annotations

import re

from postern.mime.imap_structure import SectionSpec

from .. import commands as c
from ..lexer import Cursor, ImapSyntaxError

# ---------------------------------------------------------------------------
# FETCH attributes
# ---------------------------------------------------------------------------

_FETCH_NAME_RE = re.compile(rb"[A-Za-z0-9.\-]+")
_SECTION_WORD_RE = re.compile(rb"[A-Za-z.]+")
_SIMPLE_FETCH = {
    "ENVELOPE",
    "FLAGS",
    "INTERNALDATE",
    "RFC822",
    "RFC822.HEADER",
    "RFC822.SIZE",
    "RFC822.TEXT",
    "BODY",
    "BODYSTRUCTURE",
    "UID",
    "MODSEQ",
    "SAVEDATE",
}
_MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}


def _section(cur: Cursor, binary: bool) -> SectionSpec:
    """After ``[``: the section spec and the closing ``]``."""
    parts: list[int] = []
    text: str | None = None
    fields: tuple[str, ...] = ()
    word_required = False
    while 0x30 <= cur.peek() <= 0x39:
        parts.append(cur.nz_number(what="a part number"))
        if not cur.skip(b"."):
            break
        if not 0x30 <= cur.peek() <= 0x39:
            word_required = True  # "1.TEXT", "1.MIME", ...
            break
    if word_required and (binary or cur.peek() == 0x5D):
        raise ImapSyntaxError("expected a section name after the part number")
    if parts and not word_required and cur.peek() != 0x5D:
        raise ImapSyntaxError("expected ']' or '.' after a part number")
    if cur.peek() != 0x5D:  # ']'
        if binary:
            raise ImapSyntaxError("BINARY sections are part numbers only")
        word = cur._match(_SECTION_WORD_RE, "a section name").decode("ascii").upper()
        if (word == "MIME" and parts) or word in ("HEADER", "TEXT"):
            text = word
        elif word in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
            text = word
            cur.sp()
            cur.expect(b"(")
            names: list[str] = []
            while True:
                names.append(cur.astring("a header field name").decode("latin-1"))
                if cur.skip(b")"):
                    break
                cur.sp()
            fields = tuple(names)
        else:
            raise ImapSyntaxError(f"unknown section {word}")
    cur.expect(b"]")
    return SectionSpec(tuple(parts), text, fields)


def _fetch_attribute(cur: Cursor) -> c.FetchAttribute:
    name = cur._match(_FETCH_NAME_RE, "a fetch item").decode("ascii").upper()
    if cur.peek() == 0x5B:  # '['
        peek = name.endswith(".PEEK")
        base = name.removesuffix(".PEEK")
        if base not in ("BODY", "BINARY", "BINARY.SIZE") or (peek and base == "BINARY.SIZE"):
            raise ImapSyntaxError(f"{name} takes no section")
        cur.pos += 1
        section = _section(cur, binary=base != "BODY")
        partial = None
        if base != "BINARY.SIZE" and cur.skip(b"<"):
            origin = cur.number(what="a partial origin")
            cur.expect(b".")
            count = cur.nz_number(what="a partial length")
            cur.expect(b">")
            partial = (origin, count)
        return c.FetchAttribute(base, section, partial, peek)  # type: ignore[arg-type]
    if name not in _SIMPLE_FETCH:
        raise ImapSyntaxError(f"unknown fetch item {name}")
    return c.FetchAttribute(name)  # type: ignore[arg-type]


def fetch_attributes(cur: Cursor) -> tuple[c.FetchAttribute, ...]:
    if cur.skip(b"("):
        items = [_fetch_attribute(cur)]
        while not cur.skip(b")"):
            cur.sp()
            items.append(_fetch_attribute(cur))
        return tuple(dict.fromkeys(items))
    for macro, names in _MACROS.items():
        if cur.peek_word(macro.encode()):
            cur.atom()
            return tuple(c.FetchAttribute(n) for n in names)  # type: ignore[arg-type]
    return (_fetch_attribute(cur),)
