"""Low-level IMAP syntax (RFC 3501 §9): a cursor over one complete command.

A "complete command" is what :class:`~.parser.CommandReader` hands over: the
lines of the command with their literals inline (``{3}\\r\\nabc``), without
the final CRLF.  Every method either consumes what it reads or raises
:class:`ImapSyntaxError`; nothing else escapes, whatever the bytes.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

__all__ = ["Cursor", "ImapSyntaxError"]


class ImapSyntaxError(Exception):
    """The command is malformed (``BAD``), or refused at parse time (``NO``).

    ``code`` is a response code without brackets (``BADCHARSET``, ``TOOBIG``).
    """

    def __init__(self, message: str, code: str | None = None, status: str = "BAD") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


# atom-specials: ( ) { SP CTL % * " \ ]  -- 8-bit bytes are let into atoms so
# that a client sending raw UTF-8 mailbox names is understood (as Dovecot does).
_ATOM_SPECIALS = frozenset(b'(){ %*"\\]') | frozenset(range(0x20)) | {0x7F}
ATOM_CHARS = bytes(c for c in range(256) if c not in _ATOM_SPECIALS)
ASTRING_CHARS = ATOM_CHARS + b"]"
LIST_CHARS = ASTRING_CHARS + b"%*"
TAG_CHARS = bytes(c for c in ASTRING_CHARS if c != ord("+") and c < 0x80)

_ATOM_RE = re.compile(b"[" + re.escape(ATOM_CHARS) + b"]+")
_ASTRING_RE = re.compile(b"[" + re.escape(ASTRING_CHARS) + b"]+")
_LIST_RE = re.compile(b"[" + re.escape(LIST_CHARS) + b"]+")
_TAG_RE = re.compile(b"[" + re.escape(TAG_CHARS) + b"]+")
_NUMBER_RE = re.compile(rb"[0-9]+")
_LITERAL_RE = re.compile(rb"(~?)\{([0-9]{1,20})(\+?)\}\r\n")
_SEQUENCE_RE = re.compile(rb"[0-9:*,$]+")
_DATE_RE = re.compile(rb"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")
_DATE_TIME_RE = re.compile(rb'"([ 0-9][0-9])-([A-Za-z]{3})-([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})"')
_MONTHS = {m: i for i, m in enumerate((b"JAN", b"FEB", b"MAR", b"APR", b"MAY", b"JUN", b"JUL", b"AUG", b"SEP", b"OCT", b"NOV", b"DEC"), 1)}
_QUOTED_SPECIALS = frozenset(b'"\\')

#: Largest number (RFC 3501 number: 32 bits) and mod-sequence (63 bits).
MAX_NUMBER = 2**32 - 1
MAX_NUMBER64 = 2**63 - 1


class Cursor:
    """Reads IMAP syntax from ``data`` starting at ``pos``."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    # -- primitives ---------------------------------------------------------

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def peek(self) -> int:
        """The next byte, or -1 at the end."""
        return self.data[self.pos] if self.pos < len(self.data) else -1

    def peek_is(self, prefix: bytes) -> bool:
        return self.data.startswith(prefix, self.pos)

    def peek_word(self, word: bytes) -> bool:
        """Whether the next atom is ``word`` (case-insensitive)."""
        m = _ATOM_RE.match(self.data, self.pos)
        return m is not None and m.group().upper() == word

    def expect(self, token: bytes, what: str | None = None) -> None:
        if not self.data.startswith(token, self.pos):
            raise ImapSyntaxError(f"expected {what or repr(token.decode('latin-1'))}{self._where()}")
        self.pos += len(token)

    def skip(self, token: bytes) -> bool:
        if self.data.startswith(token, self.pos):
            self.pos += len(token)
            return True
        return False

    def sp(self) -> None:
        self.expect(b" ", "a space")

    def end(self) -> None:
        if not self.at_end():
            raise ImapSyntaxError(f"unexpected extra arguments{self._where()}")

    def _where(self) -> str:
        if self.at_end():
            return " at end of command"
        snippet = self.data[self.pos : self.pos + 20].decode("latin-1")
        snippet = "".join(c if c.isprintable() and ord(c) < 0x7F else "?" for c in snippet)
        return f" near '{snippet}'"

    def _match(self, pattern: re.Pattern[bytes], what: str) -> bytes:
        m = pattern.match(self.data, self.pos)
        if m is None:
            raise ImapSyntaxError(f"expected {what}{self._where()}")
        self.pos = m.end()
        return m.group()

    # -- tokens -------------------------------------------------------------

    def tag(self) -> bytes:
        return self._match(_TAG_RE, "a tag")

    def atom(self, what: str = "an atom") -> bytes:
        return self._match(_ATOM_RE, what)

    def keyword(self, what: str = "a keyword") -> str:
        """An atom, upper-cased, as text (command names, options)."""
        return self.atom(what).decode("latin-1").upper()

    def number(self, limit: int = MAX_NUMBER, what: str = "a number") -> int:
        text = self._match(_NUMBER_RE, what)
        if len(text) > 20 or int(text) > limit:
            raise ImapSyntaxError(f"{what} is too large")
        return int(text)

    def nz_number(self, limit: int = MAX_NUMBER, what: str = "a non-zero number") -> int:
        value = self.number(limit, what)
        if value == 0:
            raise ImapSyntaxError(f"expected {what}, got 0")
        return value

    def quoted(self) -> bytes:
        data = self.data
        i = self.pos
        if i >= len(data) or data[i] != 0x22:
            raise ImapSyntaxError(f"expected a quoted string{self._where()}")
        i += 1
        out = bytearray()
        n = len(data)
        while True:
            # Copy runs of ordinary characters at once.
            j = i
            while j < n and data[j] not in (0x22, 0x5C, 0x0D, 0x0A, 0x00):
                j += 1
            out += data[i:j]
            if j >= n:
                raise ImapSyntaxError("unterminated quoted string")
            c = data[j]
            if c == 0x22:
                self.pos = j + 1
                return bytes(out)
            if c == 0x5C:
                if j + 1 >= n:
                    raise ImapSyntaxError("unterminated quoted string")
                escaped = data[j + 1]
                if escaped not in _QUOTED_SPECIALS:
                    raise ImapSyntaxError("bad escape in quoted string")
                out.append(escaped)
                i = j + 2
                continue
            raise ImapSyntaxError("control character in quoted string")

    def literal(self, allow_literal8: bool = False) -> tuple[bytes, bool]:
        """``{n}CRLF`` + n bytes; returns (data, is_literal8)."""
        m = _LITERAL_RE.match(self.data, self.pos)
        if m is None:
            raise ImapSyntaxError(f"expected a literal{self._where()}")
        binary = bool(m.group(1))
        if binary and not allow_literal8:
            raise ImapSyntaxError("literal8 is only allowed in APPEND")
        size = int(m.group(2))
        start = m.end()
        if start + size > len(self.data):
            raise ImapSyntaxError("literal is shorter than announced")
        self.pos = start + size
        value = self.data[start : self.pos]
        if not binary and 0 in value:
            raise ImapSyntaxError("NUL in a literal (use literal8)")
        return value, binary

    def is_literal_next(self) -> bool:
        c = self.peek()
        return c == 0x7B or (c == 0x7E and self.peek_is(b"~{"))

    def string(self) -> bytes:
        if self.peek() == 0x22:
            return self.quoted()
        if self.peek() == 0x7B:
            return self.literal()[0]
        raise ImapSyntaxError(f"expected a string{self._where()}")

    def astring(self, what: str = "a string") -> bytes:
        c = self.peek()
        if c == 0x22 or c == 0x7B:
            return self.string()
        return self._match(_ASTRING_RE, what)

    def nstring(self) -> bytes | None:
        if self.peek_word(b"NIL"):
            self.pos += 3
            return None
        return self.string()

    def list_mailbox(self) -> bytes:
        """A LIST pattern: an atom with ``%``/``*``/``]`` allowed, or a string."""
        c = self.peek()
        if c == 0x22 or c == 0x7B:
            return self.string()
        return self._match(_LIST_RE, "a mailbox pattern")

    def sequence_text(self) -> bytes:
        return self._match(_SEQUENCE_RE, "a sequence set")

    # -- dates --------------------------------------------------------------

    def date(self) -> date:
        """``d-Mon-yyyy``, optionally quoted (RFC 3501 date)."""
        quoted = self.skip(b'"')
        m = _DATE_RE.match(self.data, self.pos)
        if m is None:
            raise ImapSyntaxError(f"expected a date like 1-Jan-2024{self._where()}")
        self.pos = m.end()
        if quoted:
            self.expect(b'"', "a closing quote")
        month = _MONTHS.get(m.group(2).upper())
        try:
            if month is None:
                raise ValueError(m.group(2))
            return date(int(m.group(3)), month, int(m.group(1)))
        except ValueError as exc:
            raise ImapSyntaxError("invalid date") from exc

    def date_time(self) -> datetime:
        """``"dd-Mon-yyyy hh:mm:ss +zzzz"`` (RFC 3501 date-time)."""
        m = _DATE_TIME_RE.match(self.data, self.pos)
        if m is None:
            raise ImapSyntaxError(f'expected a date-time like "01-Jan-2024 10:00:00 +0000"{self._where()}')
        self.pos = m.end()
        day, mon, year, hh, mm, ss, sign, zh, zm = m.groups()
        month = _MONTHS.get(mon.upper())
        try:
            if month is None or int(zm) >= 60:
                raise ValueError("month or zone")
            offset = timedelta(hours=int(zh), minutes=int(zm))
            zone = timezone(-offset if sign == b"-" else offset)
            return datetime(int(year), month, int(day.strip()), int(hh), int(mm), int(ss), tzinfo=zone)
        except ValueError as exc:
            raise ImapSyntaxError("invalid date-time") from exc
