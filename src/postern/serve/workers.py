"""Handing the connections of the MX, LMTP and IMAP doors to worker processes, and
carrying change events between the processes of one ``postern serve``.

One Python process serves on one core at most (the GIL). With
``POSTERN_MAIL_WORKERS`` above 1, ``postern serve`` keeps listening itself, but every
connection it accepts on the SMTP (MX), LMTP or IMAP door is passed, as a file
descriptor over a Unix socket (SCM_RIGHTS), to one of its worker processes, the one
with the fewest open connections. Each worker runs the sessions, the delivery and its
own group committer; the database serialises their commits (SQLite: ``BEGIN
IMMEDIATE`` and ``busy_timeout``).

The parent keeps the per-IP connection limit of the SMTP and LMTP doors exact across
workers: it counts at accept, tells the worker whether to refuse (the worker answers
421 as a single process would), and forgets a connection when its worker reports it
closed or dies. IMAP has no per-IP limit (10,000 IDLE connections may come from one
address), so its connections are only counted for the dealing.

Change events cross the processes so that an IMAP session sees every change wherever
it was made: a worker hands the events of its own changes to the parent, which
delivers them to its bus (POP3) and passes them on to the other workers; the parent's
own events (admin API, submission, POP3) and those Redis brings from other ``serve``
processes go to every worker.

The channel between parent and worker is a ``SOCK_SEQPACKET`` pair (one message per
send). Parent to worker: ``A<door> <conn id> <0|1 refused>`` with the connection's
descriptor, ``B<pickled events>`` (events made elsewhere), ``G`` (events may have
been lost: every subscriber resynchronises) and ``S`` (stop). Worker to parent: ``R``
(ready), ``C<conn id>`` (closed), and ``E<pickled events>``: the worker's own events,
and word that it queued mail. A worker also stops when the channel reaches end of
file: its parent is gone, whichever way it died (a worker never outlives ``serve``).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import dataclasses
import logging
import os
import pickle
import socket
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from postern.protocols.smtp.session import ConnectionLimiter

log = logging.getLogger("postern.serve.workers")

MAX_MESSAGE = 1 << 16
# Events per channel message (fewer when they do not fit in MAX_MESSAGE).
EVENTS_PER_MESSAGE = 100
# Event messages waiting for a busy worker's channel; beyond this they are dropped
# and the worker told to resynchronise its sessions (``G``).
MAX_WAITING_MESSAGES = 10_000
# What a connection hears when no worker is there to take it (IMAPS: nothing, it
# expects TLS first).
UNAVAILABLE = {
    "smtp": b"421 4.3.2 Service not available, try again later\r\n",
    "lmtp": b"421 4.3.2 Service not available, try again later\r\n",
    "imap": b"* BYE Service not available, try again later\r\n",
}
# The doors whose connections a worker serves from end to end (IMAP): one over its
# per-IP limit is refused here, in a word (none over TLS), not handed over.
TOO_MANY = {
    "imap": b"* BYE Too many connections from your address, try again later\r\n",
    "imaps": b"",
}


def event_messages(kind: bytes, events: list[Any]) -> list[bytes]:
    """``events`` as channel messages of at most MAX_MESSAGE bytes, each ``kind`` and a
    pickled list. A single event too large (a flag change of many thousand UIDs) is
    split by its UIDs."""
    out: list[bytes] = []

    def pack(batch: list[Any]) -> None:
        data = kind + pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
        if len(data) <= MAX_MESSAGE:
            out.append(data)
        elif len(batch) > 1:
            half = len(batch) // 2
            pack(batch[:half])
            pack(batch[half:])
        else:
            event = batch[0]
            uids = getattr(event, "uids", None)
            if not uids or len(uids) < 2:
                log.error("an event too large for the worker channel was dropped: %r", type(event).__name__)
                return
            half = len(uids) // 2
            pack([dataclasses.replace(event, uids=uids[:half])])
            pack([dataclasses.replace(event, uids=uids[half:])])

    for start in range(0, len(events), EVENTS_PER_MESSAGE):
        pack(events[start : start + EVENTS_PER_MESSAGE])
    return out


def channel_pair() -> tuple[socket.socket, socket.socket]:
    """(parent end, worker end); the worker end is inheritable, for the worker's exec."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    child.set_inheritable(True)
    return parent, child


_FDS_SPACE = socket.CMSG_SPACE(4 * array.array("i").itemsize)


