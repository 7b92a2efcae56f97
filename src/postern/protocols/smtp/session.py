"""aiosmtpd's protocol with postern's connection limits and authentication."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from base64 import b64decode
from collections.abc import Awaitable, Callable
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, syntax

from postern.accounts.service import ApplicationPasswordRequired
from postern.errors import RateLimited
from postern.protocols.streams import ConnectionLimiter
from postern.telemetry import metrics

log = logging.getLogger("postern.smtp")
log_session = logging.getLogger("postern.smtp.session")

# (login, password, peer ip) -> the authenticated user's id, or None. May raise
# RateLimited or ApplicationPasswordRequired, which AUTH answers in its own words.
Authenticate = Callable[[str, str, str], Awaitable[str | None]]


def is_loopback(peer: Any) -> bool:
    try:
        return ipaddress.ip_address(peer[0]).is_loopback
    except (TypeError, ValueError, IndexError):
        return False


_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
# <local@domain> with a dot-atom local part and a domain of LDH labels, then either
# nothing or parameters after a space.
_PLAIN_PATH = re.compile(r"[ \t]*<((" + _ATEXT + r"(?:\." + _ATEXT + r")*)@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>(?=$|[ \t])")


class DoorMixin:
    """What every postern SMTP/LMTP session adds to aiosmtpd's state machine."""

    limiter: ConnectionLimiter
    authenticate_user: Authenticate | None = None
    door = "smtp"  # smtp, lmtp or submission (set by session_factory)
    _counted = False
    _reader: Any  # aiosmtpd's stream reader, or the DATA reader in front of it
    _peer_ip: str | None = None
    _refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = getattr(self, "_peer_ip", None) is None
        super().connection_made(transport)  # type: ignore[misc]
        if not first:
            return  # STARTTLS replaces the transport of a session already counted
        peer = transport.get_extra_info("peername") or ("", 0)
        self._peer_ip = str(peer[0])
        self._counted = True
        metrics.M.connections(self.door).inc()
        metrics.M.connections_open(self.door).inc()
        if not self.limiter.acquire(self._peer_ip):
            self._refused = True
        # AUTH in plain text only on loopback: everywhere else after STARTTLS.
        self._auth_require_tls = not is_loopback(peer)  # type: ignore[attr-defined]

    def connection_lost(self, error: Exception | None) -> None:
        collector = getattr(self, "_collector", None)
        if collector is not None and not collector.done.done():
            # Gone in the middle of DATA: end the session's wait (aiosmtpd's own reader
            # would raise here), as a connection reset.
            collector.done.set_exception(ConnectionResetError("connection lost during DATA"))
        if self._counted:
            self._counted = False
            metrics.M.connections_open(self.door).dec()
        if self._peer_ip is not None and not self._refused and not getattr(self, "_released", False):
            self._released = True
            self.limiter.release(self._peer_ip)
        super().connection_lost(error)  # type: ignore[misc]

    async def _handle_client(self) -> None:
        if self._refused:
            await self.push("421 4.7.0 Too many connections from your address, try again later")  # type: ignore[attr-defined]
            self.transport.close()  # type: ignore[attr-defined]
            return
        await super()._handle_client()  # type: ignore[misc]

    # Replies: aiosmtpd writes each one to the socket as it is made (and EHLO's a
    # line at a time). postern holds a reply back while the client has already sent
    # the next command (pipelining, RFC 2920), and the lines of a multi-line reply
    # until its last, so that the replies to MAIL, RCPT and DATA leave in one write.
    # A reply is held only when another is sure to follow without waiting for the
    # client: a continuation line, or a 250 with a complete command line waiting.
    _held = b""

    async def push(self, status: str | bytes) -> None:
        response = status if isinstance(status, bytes) else status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii")  # type: ignore[attr-defined]
        line = response + b"\r\n"
        if line[3:4] == b"-" or (line[:3] == b"250" and b"\r\n" in getattr(self._reader, "_buffer", b"")):  # type: ignore[has-type]
            self._held += line
            return
        if self._held:
            line = self._held + line
            self._held = b""
        self._writer.write(line)  # type: ignore[attr-defined]
        await self._writer.drain()  # type: ignore[attr-defined]

    def _timeout_cb(self) -> None:
        # aiosmtpd just drops an idle connection; say why first (RFC 5321 4.5.3.2).
        transport = self.transport  # type: ignore[attr-defined]
        if transport is not None and not transport.is_closing():
            held, self._held = self._held, b""
            transport.write(held + f"421 4.4.2 {self.hostname} Error: timeout exceeded\r\n".encode())  # type: ignore[attr-defined]
        super()._timeout_cb()  # type: ignore[misc]

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd parses every MAIL and RCPT address with the email package's header
        # parser. A plain <dot-atom@domain> gives the same result from a regular
        # expression; anything else still goes to the parser.
        match = _PLAIN_PATH.match(arg)
        if match is None:
            return super()._getaddr(arg)  # type: ignore[misc, no-any-return]
        rest = arg[match.end() :].lstrip(" \t")
        if rest[:1] == "(":  # a comment, which the parser would skip
            return super()._getaddr(arg)  # type: ignore[misc, no-any-return]
        if self.local_part_limit and len(match.group(2)) > self.local_part_limit:  # type: ignore[attr-defined]
            return None, None
        return match.group(1), rest

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str) -> None:
        # aiosmtpd would answer 220 again inside TLS and stack a second TLS layer.
        if self._tls_protocol is not None:  # type: ignore[attr-defined]
            await self.push("503 5.5.1 TLS already active")  # type: ignore[attr-defined]
            return
        await super().smtp_STARTTLS(arg)  # type: ignore[misc]

    # DATA: aiosmtpd removes the leading dot of every line before the handler sees
    # the message, which hides a lone dot followed by a bare CR or LF right after a
    # CRLF (the "\r\n.\n" of SMTP smuggling). Watch the lines as they arrive (and
    # keep the idle timer to the client's silences, see _DataReader).
    #
    # aiosmtpd reads DATA a line at a time (about 300 awaits for 20 KB, and a reader
    # that pauses the socket every 2 KB). postern takes the bytes as they arrive
    # instead (_DataCollector), finds the end of the data in the whole buffer, and
    # then applies aiosmtpd's rules to the whole: the same replies for a line too long
    # (500) or too much data (552), in the same order, the same dot-unstuffing, and
    # the same watch for a lone dot. The per-line path remains for what the bulk one
    # does not cover (decoded data, a reader without the buffer it drains).
    lone_dot_in_data = False
    bulk_data = True  # False: aiosmtpd's per-line reading (a test compares the two)
    in_data = False  # storing a message, its answer not yet sent
    _collector: _DataCollector | None = None

    def data_received(self, data: bytes) -> None:
        collector = self._collector
        if collector is not None:
            collector.feed(data)
        else:
            super().data_received(data)  # type: ignore[misc]

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        self.lone_dot_in_data = False
        reader = self._reader  # type: ignore[has-type]
        if self.bulk_data and not self._decode_data and isinstance(getattr(reader, "_buffer", None), bytearray):  # type: ignore[attr-defined]
            try:
                await self._bulk_data(arg, reader)
            finally:
                self._collector = None
                if self.transport is not None:  # type: ignore[attr-defined]
                    self._reset_timeout()  # type: ignore[attr-defined]
            return
        self._reader = _DataReader(reader, self)
        try:
            await super().smtp_DATA(arg)  # type: ignore[misc]
        finally:
            self._reader = reader
            if self.transport is not None:  # type: ignore[attr-defined]
                self._reset_timeout()  # type: ignore[attr-defined]

    async def _bulk_data(self, arg: str, reader: asyncio.StreamReader) -> None:
        """aiosmtpd's ``smtp_DATA`` (1.4), with the data taken in bulk."""
        if await self.check_helo_needed():  # type: ignore[attr-defined]
            return
        if await self.check_auth_needed("DATA"):  # type: ignore[attr-defined]
            return
        envelope = self.envelope  # type: ignore[attr-defined]
        if not envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")  # type: ignore[attr-defined]
            return
        if arg:
            await self.push("501 Syntax: DATA")  # type: ignore[attr-defined]
            return
        limit = self.data_size_limit  # type: ignore[attr-defined]
        collector = _DataCollector(self, limit, self.line_length_limit)  # type: ignore[attr-defined]
        self._collector = collector
        # Whatever the client sent too early is already in the reader's buffer.
        early = bytes(reader._buffer)  # type: ignore[attr-defined]
        reader._buffer.clear()  # type: ignore[attr-defined]
        resume = getattr(reader, "_maybe_resume_transport", None)
        if resume is not None:
            resume()  # in case those bytes had paused the socket
        await self.push("354 End data with <CR><LF>.<CR><LF>")  # type: ignore[attr-defined]
        if early:
            collector.feed(early)
        try:
            data, leftover, state = await collector.done
        except asyncio.CancelledError:
            log.info("Connection lost during DATA")
            self._writer.close()  # type: ignore[attr-defined]
            raise
        self._collector = None
        leftover += collector.late
        if leftover:  # pipelined commands after the end of the data
            reader.feed_data(leftover)
        if state == _TOO_LONG:
            await self.push("500 Line too long (see RFC5321 4.5.3.1.6)")  # type: ignore[attr-defined]
            self._set_post_data_state()  # type: ignore[attr-defined]
            return
        if state == _TOO_MUCH:
            await self.push("552 Error: Too much mail data")  # type: ignore[attr-defined]
            self._set_post_data_state()  # type: ignore[attr-defined]
            return
        # One scan for a dot at the start of a line (most messages have none; the
        # regular expression finds a literal faster than ``in`` does here).
        dotted = _LINE_DOT.search(data) is not None
        if data[:2] in (b".\r", b".\n") or (dotted and (b"\r\n.\r" in data or b"\r\n.\n" in data)):
            self.lone_dot_in_data = True
        # Remove the transparency dots (RFC 5321 4.5.2).
        if dotted:
            data = data.replace(b"\r\n.", b"\r\n")
        if data[:1] == b".":
            data = data[1:]
        envelope.content = data
        envelope.original_content = data
        self.in_data = True  # a worker that stops waits for this answer (workers.Receiver)
        try:
            status = await self._call_handler_hook("DATA") if "DATA" in self._handle_hooks else MISSING  # type: ignore[attr-defined]
            self._set_post_data_state()  # type: ignore[attr-defined]
            await self.push("250 OK" if status is MISSING else status)  # type: ignore[attr-defined]
        finally:
            self.in_data = False

    # AUTH through postern's accounts service (aiosmtpd's own check is synchronous).

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            blob = await self.challenge_auth("")  # type: ignore[attr-defined]
            if blob is MISSING:
                return AuthResult(success=False, handled=True)
        else:
            try:
                blob = b64decode(args[1].encode(), validate=True)
            except Exception:
                await self.push("501 5.5.2 Can't decode base64")  # type: ignore[attr-defined]
                return AuthResult(success=False, handled=True)
        parts = blob.split(b"\x00")
        if len(parts) != 3:
            await self.push("501 5.5.2 Can't split auth value")  # type: ignore[attr-defined]
            return AuthResult(success=False, handled=True)
        return await self._check("PLAIN", parts[1], parts[2])

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            login = await self.challenge_auth("Username:")  # type: ignore[attr-defined]
            if login is MISSING:
                return AuthResult(success=False, handled=True)
        else:
            try:
                login = b64decode(args[1].encode(), validate=True)
            except Exception:
                await self.push("501 5.5.2 Can't decode base64")  # type: ignore[attr-defined]
                return AuthResult(success=False, handled=True)
        password = await self.challenge_auth("Password:")  # type: ignore[attr-defined]
        if password is MISSING:
            return AuthResult(success=False, handled=True)
        return await self._check("LOGIN", login, password)

    async def _check(self, mechanism: str, login: bytes, password: bytes) -> AuthResult:
        if self.authenticate_user is None:
            return AuthResult(success=False, handled=False)
        user = login.decode("utf-8", errors="replace")
        try:
            user_id = await self.authenticate_user(user, password.decode("utf-8", errors="replace"), self._peer_ip or "")
        except RateLimited:
            self._log_login(user, "rate limited")
            await self.push("454 4.7.0 Too many authentication failures, try later")  # type: ignore[attr-defined]
            return AuthResult(success=False, handled=True)
        except ApplicationPasswordRequired:
            self._log_login(user, "application password required")
            await self.push("535 5.7.8 Two-factor authentication is on: use an application specific password")  # type: ignore[attr-defined]
            return AuthResult(success=False, handled=True)
        except Exception:
            log.exception("authentication failed with an error")
            await self.push("454 4.7.0 Temporary authentication failure")  # type: ignore[attr-defined]
            return AuthResult(success=False, handled=True)
        if user_id is None:
            self._log_login(user, "failed")
            await self.push("535 5.7.8 Authentication credentials invalid")  # type: ignore[attr-defined]
            return AuthResult(success=False, handled=True)
        self._log_login(user, "ok")
        return AuthResult(success=True, handled=False, auth_data=user_id, message="235 2.7.0 Authentication successful")

    def _log_login(self, user: str, result: str) -> None:
        """One line per AUTH (the login name, never the password)."""
        if result != "ok":
            metrics.M.auth_failures(self.door).inc()
        log_session.info(
            "%s login %s from %s: %s",
            self.door,
            user,
            self._peer_ip,
            result,
            extra={"door": self.door, "user": user, "ip": self._peer_ip, "result": result},
        )


