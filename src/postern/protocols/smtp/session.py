"""aiosmtpd's protocol with postern's connection limits and authentication."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from base64 import b64decode
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, syntax

log = logging.getLogger("postern.smtp")

# (login, password) -> the authenticated user's id, or None.
Authenticate = Callable[[str, str, str], Awaitable[str | None]]


def is_loopback(peer: Any) -> bool:
    try:
        return ipaddress.ip_address(peer[0]).is_loopback
    except (TypeError, ValueError, IndexError):
        return False


class ConnectionLimiter:
    """Open connections per client IP, shared by every session of one listener."""

    def __init__(self, per_ip: int):
        self.per_ip = per_ip
        self._open: Counter[str] = Counter()

    def acquire(self, ip: str) -> bool:
        if self._open[ip] >= self.per_ip:
            return False
        self._open[ip] += 1
        return True

    def release(self, ip: str) -> None:
        self._open[ip] -= 1
        if self._open[ip] <= 0:
            del self._open[ip]


class DoorMixin:
    """What every postern SMTP/LMTP session adds to aiosmtpd's state machine."""

    limiter: ConnectionLimiter
    authenticate_user: Authenticate | None = None
    _peer_ip: str | None = None
    _refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = getattr(self, "_peer_ip", None) is None
        super().connection_made(transport)  # type: ignore[misc]
        if not first:
            return  # STARTTLS replaces the transport of a session already counted
        peer = transport.get_extra_info("peername") or ("", 0)
        self._peer_ip = str(peer[0])
        if not self.limiter.acquire(self._peer_ip):
            self._refused = True
        # AUTH in plain text only on loopback: everywhere else after STARTTLS.
        self._auth_require_tls = not is_loopback(peer)  # type: ignore[attr-defined]

    def connection_lost(self, error: Exception | None) -> None:
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

    def _timeout_cb(self) -> None:
        # aiosmtpd just drops an idle connection; say why first (RFC 5321 4.5.3.2).
        transport = self.transport  # type: ignore[attr-defined]
        if transport is not None and not transport.is_closing():
            transport.write(f"421 4.4.2 {self.hostname} Error: timeout exceeded\r\n".encode())  # type: ignore[attr-defined]
        super()._timeout_cb()  # type: ignore[misc]

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
    lone_dot_in_data = False

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        self.lone_dot_in_data = False
        reader = self._reader  # type: ignore[has-type]
        self._reader = _DataReader(reader, self)
        try:
            await super().smtp_DATA(arg)  # type: ignore[misc]
        finally:
            self._reader = reader
            if self.transport is not None:  # type: ignore[attr-defined]
                self._reset_timeout()  # type: ignore[attr-defined]

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
        try:
            user_id = await self.authenticate_user(
                login.decode("utf-8", errors="replace"), password.decode("utf-8", errors="replace"), self._peer_ip or ""
            )
        except Exception:
            log.exception("authentication failed with an error")
            await self.push("454 4.7.0 Temporary authentication failure")  # type: ignore[attr-defined]
            return AuthResult(success=False, handled=True)
        if user_id is None:
            await self.push("535 5.7.8 Authentication credentials invalid")  # type: ignore[attr-defined]
            return AuthResult(success=False, handled=True)
        return AuthResult(success=True, handled=False, auth_data=user_id, message="235 2.7.0 Authentication successful")


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
