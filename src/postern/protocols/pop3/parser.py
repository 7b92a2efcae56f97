"""POP3 command lines to typed commands. No I/O: ``parse`` takes one line (its line
ending optional) and returns a command or a ``ParseError``; it never raises."""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass

# RFC 2449 limits command lines to 255 octets; clients that send a little more
# (long passwords, SASL initial responses) are tolerated up to this.
MAX_LINE = 1000
MAX_ARGUMENT = 255

_NUMBER = re.compile(rb"[0-9]{1,10}")
_KEYWORD = re.compile(rb"[A-Za-z]{1,10}")
_MECHANISM = re.compile(rb"[A-Za-z0-9_-]{1,20}")


@dataclass(frozen=True, slots=True)
class ParseError:
    message: str


@dataclass(frozen=True, slots=True)
class User:
    name: str


@dataclass(frozen=True, slots=True)
class Pass:
    password: str


@dataclass(frozen=True, slots=True)
class Auth:
    """``AUTH`` alone asks for the mechanisms; ``initial`` is the initial response as
    sent (base64, or "=" for an empty one), None when there is none."""

    mechanism: str | None
    initial: bytes | None = None


@dataclass(frozen=True, slots=True)
class Stat:
    pass


@dataclass(frozen=True, slots=True)
class List:
    msg: int | None = None


@dataclass(frozen=True, slots=True)
class Uidl:
    msg: int | None = None


@dataclass(frozen=True, slots=True)
class Retr:
    msg: int


@dataclass(frozen=True, slots=True)
class Top:
    msg: int
    lines: int


@dataclass(frozen=True, slots=True)
class Dele:
    msg: int


@dataclass(frozen=True, slots=True)
class Noop:
    pass


@dataclass(frozen=True, slots=True)
class Rset:
    pass


@dataclass(frozen=True, slots=True)
class Quit:
    pass


@dataclass(frozen=True, slots=True)
class Capa:
    pass


@dataclass(frozen=True, slots=True)
class Stls:
    pass


Command = User | Pass | Auth | Stat | List | Uidl | Retr | Top | Dele | Noop | Rset | Quit | Capa | Stls

_BARE: dict[bytes, Command] = {b"STAT": Stat(), b"NOOP": Noop(), b"RSET": Rset(), b"QUIT": Quit(), b"CAPA": Capa(), b"STLS": Stls()}


@dataclass(frozen=True, slots=True)
class SaslCancel:
    pass


def _strip_ending(line: bytes) -> bytes:
    if line.endswith(b"\n"):
        line = line[:-1]
    if line.endswith(b"\r"):
        line = line[:-1]
    return line


def _number(token: bytes, *, minimum: int) -> int | None:
    if not _NUMBER.fullmatch(token):
        return None
    value = int(token)
    return value if value >= minimum else None


def _text(data: bytes) -> str | None:
    """UTF-8 text without control characters, or None."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return None
    return text


def parse(line: bytes) -> Command | ParseError:
    line = _strip_ending(line)
    if len(line) > MAX_LINE:
        return ParseError("Line too long")
    if not line.strip():
        return ParseError("Empty command")
    keyword, sep, rest = line.partition(b" ")
    if not _KEYWORD.fullmatch(keyword):
        return ParseError("Unknown command")
    name = keyword.upper()
    if name in _BARE:
        if rest.strip():
            return ParseError(f"{name.decode()} takes no arguments")
        return _BARE[name]
    if name == b"PASS":
        # The password is the rest of the line: it may contain spaces (RFC 1939).
        if not sep or not rest:
            return ParseError("PASS needs a password")
        password = _text(rest)
        if password is None or len(rest) > MAX_ARGUMENT:
            return ParseError("Invalid password")
        return Pass(password)
    args = rest.split()
    if name == b"USER":
        if len(args) != 1:
            return ParseError("USER needs one name")
        user = _text(args[0])
        if user is None or len(args[0]) > MAX_ARGUMENT:
            return ParseError("Invalid user name")
        return User(user)
    if name == b"AUTH":
        if not args:
            return Auth(None)
        if len(args) > 2 or not _MECHANISM.fullmatch(args[0]):
            return ParseError("Invalid AUTH arguments")
        return Auth(args[0].decode("ascii").upper(), args[1] if len(args) == 2 else None)
    if name in (b"LIST", b"UIDL"):
        if len(args) > 1:
            return ParseError(f"{name.decode()} takes at most one message number")
        if not args:
            return List() if name == b"LIST" else Uidl()
        msg = _number(args[0], minimum=1)
        if msg is None:
            return ParseError("Invalid message number")
        return List(msg) if name == b"LIST" else Uidl(msg)
    if name in (b"RETR", b"DELE"):
        if len(args) != 1:
            return ParseError(f"{name.decode()} needs one message number")
        msg = _number(args[0], minimum=1)
        if msg is None:
            return ParseError("Invalid message number")
        return Retr(msg) if name == b"RETR" else Dele(msg)
    if name == b"TOP":
        if len(args) != 2:
            return ParseError("TOP needs a message number and a number of lines")
        msg = _number(args[0], minimum=1)
        lines = _number(args[1], minimum=0)
        if msg is None or lines is None:
            return ParseError("Invalid message number or number of lines")
        return Top(msg, lines)
    if name == b"APOP":
        return ParseError("APOP is not supported")
    return ParseError("Unknown command")


def parse_sasl_response(line: bytes) -> bytes | SaslCancel | ParseError:
    """A client's answer to a ``+`` continuation, or an AUTH initial response: "*"
    cancels, "=" is empty, anything else must be base64."""
    data = _strip_ending(line).strip()
    if data == b"*":
        return SaslCancel()
    if data == b"=":
        return b""
    if len(data) > MAX_LINE:
        return ParseError("Response too long")
    try:
        return binascii.a2b_base64(data, strict_mode=True)
    except (binascii.Error, ValueError):
        return ParseError("Invalid base64")
