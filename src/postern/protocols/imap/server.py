"""The IMAP listener and its connection loop (asyncio streams, one task per
connection, no per-connection threads or large buffers).

Each connection feeds what arrives to a :class:`~.parser.CommandReader`, runs the
commands it yields one after another (:mod:`.dispatch`), and meanwhile follows the
user's domain events, so that IDLE pushes changes at once and an operator's logout
ends the session with ``* BYE`` even while the client is silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from postern.accounts.service import Accounts
from postern.errors import DomainError
from postern.events import EventBus
from postern.mailstore.imap_view import ImapView
from postern.mailstore.service import AppendRequest, AppendResult, MailStore
from postern.protocols import streams
from postern.protocols.streams import ConnectionLimiter
from postern.telemetry import metrics

from . import encode as enc
from .dispatch import dispatch
from .header_cache import HeaderCache
from .parser import (
    CommandError,
    CommandReader,
    CommandReceived,
    ContinuationRequired,
    ReaderEvent,
)
from .session import ConnectionClosed, Session

log = logging.getLogger("postern.imap")
log_login = logging.getLogger("postern.imap.login")

READ_SIZE = 64 * 1024
#: Literals a client may send before logging in (LOGIN with literal strings).
MAX_UNAUTHENTICATED_LITERAL = 8 * 1024
#: Auto-logout (RFC 3501 §5.4: at least 30 minutes), and before login.
DEFAULT_TIMEOUT = 30 * 60.0
PREAUTH_TIMEOUT = 60.0
#: Responses are handed to the transport at the end of each command, or at this size.
OUTPUT_CHUNK = 64 * 1024


@dataclass
class ImapServices:
    """What every session of one listener shares."""

    mailstore: MailStore
    accounts: Accounts
    bus: EventBus
    hostname: str = "localhost"
    max_message_size: int = 50 * 1024 * 1024
    tls_context: ssl.SSLContext | None = None
    timeout: float = DEFAULT_TIMEOUT
    # From the greeting to a successful login, whatever is said meanwhile (NOOP,
    # CAPABILITY, failed LOGINs...): no command moves this deadline.
    preauth_timeout: float = PREAUTH_TIMEOUT
    # Open connections per client IP on this process's listeners (None: no limit;
    # with mail workers the serving process counts instead, see workers.py).
    connections_per_ip: int | None = None
    max_line_length: int = 64 * 1024
    # How APPEND stores: the process's group committer, so that concurrent APPENDs
    # (and deliveries) share a commit; the mailstore's own transaction without one.
    appender: Callable[[Sequence[AppendRequest]], Awaitable[list[AppendResult | DomainError]]] | None = None
    view: ImapView = field(init=False)
    # What FETCH ENVELOPE, SEARCH and SORT parse from message headers (see header_cache).
    header_cache: HeaderCache = field(default_factory=HeaderCache)
    # uids_after queries running, by (folder, after UID): shared by the sessions
    # that one delivery wakes at once.
    _uids_queries: dict[tuple[str, int], asyncio.Future[list[int]]] = field(default_factory=dict, init=False)
    limiter: ConnectionLimiter | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.view = ImapView(self.mailstore)
        if self.connections_per_ip is not None:
            self.limiter = ConnectionLimiter(self.connections_per_ip)
        if self.appender is None:
            self.appender = self.mailstore.append_many

    async def uids_after(self, folder_id: str, uid: int, at_least: int = 0) -> list[int]:
        """The folder's UIDs above ``uid``, ascending, covering at least ``at_least``.

        A delivery wakes every session that has the folder selected (thousands of
        idling clients of a shared mailbox): those with the same view join one query
        in flight rather than each asking the database. A shared answer that does not
        yet include ``at_least`` (the highest UID the session heard was added; the
        query started before that commit) is not taken: the session asks again."""
        key = (folder_id, uid)
        running = self._uids_queries.get(key)
        if running is None:
            running = asyncio.ensure_future(self.view.uids_after(folder_id, uid))
            self._uids_queries[key] = running
            running.add_done_callback(lambda done: self._uids_queries.pop(key, None) if self._uids_queries.get(key) is done else None)
        found = list(await asyncio.shield(running))
        if at_least > uid and (not found or found[-1] < at_least):
            found = await self.view.uids_after(folder_id, uid)
        return found


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class Connection:
    """One client connection."""

    def __init__(self, services: ImapServices, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, implicit_tls: bool) -> None:
        self.services = services
        self.stream = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        host = peer[0] if isinstance(peer, tuple) and peer else ""
        # Responses gather here and go to the socket once per command (each write to
        # the transport is a send() when its buffer is empty), or once they are large.
        self._output: list[bytes] = []
        self._output_size = 0
        self.session = Session(services, self.write, peer=host, tls=implicit_tls, loopback=_is_loopback(host))
        self.session.connection = self
        # Until login, literals are small (a LOGIN's strings): nobody unknown gets a
        # large buffer. ``authenticated`` raises the limit to the largest message.
        self.reader = CommandReader(max_line_length=services.max_line_length, max_literal_size=MAX_UNAUTHENTICATED_LITERAL)
        self.pending: deque[ReaderEvent] = deque()
        self.login_deadline = asyncio.get_running_loop().time() + services.preauth_timeout

    # -- writing ---------------------------------------------------------------

    def write(self, data: bytes) -> None:
        self._output.append(data)
        self._output_size += len(data)
        if self._output_size >= OUTPUT_CHUNK:
            self.flush()

    def flush(self) -> None:
        """Hand what was written to the transport."""
        if self._output:
            data = self._output[0] if len(self._output) == 1 else b"".join(self._output)
            self._output = []
            self._output_size = 0
            streams.write(self.writer, data)

    async def drain(self, timeout: float) -> None:
        """Flush, and wait (up to ``timeout``) until the transport's buffer is below its
        limit; at once when the socket took everything."""
        self.flush()
        transport = self.writer.transport
        if transport.get_write_buffer_size() or transport.is_closing():
            await asyncio.wait_for(self.writer.drain(), timeout)

    # -- reading ---------------------------------------------------------------

    @property
    def timeout(self) -> float:
        return self.services.preauth_timeout if self.session.state == "not_authenticated" else self.services.timeout

    async def read_data(self, *, idle: bool = False) -> bytes:
        """The next bytes from the client, following domain events meanwhile.

        Raises :class:`ConnectionClosed` at end of stream, on auto-logout and when an
        event ends the session (the caller says BYE)."""
        session = self.session
        self.flush()  # the client may wait for it before it sends more
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        if session.state == "not_authenticated" and self.login_deadline < deadline:
            deadline = self.login_deadline
        read_task = asyncio.ensure_future(self.stream.read(READ_SIZE))
        try:
            while True:
                event_task = None
                waits: set[asyncio.Future[Any]] = {read_task}
                if session.subscription is not None:
                    event_task = asyncio.ensure_future(session.subscription.queue.get())
                    waits.add(event_task)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    expired = "Too long without logging in" if deadline == self.login_deadline else "Autologout; idle for too long"
                    session.closing = session.closing or expired
                    raise ConnectionClosed
                done, _ = await asyncio.wait(waits, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                if event_task is not None and event_task not in done:
                    event_task.cancel()
                if event_task is not None and event_task in done:
                    session.on_event(event_task.result())
                    session.absorb_events()
                    if session.closing:
                        raise ConnectionClosed
                    if idle:
                        await session.flush_updates(allow_expunge=True)
                        if session.closing:
                            raise ConnectionClosed
                        await self.drain(self.services.timeout)
                if read_task in done:
                    data = read_task.result()
                    if not data:
                        raise ConnectionClosed
                    return data
        finally:
            if not read_task.done():
                read_task.cancel()

    async def next_events(self, start: Callable[[], list[ReaderEvent]], *, idle: bool = False) -> list[ReaderEvent]:
        """Switch the reader's mode with ``start`` and read until it yields events."""
        events = start()
        while not events:
            events = self.reader.feed(await self.read_data(idle=idle))
        return events

    # -- the loop ----------------------------------------------------------------

    async def run(self) -> None:
        session = self.session
        try:
            caps = " ".join(session.capabilities())
            self.write(f"* OK [CAPABILITY {caps}] {self.services.hostname} postern IMAP ready\r\n".encode())
            await self.drain(self.services.timeout)
            while session.state != "logout" and not session.closing:
                if not self.pending:
                    data = await self.read_data()
                    self.pending.extend(self.reader.feed(data))
                    continue
                event = self.pending.popleft()
                await self.on_reader_event(event)
                # A client that stops reading is logged out like one that stops writing.
                await self.drain(self.services.timeout)
                if self.reader.closed and not self.pending:
                    break
                if self.pending:
                    await asyncio.sleep(0)  # a long pipeline lets the other sessions run meanwhile
        except ConnectionClosed:
            pass
        except (TimeoutError, ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            session.closing = None
            return
        except asyncio.CancelledError:
            session.closing = session.closing or "Server shutting down"
            raise
        except Exception:  # never reached by design: every command is guarded
            log.exception("IMAP connection failed")
            session.closing = session.closing or "Internal server error"
        finally:
            await self._finish()

    async def _finish(self) -> None:
        session = self.session
        try:
            if session.closing and session.state != "logout":
                self.write(b"* BYE " + session.closing.encode("utf-8", "replace") + b"\r\n")
            with contextlib.suppress(Exception):
                await self.drain(5)
        finally:
            session.close()
            self.writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.writer.wait_closed(), 5)

    async def on_reader_event(self, event: ReaderEvent) -> None:
        session = self.session
        if isinstance(event, CommandReceived):
            await dispatch(session, event.command)
        elif isinstance(event, ContinuationRequired):
            limit = MAX_UNAUTHENTICATED_LITERAL if session.state == "not_authenticated" else self.services.max_message_size
            if event.size > limit:
                self.reader.reject_literal()
                code = b"[TOOBIG]" if session.state != "not_authenticated" else b"[LIMIT]"
                self.write(enc.status_response(event.tag, "NO" if event.tag else "BAD", "Literal too big", code))
            else:
                self.write(enc.continuation("Ready for literal data"))
        elif isinstance(event, CommandError):
            self.write(event.response())
            if event.fatal:
                session.closing = "Protocol error"
        # IdleDone and LineReceived only come while a command waits for them.

    def authenticated(self) -> None:
        self.reader.max_literal_size = self.services.max_message_size

    # -- STARTTLS ------------------------------------------------------------------

    async def start_tls(self) -> None:
        context = self.services.tls_context
        assert context is not None
        self.flush()  # the tagged OK goes in plain text
        await self.writer.drain()
        self.reader.discard_buffered()
        self.pending.clear()
        await self.writer.start_tls(context)
        self.session.tls = True


