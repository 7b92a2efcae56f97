"""Handing the connections of the MX and LMTP doors to worker processes.

One Python process delivers mail on one core at most (the GIL). With
``POSTERN_MAIL_WORKERS`` above 1, ``postern serve`` keeps listening itself, but every
connection it accepts on the SMTP (MX) or LMTP door is passed, as a file descriptor
over a Unix socket (SCM_RIGHTS), to one of its worker processes, the one with the
fewest open connections. Each worker runs the aiosmtpd sessions, the delivery and its
own group committer; the database serialises their commits (SQLite: ``BEGIN
IMMEDIATE`` and ``busy_timeout``).

The parent keeps the per-IP connection limit of each door exact across workers: it
counts at accept, tells the worker whether to refuse (the worker answers 421 as a
single process would), and forgets a connection when its worker reports it closed or
dies.

The channel between parent and worker is a ``SOCK_SEQPACKET`` pair (one message per
send). Parent to worker: ``A<door> <conn id> <0|1 refused>`` with the connection's
descriptor, and ``S`` (stop). Worker to parent: ``R`` (ready), ``C<conn id>``
(closed), and ``E<pickled events>``: the change events of the worker's deliveries,
which the parent publishes on its own bus, where IMAP IDLE and POP3 follow them. A
worker also stops when the channel reaches end of file: its parent is gone,
whichever way it died (a worker never outlives ``serve``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import socket
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from postern.protocols.smtp.session import ConnectionLimiter

log = logging.getLogger("postern.smtp.workers")

MAX_MESSAGE = 1 << 16
# Events per message to the parent (each message stays well under MAX_MESSAGE).
EVENTS_PER_MESSAGE = 100


def channel_pair() -> tuple[socket.socket, socket.socket]:
    """(parent end, worker end); the worker end is inheritable, for the worker's exec."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    child.set_inheritable(True)
    return parent, child


def _receive(sock: socket.socket) -> tuple[bytes, list[int]] | None:
    """One message without blocking; None when there is none yet, (b"", []) at EOF."""
    try:
        data, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, 4, socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b"", []
    return data, fds


@dataclass(eq=False)
class WorkerLink:
    """The parent's view of one worker."""

    number: int
    channel: socket.socket
    ready: asyncio.Future[None]
    process: Any = None  # subprocess.Popen
    connections: set[int] = field(default_factory=set)
    alive: bool = True


class Dispatcher:
    """The parent side: accepts on the listening sockets, and deals the connections out."""

    def __init__(
        self,
        listeners: list[tuple[str, socket.socket]],
        connections_per_ip: int,
        on_worker_lost: Callable[[WorkerLink], None],
        on_events: Callable[[list[Any]], None],
    ):
        self.listeners = listeners  # (door, listening socket)
        self.on_events = on_events
        self.limiters = {door: ConnectionLimiter(connections_per_ip) for door, _ in listeners}
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

    def _hand_over(self, door: str, conn: socket.socket, peer: Any) -> None:
        ip = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        allowed = self.limiters[door].acquire(ip)
        workers = [w for w in self.workers if w.alive and w.ready.done() and not w.ready.cancelled() and w.ready.exception() is None]
        if not workers:  # between a worker's death and its replacement
            if allowed:
                self.limiters[door].release(ip)
            with contextlib.suppress(OSError):
                conn.setblocking(False)
                conn.send(b"421 4.3.2 Service not available, try again later\r\n")
            conn.close()
            return
        worker = min(workers, key=lambda w: len(w.connections))
        self._next_id += 1
        conn_id = self._next_id
        try:
            socket.send_fds(worker.channel, [f"A{door} {conn_id} {0 if allowed else 1}".encode()], [conn.fileno()])
        except OSError:
            if allowed:
                self.limiters[door].release(ip)
            conn.close()
            return
        conn.close()  # the worker holds its own descriptor now
        if allowed:
            worker.connections.add(conn_id)
            self._open[conn_id] = (worker, door, ip)

    def _release(self, conn_id: int) -> None:
        entry = self._open.pop(conn_id, None)
        if entry is not None:
            worker, door, ip = entry
            worker.connections.discard(conn_id)
            self.limiters[door].release(ip)

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
                    events = pickle.loads(data[1:])  # from a worker this process started
                    self.on_events(events)
                except Exception:
                    log.exception("publishing the events of mail worker %d failed", link.number)

    def _lost(self, link: WorkerLink) -> None:
        if not link.alive:
            return
        link.alive = False
        with contextlib.suppress(Exception):
            self._loop.remove_reader(link.channel.fileno())
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


class Receiver:
    """The worker side: takes the connections its parent sends, and tells it when
    they close. ``stopped`` is set when the parent says stop or goes away."""

    def __init__(self, channel: socket.socket, factories: dict[str, Callable[[], Any]]):
        self.channel = channel
        self.factories = factories
        self.stopped = asyncio.Event()
        self.sessions: weakref.WeakSet[Any] = weakref.WeakSet()
        self._loop = asyncio.get_running_loop()
        self._tasks: set[asyncio.Task[Any]] = set()

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
        """Hand change events to the parent, which publishes them."""
        for start in range(0, len(events), EVENTS_PER_MESSAGE):
            self._send(b"E" + pickle.dumps(events[start : start + EVENTS_PER_MESSAGE]))

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
            if data == b"S":
                self.stopped.set()
                for fd in fds:
                    os.close(fd)
                continue
            if data[:1] != b"A" or len(fds) != 1:
                for fd in fds:
                    os.close(fd)
                continue
            door, conn_id, refused = data[1:].decode().split()
            sock = socket.socket(fileno=fds[0])
            if self.stopped.is_set() or door not in self.factories:
                sock.close()
                self.closed(int(conn_id))
                continue
            task = self._loop.create_task(self._open(door, int(conn_id), refused == "1", sock))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

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
        answered, then close every session."""
        deadline = self._loop.time() + timeout
        while any(getattr(s, "in_data", False) for s in self.sessions) and self._loop.time() < deadline:
            await asyncio.sleep(0.05)
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self.channel.fileno())
        for session in list(self.sessions):
            transport = getattr(session, "transport", None)
            if transport is not None and not transport.is_closing():
                transport.close()
        self.channel.close()
