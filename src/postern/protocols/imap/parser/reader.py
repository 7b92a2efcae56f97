"""Framing: :class:`CommandReader` turns a client's byte stream into complete
commands (with their literals inline), continuation requests and errors."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from .. import commands as c
from ..lexer import TAG_CHARS, ImapSyntaxError
from .arguments import parse_command

# ---------------------------------------------------------------------------
# framing: CommandReader
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandReceived:
    command: c.Command


@dataclass(frozen=True, slots=True)
class ContinuationRequired:
    """The client announced a synchronising literal of ``size`` bytes.

    The server answers ``+ Ready`` (then the client sends the bytes) or
    refuses with a tagged response and calls :meth:`CommandReader.reject_literal`.
    """

    tag: str | None
    command_name: str | None
    size: int


@dataclass(frozen=True, slots=True)
class CommandError:
    """Answer ``TAG BAD [CODE] message`` (``* BAD`` when ``tag`` is None).

    ``status`` is ``NO`` for the few refusals decided while parsing (an
    unknown SEARCH charset).  ``fatal``: the stream cannot be resynchronised
    (an oversized non-synchronising literal is on its way); send the answer
    and close the connection.
    """

    tag: str | None
    message: str
    code: str | None = None
    status: Literal["BAD", "NO"] = "BAD"
    fatal: bool = False

    def response(self) -> bytes:
        code = f"[{self.code}] " if self.code else ""
        text = f"{self.tag or '*'} {self.status} {code}{self.message}\r\n"
        return text.encode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class IdleDone:
    """The client sent DONE to end IDLE."""


@dataclass(frozen=True, slots=True)
class LineReceived:
    """A raw line asked for with :meth:`CommandReader.expect_line` (SASL)."""

    line: bytes


ReaderEvent = CommandReceived | ContinuationRequired | CommandError | IdleDone | LineReceived

_LITERAL_AT_END_RE = re.compile(rb"~?\{([0-9]{1,20})(\+?)\}\Z")
_HEAD_RE = re.compile(b"([" + re.escape(TAG_CHARS) + rb"]+) ([A-Za-z]+)(?: ([A-Za-z]+))?")

# Commands after which the reader stops and waits for the server: what follows
# is not a command (IDLE's DONE, SASL lines) or must be thrown away (STARTTLS:
# plaintext sent before the handshake must never be read as if it were
# protected, CVE-2011-0411 style command injection).
_PAUSE_AFTER = (c.Idle, c.Authenticate, c.StartTls)

_Mode = Literal["command", "paused", "idle", "line", "skip_line", "closed"]


class CommandReader:
    """Incremental framing of a client's byte stream into commands.

    ``max_line_length`` bounds the non-literal bytes of one command (all its
    lines together); ``max_literal_size`` bounds each literal.  Both are
    checked before the bytes are buffered, and give ``[TOOBIG]`` errors.
    """

    def __init__(
        self,
        *,
        max_line_length: int = 64 * 1024,
        max_literal_size: int = 64 * 1024 * 1024,
        literal_plus: bool = True,
    ) -> None:
        self.max_line_length = max_line_length
        self.max_literal_size = max_literal_size
        self.literal_plus = literal_plus
        #: Mailbox names are UTF-8 (set by the server after ENABLE UTF8=ACCEPT).
        self.utf8 = False
        self._buffer = bytearray()
        self._command = bytearray()
        self._text_length = 0  # non-literal bytes of the command so far
        self._literal_left = 0
        self._mode: _Mode = "command"

    # -- mode switches, called by the server -------------------------------

    @property
    def paused(self) -> bool:
        """True after IDLE, AUTHENTICATE or STARTTLS until the server resumes."""
        return self._mode == "paused"

    @property
    def closed(self) -> bool:
        return self._mode == "closed"

    @property
    def buffered(self) -> int:
        """Bytes received but not yet processed."""
        return len(self._buffer)

    def resume(self) -> list[ReaderEvent]:
        """Read commands again (e.g. after refusing IDLE or finishing SASL)."""
        if self._mode != "closed":
            self._mode = "command"
        return self.feed(b"")

    def expect_idle_done(self) -> list[ReaderEvent]:
        """IDLE was accepted (``+ idling`` sent): the next line must be DONE."""
        if self._mode != "closed":
            self._mode = "idle"
        return self.feed(b"")

    def expect_line(self) -> list[ReaderEvent]:
        """A SASL challenge was sent: the next line is the client's response."""
        if self._mode != "closed":
            self._mode = "line"
        return self.feed(b"")

    def discard_buffered(self) -> int:
        """Throw away unread input (after STARTTLS); returns how much."""
        dropped = len(self._buffer)
        self._buffer.clear()
        return dropped

    def reject_literal(self) -> None:
        """The server refused a synchronising literal: forget the command."""
        self._reset_command()
        if self._mode != "closed":
            self._mode = "command"

    # -- feeding -------------------------------------------------------------

    def feed(self, data: bytes) -> list[ReaderEvent]:
        events: list[ReaderEvent] = []
        if self._mode == "closed":
            return events
        self._buffer += data
        try:
            self._run(events)
        except Exception as exc:  # noqa: BLE001  # pragma: no cover - a bug; never kill the session
            self._reset_command()
            self._buffer.clear()
            events.append(CommandError(None, f"internal parser error: {type(exc).__name__}"))
        return events

    def _reset_command(self) -> None:
        self._command = bytearray()
        self._text_length = 0
        self._literal_left = 0

    def _run(self, events: list[ReaderEvent]) -> None:
        buf = self._buffer
        while True:
            mode = self._mode
            if mode in ("paused", "closed"):
                return
            if self._literal_left:
                take = min(self._literal_left, len(buf))
                if not take:
                    return
                self._command += buf[:take]
                del buf[:take]
                self._literal_left -= take
                continue
            newline = buf.find(b"\n")
            allowance = self.max_line_length - self._text_length
            if newline < 0:
                if len(buf) > allowance and mode != "skip_line":
                    events.append(self._too_long(bytes(buf[:200])))
                    buf.clear()
                    self._mode = "skip_line"
                elif mode == "skip_line":
                    buf.clear()
                return
            line = bytes(buf[: newline + 1])
            del buf[: newline + 1]
            if mode == "skip_line":
                self._mode = "command"
                continue
            if len(line) > allowance:
                events.append(self._too_long(line[:200]))
                continue
            content = line[:-2] if line.endswith(b"\r\n") else line[:-1]
            if mode == "idle":
                self._mode = "command"
                if content.upper() == b"DONE":
                    events.append(IdleDone())
                else:
                    events.append(CommandError(None, "expected DONE"))
                continue
            if mode == "line":
                self._mode = "paused"
                events.append(LineReceived(content))
                continue
            self._on_command_line(content, events)

    def _too_long(self, line_start: bytes) -> CommandError:
        tag, _ = self._head(bytes(self._command[:200]) + line_start)
        self._reset_command()
        return CommandError(tag, "command line too long", code="TOOBIG")

    def _head(self, data: bytes) -> tuple[str | None, str | None]:
        """The tag and command name of a command, if they can be read."""
        m = _HEAD_RE.match(data)
        if m is None:
            return None, None
        name = m.group(2).decode("ascii").upper()
        if name == "UID" and m.group(3):
            name = m.group(3).decode("ascii").upper()
        tag = m.group(1).decode("ascii")
        return tag, name

    def _on_command_line(self, content: bytes, events: list[ReaderEvent]) -> None:
        if not self._command and not content:
            return  # stray empty line between commands: ignored, as Dovecot does
        literal = _literal_at_end(content)
        self._text_length += len(content) + 2
        if literal is None:
            self._command += content
            data = bytes(self._command)
            self._reset_command()
            events.append(self._parse(data))
            return
        size, synchronising = literal
        self._command += content + b"\r\n"
        tag, name = self._head(bytes(self._command[:200]))
        if not synchronising and not self.literal_plus:
            self._reset_command()
            self._mode = "closed"
            events.append(CommandError(tag, "non-synchronising literals are not supported", fatal=True))
            return
        if size > self.max_literal_size:
            self._reset_command()
            if synchronising:
                events.append(CommandError(tag, "literal too big", code="TOOBIG"))
            else:
                # The bytes are already on their way and cannot be told apart
                # from commands: the connection must end (RFC 7888 §4).
                self._mode = "closed"
                events.append(CommandError(tag, "literal too big", code="TOOBIG", fatal=True))
            return
        self._literal_left = size
        if synchronising:
            events.append(ContinuationRequired(tag, name, size))

    def _parse(self, data: bytes) -> ReaderEvent:
        try:
            command = parse_command(data, utf8=self.utf8)
        except ImapSyntaxError as exc:
            tag = getattr(exc, "tag", None)
            return CommandError(tag, exc.message, exc.code, "NO" if exc.status == "NO" else "BAD")
        if isinstance(command, _PAUSE_AFTER):
            self._mode = "paused"
        return CommandReceived(command)


def _literal_at_end(line: bytes) -> tuple[int, bool] | None:
    """``(size, synchronising)`` if the line ends with a literal announcement.

    A ``{5}`` inside a quoted string is not one; quoted strings cannot span
    lines, so the quote state of this line alone decides.
    """
    if not line.endswith(b"}"):
        return None
    m = _LITERAL_AT_END_RE.search(line)
    if m is None:
        return None
    in_quote = False
    escaped = False
    for byte in line[: m.start()]:
        if escaped:
            escaped = False
        elif in_quote and byte == 0x5C:
            escaped = True
        elif byte == 0x22:
            in_quote = not in_quote
    if in_quote:
        return None
    return int(m.group(1)), m.group(2) != b"+"