_NOMINAL, _TOO_LONG, _TOO_MUCH = 0, 1, 2
_END = b"\r\n.\r\n"
_LINE_DOT = re.compile(rb"\r\n\.")


def _data_state(lines: list[bytes], partial: bytes, limit: int | None, line_limit: int) -> int:
    """What aiosmtpd's DATA loop concludes from these lines (each without its CRLF)
    and an unfinished last one: the first of "too long" and "too much" to happen."""
    total = 0
    for line in lines:
        if len(line) > line_limit:  # its reader overruns before the line ends
            return _TOO_LONG
        total += len(line) + 2
        if limit and total > limit:
            return _TOO_MUCH
        if len(line) + 2 > line_limit:
            return _TOO_LONG
    if len(partial) > line_limit:
        return _TOO_LONG
    return _NOMINAL


def _may_have_long_line(data: bytes, longest: int) -> bool:
    """False when no line of ``data`` (split at CRLF) is longer than ``longest``
    bytes, found without splitting it: a CRLF must start within every window of
    ``step`` positions, taken every ``step`` bytes. A line of ``longest + 1`` bytes or
    more holds such a window whole (two steps fit in it), so it cannot be missed;
    True means only "look closer"."""
    step = (longest + 1) // 2
    if step < 2:
        return True
    find = data.find
    for start in range(0, len(data) - longest - 1 + step, step):
        if find(b"\r\n", start, start + step + 1) < 0:
            return True
    return False