TOO_MANY_CONNECTIONS = b"* BYE Too many connections from your address, try again later\r\n"


async def _handle(services: ImapServices, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, implicit_tls: bool) -> None:
    peer = writer.get_extra_info("peername")
    ip = str(peer[0]) if isinstance(peer, tuple) and peer else ""
    limiter = services.limiter
    if limiter is not None and not limiter.acquire(ip):
        with contextlib.suppress(Exception):
            writer.write(TOO_MANY_CONNECTIONS)
            await asyncio.wait_for(writer.drain(), 5)
        writer.close()
        return
    metrics.M.connections("imap").inc()
    metrics.M.connections_open("imap").inc()
    connection = None
    try:
        connection = Connection(services, reader, writer, implicit_tls=implicit_tls)
        await connection.run()
    except asyncio.CancelledError:
        # The server is stopping (its loop cancels the handlers): the BYE is said.
        pass
    finally:
        metrics.M.connections_open("imap").dec()
        if limiter is not None:
            limiter.release(ip)
        if connection is not None and connection.session.username:
            log_login.info(
                "imap logout %s from %s",
                connection.session.username,
                ip,
                extra={"door": "imap", "user": connection.session.username, "ip": ip},
            )


async def start_listener(services: ImapServices, host: str, port: int, *, implicit_tls: bool = False) -> asyncio.Server:
    """Listen for IMAP (or IMAPS with ``implicit_tls``) on host:port."""
    ssl_context = services.tls_context if implicit_tls else None
    if implicit_tls and ssl_context is None:
        raise ValueError("IMAPS needs a TLS context")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _handle(services, reader, writer, implicit_tls)

    return await asyncio.start_server(handle, host=host, port=port, ssl=ssl_context, reuse_address=True, limit=READ_SIZE)


async def serve_accepted(services: ImapServices, sock: socket.socket, *, implicit_tls: bool = False) -> None:
    """Serve one connection another process accepted (a mail worker's IMAP door), to
    its end."""
    ssl_context = services.tls_context if implicit_tls else None
    if implicit_tls and ssl_context is None:
        raise ValueError("IMAPS needs a TLS context")
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=READ_SIZE, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock, ssl=ssl_context)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    await _handle(services, reader, writer, implicit_tls)
