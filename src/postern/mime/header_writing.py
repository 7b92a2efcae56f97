"""Writing header fields that carry user values: the one place that turns text into
header bytes (pure functions; nothing here raises for any ``str`` input).

Every value a user or a remote party chose (a display name, an alias's name, a contact
name, a sender format's label, a subject, a mailbox name...) reaches a header through
these functions, which guarantee that:

* no line break, NUL or other control character gets through: every control character
  (C0, DEL, C1, and the Unicode line and paragraph separators) becomes a space, and runs
  of white space become one space (``clean``);
* an ASCII name is written as a quoted string (RFC 5322 3.2.4), escaped; a name with
  non-ASCII characters, or one that would read as an encoded word, as RFC 2047 encoded
  words (UTF-8, base64), each at most 75 characters, never splitting a character;
* an address is reduced to characters that can stand between angle brackets;
* a long field is folded (CRLF plus a space, RFC 5322 2.2.3) only before white space
  that was already in the value, so that unfolding gives back the value exactly; lines
  stay under 998 octets (encoded words are always short enough to fold between).

Decoding what these functions write (``email.headerregistry``, ``email.utils`` with
``email.header.decode_header``) gives back ``clean(value)``.
"""

from __future__ import annotations

import base64
import re

__all__ = [
    "HeaderValueError",
    "clean",
    "clean_address",
    "field",
    "has_control",
    "mailbox",
    "phrase",
    "unstructured",
]

# A field longer than MAX_LINE octets (RFC 5322 2.1.1's hard limit, less room) is
# folded into lines of at most FOLD_AT characters where its value allows; a shorter one
# is left on one line, as most writers and readers expect.
MAX_LINE = 900
FOLD_AT = 78
# RFC 2047 2: an encoded word is at most 75 characters.
_MAX_WORD = 75
_WORD_HEAD = "=?utf-8?b?"
_WORD_TAIL = "?="
# A phrase of atoms (RFC 5322 atext separated by spaces) needs no quotes.
_ATOMS = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+( [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_FIELD_NAME = re.compile(r"^[!-9;-~]+$")
# Everything a header must never carry raw: C0, DEL, C1, and the Unicode separators that
# some readers treat as line breaks (NEL is in C1).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# What may stand in an address between angle brackets (no white space, no brackets, no
# quotes, no commas or semicolons that would end it).
_ADDRESS_DROP = re.compile('[\x00-\x20\x7f-\x9f\u2028\u2029<>"(),;\\\\\\[\\]]')


class HeaderValueError(ValueError):
    """A header field name that is not one (a programming error, never user data)."""


def has_control(value: str) -> bool:
    """Whether ``value`` has a character that a header must never carry (line
    breaks, NUL, any control character): the APIs refuse such names with 400."""
    return bool(_CONTROL.search(value))


def clean(value: str) -> str:
    """``value`` with every control character made a space, runs of white space made
    one space, and no white space at either end."""
    return " ".join(_CONTROL.sub(" ", value).split())


def clean_address(address: str) -> str:
    """An address as it can be written between angle brackets: white space, control
    characters, brackets, quotes, commas and semicolons removed."""
    return _ADDRESS_DROP.sub("", address)


def _needs_words(text: str) -> bool:
    return not text.isascii() or "=?" in text


def _encoded_words(text: str) -> str:
    """``text`` as RFC 2047 encoded words (UTF-8, base64) separated by spaces, each at
    most 75 characters, never splitting a character."""
    room = (_MAX_WORD - len(_WORD_HEAD) - len(_WORD_TAIL)) // 4 * 3  # raw bytes per word
    words: list[str] = []
    chunk = b""
    for char in text:
        data = char.encode("utf-8", "surrogatepass")
        if chunk and len(chunk) + len(data) > room:
            words.append(_WORD_HEAD + base64.b64encode(chunk).decode("ascii") + _WORD_TAIL)
            chunk = b""
        chunk += data
    if chunk:
        words.append(_WORD_HEAD + base64.b64encode(chunk).decode("ascii") + _WORD_TAIL)
    return " ".join(words)


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def phrase(value: str, *, always_quote: bool = False) -> str:
    """A display name as a header phrase: atoms as they are (unless
    ``always_quote``), a quoted string when it is other ASCII, encoded words
    otherwise; empty when nothing is left once cleaned."""
    text = clean(value)
    if not text:
        return ""
    # Surrogates (from a lenient decode) cannot be written: encode them as replacement.
    text = text.encode("utf-8", "replace").decode("utf-8")
    if _needs_words(text) or len(text) > 900:
        return _encoded_words(text)
    if not always_quote and _ATOMS.match(text):
        return text
    return _quoted(text)


def mailbox(name: str | None, address: str, *, always_quote: bool = False) -> str:
    """``Name <address>``, ``"Name, Q." <address>`` or ``=?utf-8?b?...?= <address>``
    (``phrase``); the bare address when there is no name."""
    addr = clean_address(address)
    shown = phrase(name or "", always_quote=always_quote)
    return f"{shown} <{addr}>" if shown else addr


def unstructured(value: str) -> str:
    """A text field's value (Subject, Comments...): as is when printable ASCII, encoded
    words otherwise."""
    text = clean(value)
    text = text.encode("utf-8", "replace").decode("utf-8")
    return _encoded_words(text) if _needs_words(text) else text


def field(name: str, value: str, eol: bytes = b"\r\n") -> bytes:
    """One header field, CRLF-terminated and folded before existing white space. The
    value is expected to be written by the functions above; whatever it holds, no
    control character is written (each becomes a space) and 8-bit text is written as
    UTF-8 (RFC 6532). ``eol``: the line break of the message it goes into (CRLF or
    LF)."""
    if not _FIELD_NAME.match(name):
        raise HeaderValueError(f"not a header field name: {name!r}")
    text = _CONTROL.sub(" ", value).strip(" ")
    if eol not in (b"\r\n", b"\n"):
        eol = b"\r\n"
    return (_fold(f"{name}: {text}").replace("\r\n", eol.decode("ascii")) + eol.decode("ascii")).encode("utf-8", "replace")


def _fold(line: str) -> str:
    """``line`` as it is when short; else broken before spaces so that each piece is
    at most FOLD_AT characters where a space allows it (a longer piece stays whole: it
    has nowhere to break)."""
    if len(line.encode("utf-8", "replace")) <= MAX_LINE:
        return line
    pieces: list[str] = []
    current = ""
    for index, word in enumerate(line.split(" ")):
        if index == 0:
            current = word
        elif current.strip() and len(current) + 1 + len(word) > FOLD_AT:
            pieces.append(current)
            current = " " + word
        else:
            current += " " + word
    pieces.append(current)
    return "\r\n".join(pieces)