class _DataCollector:
    """The bytes of one DATA section as they arrive, up to the line ".": ``done``
    gets (data with its last CRLF, bytes after the end, state). Past the size limit
    it keeps only the state and enough to find the end. The idle timer is restarted
    as data comes in (see _DataReader), and stopped at the end."""

    def __init__(self, session: DoorMixin, limit: int | None, line_limit: int):
        self.session = session
        self.limit = limit
        self.line_limit = line_limit
        self.buffer = bytearray()
        self.late = bytearray()
        self.scanned = 0
        self.state = _NOMINAL
        self.discarded = False  # the start of the data is gone (state is decided)
        self.done: asyncio.Future[tuple[bytes, bytes, int]] = asyncio.get_running_loop().create_future()
        self._loop = asyncio.get_running_loop()
        self._reset_at = self._loop.time()
        self._reset_every = min(1.0, session._timeout_duration / 4)  # type: ignore[attr-defined]

    def feed(self, data: bytes) -> None:
        if self.done.done():
            self.late += data  # pipelined commands, before the session takes its reader back
            return
        buffer = self.buffer
        buffer += data
        end = -1
        if not self.discarded and buffer[:3] == b".\r\n":
            end = 0
        else:
            found = buffer.find(_END, max(0, self.scanned - 4))
            if found >= 0:
                end = found + 2
        if end < 0:
            self.scanned = len(buffer)
            if self.limit and len(buffer) > self.limit + self.line_limit and not self.discarded:
                lines = bytes(buffer).split(b"\r\n")
                self.state = _data_state(lines[:-1], lines[-1], self.limit, self.line_limit) or _TOO_MUCH
                self.discarded = True
            if self.discarded:
                del buffer[:-4]
                self.scanned = len(buffer)
            now = self._loop.time()
            if now - self._reset_at >= self._reset_every:
                self._reset_at = now
                self.session._reset_timeout()  # type: ignore[attr-defined]
            return
        # The end of the data: while postern stores the message, the client is
        # waiting for us, not idle (smtp_DATA restarts the timer afterwards).
        self.session._timeout_handle.cancel()  # type: ignore[attr-defined]
        leftover = bytes(buffer[end + 3 :])
        del buffer[end:]
        content = bytes(buffer)
        buffer.clear()
        if not self.discarded:
            if self.limit and len(content) > self.limit:
                self.state = _TOO_MUCH
            if self.state != _NOMINAL or _may_have_long_line(content, self.line_limit - 2):
                lines = content.split(b"\r\n")
                if len(max(lines, key=len)) + 2 > self.line_limit or self.state != _NOMINAL:
                    self.state = _data_state(lines[:-1], b"", self.limit, self.line_limit)
        if self.state != _NOMINAL:
            content = b""
        self.done.set_result((content, leftover, self.state))