def _receive(sock: socket.socket) -> tuple[bytes, list[int]] | None:
    """One message without blocking; None when there is none yet, (b"", []) at EOF.

    recvmsg with MSG_DONTWAIT rather than ``socket.recv_fds``, which drops its flags
    before Python 3.12: on a blocking channel it would wait for the next message
    (uvloop's readers happen to make the descriptor non-blocking; asyncio's do not)."""
    try:
        data, ancillary, _flags, _addr = sock.recvmsg(MAX_MESSAGE, _FDS_SPACE, socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b"", []
    fds = array.array("i")
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    return data, list(fds)


@dataclass(eq=False)
class WorkerLink:
    """The parent's view of one worker."""

    number: int
    channel: socket.socket
    ready: asyncio.Future[None]
    process: Any = None  # subprocess.Popen
    connections: set[int] = field(default_factory=set)
    alive: bool = True
    # Messages the channel had no room for yet (with the descriptor of a connection
    # being handed over), and whether event messages were dropped.
    waiting: deque[tuple[bytes, socket.socket | None]] = field(default_factory=deque)
    lost_events: bool = False


class Dispatcher:
    """The parent side: accepts on the listening sockets, and deals the connections out."""

    def __init__(
        self,
        listeners: list[tuple[str, socket.socket]],
        connections_per_ip: dict[str, int | None],
        on_worker_lost: Callable[[WorkerLink], None],
        on_events: Callable[[list[Any], WorkerLink], None],
    ):
        self.listeners = listeners  # (door, listening socket)
        self.on_events = on_events
        # Doors without a per-IP limit have no limiter.
        self.limiters = {door: ConnectionLimiter(limit) for door, _ in listeners if (limit := connections_per_ip.get(door)) is not None}
        self.on_worker_lost = on_worker_lost
        self.workers: list[WorkerLink] = []
        self._open: dict[int, tuple[WorkerLink, str, str]] = {}  # conn id -> (worker, door, ip)
        self._next_id = 0
        self._loop = asyncio.get_running_loop()
        self._accepting = False

    def add_worker(self, link: WorkerLink) -> None:
        self.workers.append(link)
        self._loop.add_reader(link.channel.fileno(), self._from_worker, link)

    def start_accepting(self) -> None:
        for door, listener in self.listeners:
            listener.setblocking(False)
            self._loop.add_reader(listener.fileno(), self._accept, door, listener)
        self._accepting = True

    def stop_accepting(self) -> None:
        for _, listener in self.listeners:
            if self._accepting and listener.fileno() >= 0:
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(listener.fileno())
            listener.close()
        self._accepting = False

    def _accept(self, door: str, listener: socket.socket) -> None:
        for _ in range(64):  # a burst, then let the loop breathe
            try:
                conn, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # e.g. EMFILE: pause this listener for a second, as asyncio does
                log.warning("accepting a connection on the %s door failed: %s", door, error)
                if self._accepting:
                    self._loop.remove_reader(listener.fileno())
                    self._loop.call_later(1.0, self._resume, door, listener)
                return
            self._hand_over(door, conn, peer)

    def _resume(self, door: str, listener: socket.socket) -> None:
        if self._accepting and listener.fileno() >= 0:
            self._loop.add_reader(listener.fileno(), self._accept, door, listener)

    def _ready_workers(self) -> list[WorkerLink]:
        return [w for w in self.workers if w.alive and w.ready.done() and not w.ready.cancelled() and w.ready.exception() is None]

    def _hand_over(self, door: str, conn: socket.socket, peer: Any) -> None:
        ip = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        limiter = self.limiters.get(door)
        allowed = limiter.acquire(ip) if limiter is not None else True
        if not allowed and door in TOO_MANY:
            with contextlib.suppress(OSError):
                conn.setblocking(False)
                conn.send(TOO_MANY[door])
            conn.close()
            return
        workers = self._ready_workers()
        if not workers:  # between a worker's death and its replacement
            if allowed and limiter is not None:
                limiter.release(ip)
            with contextlib.suppress(OSError):
                conn.setblocking(False)
                conn.send(UNAVAILABLE.get(door, b""))
            conn.close()
            return
        worker = min(workers, key=lambda w: len(w.connections))
        self._next_id += 1
        conn_id = self._next_id
        if allowed:
            worker.connections.add(conn_id)
            self._open[conn_id] = (worker, door, ip)
        if not self._send(worker, f"A{door} {conn_id} {0 if allowed else 1}".encode(), conn):
            self._release(conn_id)

    def _release(self, conn_id: int) -> None:
        entry = self._open.pop(conn_id, None)
        if entry is not None:
            worker, door, ip = entry
            worker.connections.discard(conn_id)
            limiter = self.limiters.get(door)
            if limiter is not None:
                limiter.release(ip)

    # Events to the workers -----------------------------------------------------------

    def broadcast(self, events: list[Any], skip: WorkerLink | None = None) -> None:
        """Give events made elsewhere to every worker (but ``skip``, where they were made)."""
        if not events:
            return
        messages: list[bytes] | None = None
        for link in self.workers:
            if link is skip or not link.alive:
                continue
            if messages is None:
                messages = event_messages(b"B", events)
            for data in messages:
                self._send(link, data)

    def broadcast_gap(self) -> None:
        """Tell every worker that events may have been lost."""
        for link in self.workers:
            if link.alive:
                self._send(link, b"G")

    def _send(self, link: WorkerLink, data: bytes, conn: socket.socket | None = None) -> bool:
        """Send a message (with a connection's descriptor, closed here once sent) without
        ever blocking: while the worker's channel is full (it is busy, or itself
        blocked sending to this process), messages wait in order. Waiting events
        beyond MAX_WAITING_MESSAGES are dropped for a ``G``; connections never are.
        False when the worker is gone (``conn`` is closed)."""
        if not link.waiting:
            try:
                self._send_now(link, data, conn)
                return True
            except (BlockingIOError, InterruptedError):
                self._loop.add_writer(link.channel.fileno(), self._flush_waiting, link)
            except OSError:
                if conn is not None:
                    conn.close()
                return False  # _lost hears of it from the reader
        if conn is None and len(link.waiting) >= MAX_WAITING_MESSAGES:
            link.waiting = deque(entry for entry in link.waiting if entry[1] is not None)
            link.lost_events = True
        link.waiting.append((data, conn))
        return True

    @staticmethod
    def _send_now(link: WorkerLink, data: bytes, conn: socket.socket | None) -> None:
        if conn is None:
            link.channel.send(data, socket.MSG_DONTWAIT)
        else:
            socket.send_fds(link.channel, [data], [conn.fileno()], socket.MSG_DONTWAIT)
            conn.close()  # the worker holds its own descriptor now

    def _flush_waiting(self, link: WorkerLink) -> None:
        while link.alive and (link.waiting or link.lost_events):
            data, conn = link.waiting[0] if link.waiting else (b"G", None)
            try:
                self._send_now(link, data, conn)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                break
            if link.waiting:
                link.waiting.popleft()
            else:
                link.lost_events = False
        with contextlib.suppress(Exception):
            self._loop.remove_writer(link.channel.fileno())

    def _from_worker(self, link: WorkerLink) -> None:
        while True:
            message = _receive(link.channel)
            if message is None:
                return
            data, fds = message
            for fd in fds:
                os.close(fd)
            if not data:
                self._lost(link)
                return
            if data == b"R":
                if not link.ready.done():
                    link.ready.set_result(None)
            elif data[:1] == b"C":
                with contextlib.suppress(ValueError):
                    self._release(int(data[1:]))
            elif data[:1] == b"E":
                try:
                    events = pickle.loads(data[1:])  # noqa: S301 (from a worker this process started)
                    self.on_events(events, link)
                except Exception:
                    log.exception("publishing the events of mail worker %d failed", link.number)

    def _lost(self, link: WorkerLink) -> None:
        if not link.alive:
            return
        link.alive = False
        for _, conn in link.waiting:
            if conn is not None:
                conn.close()
        link.waiting.clear()
        with contextlib.suppress(Exception):
            self._loop.remove_reader(link.channel.fileno())
        with contextlib.suppress(Exception):
            self._loop.remove_writer(link.channel.fileno())
        for conn_id in list(link.connections):
            self._release(conn_id)
        link.channel.close()
        if not link.ready.done():
            link.ready.set_exception(OSError(f"mail worker {link.number} exited before it was ready"))
        self.on_worker_lost(link)

    def stop_workers(self) -> None:
        for link in self.workers:
            if link.alive:
                with contextlib.suppress(OSError):
                    link.channel.send(b"S")

    def close(self) -> None:
        self.stop_accepting()
        for link in self.workers:
            if link.alive:
                link.alive = False
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(link.channel.fileno())
                with contextlib.suppress(Exception):
                    self._loop.remove_writer(link.channel.fileno())
                link.channel.close()


class _Ticket:
    """A session's connection limiter in a worker: the parent has counted already."""

    def __init__(self, receiver: Receiver, conn_id: int, refused: bool):
        self.receiver = receiver
        self.conn_id = conn_id
        self.refused = refused

    def acquire(self, ip: str) -> bool:
        return not self.refused

    def release(self, ip: str) -> None:
        self.receiver.closed(self.conn_id)


#: A door served by a coroutine that runs the whole connection (IMAP).
StreamDoor = Callable[[socket.socket], Awaitable[None]]


class Receiver:
    """The worker side: takes the connections its parent sends, and tells it when
    they close; passes on the events the parent sends. ``stopped`` is set when the
    parent says stop or goes away.

    ``factories`` make the asyncio protocol of a door's session (SMTP, LMTP), whose
    ``limiter`` is the parent's decision; ``stream_doors`` serve a connection from
    start to end (IMAP)."""

    def __init__(
        self,
        channel: socket.socket,
        factories: dict[str, Callable[[], Any]],
        stream_doors: dict[str, StreamDoor] | None = None,
        *,
        on_events: Callable[[list[Any]], None] | None = None,
        on_gap: Callable[[], None] | None = None,
    ):
        self.channel = channel
        self.factories = factories
        self.stream_doors = stream_doors or {}
        self.on_events = on_events
        self.on_gap = on_gap
        self.stopped = asyncio.Event()
        self.sessions: weakref.WeakSet[Any] = weakref.WeakSet()
        self._loop = asyncio.get_running_loop()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._streams: set[asyncio.Task[Any]] = set()

    def start(self) -> None:
        self._loop.add_reader(self.channel.fileno(), self._from_parent)
        self._send(b"R")

    def _send(self, data: bytes) -> None:
        try:
            self.channel.send(data)
        except OSError:
            self.stopped.set()  # the parent is gone

    def closed(self, conn_id: int) -> None:
        if not self.stopped.is_set():
            self._send(b"C%d" % conn_id)

    def forward_events(self, events: list[Any]) -> None:
        """Hand this worker's events to the parent, which passes them on."""
        for data in event_messages(b"E", events):
            self._send(data)

    def _from_parent(self) -> None:
        while True:
            message = _receive(self.channel)
            if message is None:
                return
            data, fds = message
            if not data:
                self.stopped.set()
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(self.channel.fileno())
                return
            kind = data[:1]
            if kind != b"A" or len(fds) != 1:
                for fd in fds:
                    os.close(fd)
                if data == b"S":
                    self.stopped.set()
                elif kind == b"B" and self.on_events is not None:
                    try:
                        self.on_events(pickle.loads(data[1:]))  # noqa: S301 (from the process that started this one)
                    except Exception:
                        log.exception("delivering the events of another process failed")
                elif data == b"G" and self.on_gap is not None:
                    self.on_gap()
                continue
            door, conn_id, refused = data[1:].decode().split()
            sock = socket.socket(fileno=fds[0])
            if self.stopped.is_set() or (door not in self.factories and door not in self.stream_doors):
                sock.close()
                self.closed(int(conn_id))
                continue
            if door in self.stream_doors:
                task = self._loop.create_task(self._serve_stream(door, int(conn_id), sock))
                self._streams.add(task)
                task.add_done_callback(self._streams.discard)
            else:
                task = self._loop.create_task(self._open(door, int(conn_id), refused == "1", sock))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _serve_stream(self, door: str, conn_id: int, sock: socket.socket) -> None:
        try:
            sock.setblocking(False)
            await self.stream_doors[door](sock)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("serving a %s connection failed", door)
            sock.close()
        finally:
            self.closed(conn_id)

    async def _open(self, door: str, conn_id: int, refused: bool, sock: socket.socket) -> None:
        sock.setblocking(False)
        ticket = _Ticket(self, conn_id, refused)

        def factory() -> Any:
            session = self.factories[door]()
            session.limiter = ticket
            self.sessions.add(session)
            return session

        try:
            await self._loop.connect_accepted_socket(factory, sock)
        except Exception:
            log.exception("taking over a connection failed")
            sock.close()
            ticket.release("")

    async def finish(self, timeout: float) -> None:
        """Wait (up to ``timeout`` seconds) for the messages being stored to be
        answered, end the IMAP sessions (they say BYE), then close every session."""
        deadline = self._loop.time() + timeout
        while any(getattr(s, "in_data", False) for s in self.sessions) and self._loop.time() < deadline:  # noqa: ASYNC110 (no event to wait on)
            await asyncio.sleep(0.05)
        streams = list(self._streams)
        for task in streams:
            task.cancel()
        if streams:
            await asyncio.wait(streams, timeout=max(0.1, min(5.0, deadline - self._loop.time())))
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self.channel.fileno())
        for task in self._streams:
            task.cancel()
        for session in list(self.sessions):
            transport = getattr(session, "transport", None)
            if transport is not None and not transport.is_closing():
                transport.close()
        self.channel.close()
