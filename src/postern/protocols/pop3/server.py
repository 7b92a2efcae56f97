"""The POP3 listeners: port 110 style (STLS offered) and implicit TLS (995 style).

One ``Pop3Server`` serves both: it counts connections per client address, reads
lines of bounded length, gives them to a ``Session`` and writes its replies, streams
message bodies with back-pressure, closes idle connections (RFC 1939's autologout:
without UPDATE and without a word) and ends a user's sessions on ``UserLoggedOut``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from postern.accounts.authlog import AuthMeta
from postern.accounts.service import ApplicationPasswordRequired
from postern.errors import AuthFailed, RateLimited
from postern.events import EventBus, UserDeleted, UserLoggedOut
from postern.mailstore.pop3_view import Pop3View
from postern.protocols import streams
from postern.protocols.pop3 import parser
from postern.protocols.pop3.session import Reply, Session
from postern.telemetry import metrics

log = logging.getLogger(__name__)
log_login = logging.getLogger("postern.pop3.login")


def _log_login(login: str, ip: str, result: str) -> None:
    if result != "ok":
        metrics.M.auth_failures("pop3").inc()
    log_login.info("pop3 login %s from %s: %s", login, ip, result, extra={"door": "pop3", "user": login, "ip": ip, "result": result})


READ_SIZE = 4096
TLS_HANDSHAKE_TIMEOUT = 30.0
# Login with the peer's address: (login, password, ip) -> user id.
Authenticator = Callable[[str, str, str], Awaitable[str]]


def authenticator(accounts: Any) -> Authenticator:
    """Logins through the accounts service, with the pop3 scope: the password, or an
    application password allowed to use POP3."""

    async def authenticate(login: str, password: str, ip: str) -> str:
        result = await accounts.authenticate(login, password, "pop3", meta=AuthMeta(protocol="POP3", ip=ip))
        if result.require_2fa:
            # POP3 cannot ask for a second factor: such accounts use application passwords.
            raise AuthFailed("Use an application password")
        return str(result.user.id)

    return authenticate


def is_loopback(ip: str) -> bool:
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool((mapped or address).is_loopback)


class _TooLong:
    pass


TOO_LONG = _TooLong()


class LineReader:
    """Lines of at most ``limit`` octets (line ending excluded) from a stream. A longer
    line is skipped to its end and reported once as TOO_LONG; memory stays bounded."""

    def __init__(self, reader: asyncio.StreamReader, limit: int):
        self.reader = reader
        self.limit = limit
        self.buffer = bytearray()
        self.skipping = False

    async def readline(self) -> bytes | _TooLong | None:
        while True:
            at = self.buffer.find(b"\n")
            if at != -1:
                line = bytes(self.buffer[: at + 1])
                del self.buffer[: at + 1]
                if self.skipping or len(line) > self.limit + 2:
                    self.skipping = False
                    return TOO_LONG
                return line
            if len(self.buffer) > self.limit + 2:
                self.buffer.clear()
                self.skipping = True
            data = await self.reader.read(READ_SIZE)
            if not data:
                return None
            self.buffer += data

    def discard(self) -> None:
        """Forget everything received and not yet read (before TLS begins: a client
        must not slip commands in the clear past STLS)."""
        self.buffer.clear()
        pending = getattr(self.reader, "_buffer", None)
        if pending is not None:
            pending.clear()


class Pop3Server:
    def __init__(
        self,
        view: Pop3View,
        authenticate: Authenticator,
        bus: EventBus,
        *,
        tls_context: ssl.SSLContext | None,
        timeout: float = 600.0,
        connections_per_ip: int = 20,
        plaintext_on_loopback: bool = True,
    ):
        self.view = view
        self.authenticate = authenticate
        self.bus = bus
        self.tls_context = tls_context
        self.timeout = timeout
        self.connections_per_ip = connections_per_ip
        self.plaintext_on_loopback = plaintext_on_loopback
        self._open: Counter[str] = Counter()
        self._connections: set[asyncio.Task[Any]] = set()

    async def listen(self, host: str, port: int, *, implicit_tls: bool = False) -> asyncio.Server:
        if implicit_tls and self.tls_context is None:
            raise ValueError("implicit TLS needs a TLS context")

        async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self.serve_connection(reader, writer, implicit_tls=implicit_tls)

        return await asyncio.start_server(
            connected,
            host=host,
            port=port,
            ssl=self.tls_context if implicit_tls else None,
            ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT if implicit_tls else None,
            reuse_address=True,
        )

    async def serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, implicit_tls: bool) -> None:
        peer = writer.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if self._open[ip] >= self.connections_per_ip:
            with contextlib.suppress(Exception):
                writer.write(b"-ERR [SYS/TEMP] Too many connections from your address\r\n")
                await asyncio.wait_for(writer.drain(), 5)
            writer.close()
            return
        self._open[ip] += 1
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        metrics.M.connections("pop3").inc()
        metrics.M.connections_open("pop3").inc()
        connection = None
        try:
            connection = _Connection(self, reader, writer, ip, implicit_tls)
            await connection.run()
        except (ConnectionError, ssl.SSLError, TimeoutError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("POP3: connection from %s failed", ip)
        finally:
            metrics.M.connections_open("pop3").dec()
            if connection is not None and connection.login is not None:
                log_login.info("pop3 logout %s from %s", connection.login, ip, extra={"door": "pop3", "user": connection.login, "ip": ip})
            if task is not None:
                self._connections.discard(task)
            self._open[ip] -= 1
            if self._open[ip] <= 0:
                del self._open[ip]
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 5)


class _Connection:
    def __init__(self, server: Pop3Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ip: str, implicit_tls: bool):
        self.server = server
        self.reader = reader
        self.writer = writer
        self.ip = ip
        self.lines = LineReader(reader, parser.MAX_LINE)

        self.login: str | None = None

        async def authenticate(login: str, password: str) -> str:
            # One line per login (the login name, never the password).
            try:
                user_id = await server.authenticate(login, password, ip)
            except RateLimited:
                _log_login(login, ip, "rate limited")
                raise
            except ApplicationPasswordRequired:
                _log_login(login, ip, "application password required")
                raise
            except Exception:
                _log_login(login, ip, "failed")
                raise
            _log_login(login, ip, "ok")
            self.login = login
            return user_id

        self.session = Session(
            server.view,
            authenticate,
            secure=implicit_tls,
            plaintext_allowed=server.plaintext_on_loopback and is_loopback(ip),
            tls_available=server.tls_context is not None and not implicit_tls,
        )
        self.watcher: asyncio.Task[None] | None = None

    async def run(self) -> None:
        session = self.session
        try:
            await self.send(session.greeting())
            sasl = False
            while True:
                try:
                    async with asyncio.timeout(self.server.timeout):
                        line = await self.lines.readline()
                except TimeoutError:
                    return  # autologout: no UPDATE, no answer (RFC 1939 section 3)
                if line is None:
                    return
                reply = await self.respond(line, sasl)
                sasl = reply.sasl
                await self.send(reply)
                if reply.start_tls:
                    await self.start_tls()
                if session.user_id is not None and self.watcher is None:
                    self.watcher = asyncio.create_task(self.watch(session.user_id))
                if reply.close:
                    return
        finally:
            if self.watcher is not None:
                self.watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self.watcher

    async def respond(self, line: bytes | object, sasl: bool) -> Reply:
        session = self.session
        if line is TOO_LONG:
            reply = session.line_too_long()
            reply.sasl = False
            return reply
        assert isinstance(line, bytes)
        try:
            if sasl:
                return await session.sasl_response(line)
            command = parser.parse(line)
            if isinstance(command, parser.ParseError):
                return session.bad_command(command.message)
            return await session.handle(command)
        except Exception:
            log.exception("POP3: command failed")
            return session.internal_error()

    async def send(self, reply: Reply) -> None:
        writer = self.writer
        streams.write(writer, reply.line.encode("utf-8") + b"\r\n")
        if reply.body is not None:
            if isinstance(reply.body, AsyncIterator):
                body = reply.body
                try:
                    async for chunk in body:
                        streams.write(writer, chunk)
                        await self.drain()
                finally:
                    # A client gone mid-message: let go of the blob now, not at GC.
                    close = getattr(body, "aclose", None)
                    if close is not None:
                        await close()
            else:
                for chunk in reply.body:
                    streams.write(writer, chunk)
                    await self.drain()
            streams.write(writer, b".\r\n")
        await self.drain()

    async def drain(self) -> None:
        # A client that stops reading is as idle as one that stops writing.
        async with asyncio.timeout(self.server.timeout):
            await self.writer.drain()

    async def start_tls(self) -> None:
        assert self.server.tls_context is not None
        self.lines.discard()
        await self.writer.start_tls(self.server.tls_context, ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT)
        self.session.tls_started()

    async def watch(self, user_id: str) -> None:
        """Close the connection when the user is logged out (or deleted): no UPDATE."""
        with self.server.bus.subscribe(user_id) as subscription:
            while True:
                event = await subscription.get()
                if isinstance(event, (UserLoggedOut, UserDeleted)):
                    log.info("POP3: closing a session of %s (logged out)", user_id)
                    self.writer.transport.abort()
                    return