class _DataReader:
    """aiosmtpd's stream reader while it reads DATA (it reads lines up to CRLF, and
    the pieces of an over-long line with ``read``). Each line read also restarts the
    idle timer, which aiosmtpd restarts only per command: a large message arriving
    slowly is not cut off while data keeps coming (RFC 5321 4.5.3.2.5). The timer is
    restarted at most every quarter of the timeout, and at most once a second (a new
    timer per line costs more than the line)."""

    def __init__(self, reader: asyncio.StreamReader, session: DoorMixin):
        self._reader = reader
        self._session = session
        self._line_start = True
        self._loop = asyncio.get_running_loop()
        self._reset_at = self._loop.time()
        self._reset_every = min(1.0, session._timeout_duration / 4)  # type: ignore[attr-defined]

    def _data_arrived(self) -> None:
        now = self._loop.time()
        if now - self._reset_at >= self._reset_every:
            self._reset_at = now
            self._session._reset_timeout()  # type: ignore[attr-defined]

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        line = await self._reader.readuntil(separator)
        if self._line_start and line == b".\r\n":
            # The end of the data: while postern stores the message, the client is
            # waiting for us, not idle (smtp_DATA restarts the timer afterwards).
            self._session._timeout_handle.cancel()  # type: ignore[attr-defined]
            return line
        if self._line_start and line[:1] == b"." and line[1:2] in (b"\r", b"\n"):
            self._session.lone_dot_in_data = True
        self._line_start = line.endswith(b"\r\n")
        self._data_arrived()
        return line

    async def read(self, n: int = -1) -> bytes:
        chunk = await self._reader.read(n)
        self._line_start = chunk.endswith(b"\r\n")
        self._data_arrived()
        return chunk

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)


class DoorSMTP(DoorMixin, SMTP):
    pass


class DoorLMTP(DoorMixin, LMTP):
    pass
