"""``postern serve``: every door of one process in one asyncio event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import uvicorn

from postern import __version__
from postern.accounts.authlog import AuthMeta
from postern.accounts.service import ApplicationPasswordRequired
from postern.config import Settings, parse_listen
from postern.delivery import queue_owner
from postern.delivery.outbound import QueueWakeup
from postern.errors import DomainError, RateLimited
from postern.http.app import create_app
from postern.http.serving import raise_file_limit, uvicorn_config
from postern.mailstore.pop3_view import Pop3View
from postern.protocols.imap.server import start_listener as start_imap_listener
from postern.protocols.pop3.server import Pop3Server, authenticator
from postern.protocols.smtp.handlers import InboundHandler, SubmissionHandler
from postern.protocols.smtp.server import start_listener
from postern.rules.service import FOLLOWED_EVENTS
from postern.serve import run_marks
from postern.serve.runtime import Runtime
from postern.serve.tls import ensure_self_signed, server_context
from postern.serve.workers import Dispatcher, WorkerLink, channel_pair
from postern.telemetry import metrics

log = logging.getLogger("postern")

# Sweep for orphan blobs once every this many garbage collection rounds.
ORPHAN_SWEEP_EVERY = 24


class _HttpServer(uvicorn.Server):
    """uvicorn without its own signal handling: ``serve`` owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def run_until_stopped(self, address: object) -> None:
        try:
            await self.serve()
        except SystemExit:
            # uvicorn exits the process when it cannot bind; asyncio would let that
            # escape the loop past our clean-up. It has logged the reason.
            raise OSError(f"the HTTP server could not listen on {address}") from None


async def _collect_garbage(runtime: Runtime, interval: float) -> None:
    rounds = 0
    while True:
        await asyncio.sleep(interval)
        rounds += 1
        try:
            if rounds % ORPHAN_SWEEP_EVERY == 0:
                await runtime.mailstore.sweep_orphan_blobs()
            expired, removed = await runtime.mailstore.collect_garbage()
            if expired or removed:
                log.info("garbage collection: %d expired messages, %d blobs removed", expired, removed)
            # Authentication log entries older than 30 days, ended rate-limit windows.
            await runtime.authlog.expire()
            await runtime.rate_limiter.sweep()
            await runtime.rules.sweep()  # autoreplies sent longer ago than the interval
            await runtime.registration.expire_codes()  # the user API's mailed codes
            await runtime.validation.expire()  # email validation sessions past their 24 hours
        except Exception:
            log.exception("garbage collection failed; retrying next round")


def _smtp_authenticator(runtime: Runtime) -> Callable[[str, str, str], Awaitable[str | None]]:
    async def authenticate(login: str, password: str, ip: str) -> str | None:
        # RateLimited and ApplicationPasswordRequired reach the session, which answers
        # them in SMTP's own words (protocols/smtp/session.py, _check).
        try:
            result = await runtime.accounts.authenticate(login, password, "smtp", AuthMeta(protocol="SMTP", ip=ip or None))
        except (RateLimited, ApplicationPasswordRequired):
            raise
        except DomainError:
            return None
        return result.user.id

    return authenticate


async def _tls_files(settings: Settings) -> tuple[Path, Path]:
    if settings.tls_cert is not None and settings.tls_key is not None:
        return settings.tls_cert, settings.tls_key
    return await asyncio.to_thread(ensure_self_signed, settings.data_dir / "tls", settings.hostname)


async def start_mail_doors(runtime: Runtime, exclude: set[str] | frozenset[str] = frozenset()) -> dict[str, asyncio.Server]:
    """Open the SMTP, LMTP and submission listeners this process is configured for
    (but those in ``exclude``, which mail workers take)."""
    settings = runtime.settings
    doors = settings.enabled_doors & {"smtp", "lmtp", "submission"} - set(exclude)
    if not doors:
        return {}
    tls = server_context(*await _tls_files(settings))
    listeners: dict[str, asyncio.Server] = {}
    try:
        for door, listen in (("smtp", settings.smtp_listen), ("lmtp", settings.lmtp_listen), ("submission", settings.submission_listen)):
            if door not in doors:
                continue
            address = parse_listen(listen)
            if door == "submission":
                handler: InboundHandler | SubmissionHandler = SubmissionHandler(
                    runtime.submission, max_recipients=settings.smtp_max_recipients
                )
            else:
                handler = InboundHandler(runtime.router, runtime.inbound, lmtp=door == "lmtp", max_recipients=settings.smtp_max_recipients)
            listeners[door] = await start_listener(
                door,
                address.host,
                address.port,
                handler,
                hostname=settings.hostname,
                max_message_size=settings.max_message_size,
                tls_context=tls,
                timeout=settings.smtp_timeout,
                connections_per_ip=settings.smtp_connections_per_ip,
                authenticate_user=_smtp_authenticator(runtime) if door == "submission" else None,
            )
    except BaseException:
        for server in listeners.values():
            server.close()
        raise
    return listeners


async def start_pop3_doors(runtime: Runtime, *, plaintext_on_loopback: bool = True) -> dict[str, asyncio.Server]:
    """Open the POP3 listener (STLS offered) and, when POSTERN_POP3S_LISTEN is set, the
    implicit-TLS one: {"pop3": ..., "pop3s": ...}."""
    settings = runtime.settings
    if "pop3" not in settings.enabled_doors:
        return {}
    server = Pop3Server(
        Pop3View(runtime.mailstore),
        authenticator(runtime.accounts),
        runtime.bus,
        tls_context=server_context(*await _tls_files(settings)),
        timeout=settings.pop3_timeout,
        connections_per_ip=settings.pop3_connections_per_ip,
        plaintext_on_loopback=plaintext_on_loopback,
    )
    listeners: dict[str, asyncio.Server] = {}
    try:
        for door, listen in (("pop3", settings.pop3_listen), ("pop3s", settings.pop3s_listen)):
            if listen:
                address = parse_listen(listen)
                listeners[door] = await server.listen(address.host, address.port, implicit_tls=door == "pop3s")
    except BaseException:
        for listener in listeners.values():
            listener.close()
        raise
    return listeners


async def start_imap_doors(runtime: Runtime) -> dict[str, asyncio.Server]:
    """Open the IMAP listener (STARTTLS offered) and, when POSTERN_IMAPS_LISTEN is set,
    the implicit-TLS one: {"imap": ..., "imaps": ...}."""
    settings = runtime.settings
    if "imap" not in settings.enabled_doors:
        return {}
    services = runtime.imap_services(server_context(*await _tls_files(settings)))
    listeners: dict[str, asyncio.Server] = {}
    try:
        for door, listen in (("imap", settings.imap_listen), ("imaps", settings.imaps_listen)):
            if listen:
                address = parse_listen(listen)
                listeners[door] = await start_imap_listener(services, address.host, address.port, implicit_tls=door == "imaps")
    except BaseException:
        for listener in listeners.values():
            listener.close()
        raise
    return listeners


def _worker_events(runtime: Runtime, workers: MailWorkers) -> Callable[[list[Any], WorkerLink], None]:
    """What a mail worker sends: the events of its changes, for this process's bus and
    the other workers, and word that it queued mail (alias forwards) for this
    process's queue worker."""

    def publish(events: list[Any], origin: WorkerLink) -> None:
        changes = [e for e in events if not isinstance(e, QueueWakeup)]
        if len(changes) < len(events):
            runtime.outbound.wake()
        if changes:
            runtime.bus.deliver(changes)
            workers.broadcast(changes, skip=origin)
            for forward in workers.beyond:
                forward(changes)

    return publish


def bound_port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


# Mail workers ------------------------------------------------------------------------
# With POSTERN_MAIL_WORKERS above 1, the MX, LMTP and IMAP sessions run in worker
# processes (see workers.py); this process keeps listening and deals the connections
# out. Submission and POP3 stay here, beside the outbound queue and the HTTP API.

WORKER_READY_TIMEOUT = 90.0
WORKER_STOP_TIMEOUT = 15.0


def _bind(door: str, listen: str) -> list[socket.socket]:
    """Listening sockets for ``host:port``, as asyncio's create_server would open them."""
    address = parse_listen(listen)
    infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, type_, proto, _name, sockaddr in dict.fromkeys(infos):
            sock = socket.socket(family, type_, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(sockaddr)
            except OSError as error:
                raise OSError(error.errno, f"error while attempting to bind on address {sockaddr!r}: {error.strerror}") from None
            sock.listen(511)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class MailWorkers:
    """The worker processes of the MX and LMTP doors, and the listeners they serve."""

    def __init__(self, runtime: Runtime, doors: list[str], count: int):
        self.settings = settings = runtime.settings
        self.publish = _worker_events(runtime, self)
        # Where the workers' events go beyond this process (Redis), besides its bus.
        self.beyond: list[Callable[[list[Any]], None]] = []
        self.limits: dict[str, int | None] = {
            "smtp": settings.smtp_connections_per_ip,
            "lmtp": settings.smtp_connections_per_ip,
            "imap": settings.imap_connections_per_ip,
            "imaps": settings.imap_connections_per_ip,
        }
        self.doors = doors
        self.follow_events = "imap" in doors
        self.count = count
        self.sockets: dict[str, list[socket.socket]] = {}
        self.dispatcher: Dispatcher | None = None
        self._blob = b""
        self._stopping = False
        self._respawns: set[asyncio.Task[None]] = set()

    def port(self, door: str) -> int:
        return int(self.sockets[door][0].getsockname()[1])

    async def start(self) -> None:
        try:
            for door in self.doors:
                self.sockets[door] = _bind(door, getattr(self.settings, f"{door}_listen"))
            cert, key = await _tls_files(self.settings)
            # The workers get this process's settings as they are (environment, file,
            # overrides), the certificate made here, and run no workers of their own.
            self._blob = pickle.dumps(self.settings.model_copy(update={"tls_cert": cert, "tls_key": key, "mail_workers": "1"}))
            listeners = [(door, sock) for door in self.doors for sock in self.sockets[door]]
            self.dispatcher = Dispatcher(listeners, self.limits, self._lost, self.publish)
            links = [self._spawn(number) for number in range(self.count)]
            await asyncio.wait_for(asyncio.gather(*(link.ready for link in links)), WORKER_READY_TIMEOUT)
        except BaseException:
            await self.stop()
            raise
        self.dispatcher.start_accepting()

    def broadcast(self, events: list[Any], skip: WorkerLink | None = None) -> None:
        """Events made elsewhere (this process, another worker, another ``serve``) to
        every worker's sessions. Only IMAP sessions follow every event in a worker;
        without the IMAP door there, the workers hear only of changes to the mail
        rules that their deliveries apply (rules.service.FOLLOWED_EVENTS)."""
        if self.dispatcher is None:
            return
        if not self.follow_events:
            events = [e for e in events if isinstance(e, FOLLOWED_EVENTS)]
        if events:
            self.dispatcher.broadcast(events, skip)

    def broadcast_gap(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.broadcast_gap()

    def _spawn(self, number: int) -> WorkerLink:
        assert self.dispatcher is not None
        parent, child = channel_pair()
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", "from postern.serve.mail_worker import main; main()", str(child.fileno()), str(os.getpid())],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
            )
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        parent.send(self._blob)
        link = WorkerLink(number, parent, asyncio.get_running_loop().create_future(), process)
        link.ready.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved here, raised by start()
        self.dispatcher.add_worker(link)
        return link

    def _lost(self, link: WorkerLink) -> None:
        if self._stopping:
            return
        code = link.process.poll() if link.process is not None else None
        log.error("mail worker %d (pid %s) exited (%s); starting another", link.number, getattr(link.process, "pid", "?"), code)
        metrics.M.worker_restarts.inc()
        if link.process is not None:
            metrics.process_exited(link.process.pid)
        task = asyncio.get_running_loop().create_task(self._respawn(link))
        self._respawns.add(task)
        task.add_done_callback(self._respawns.discard)

    async def _respawn(self, link: WorkerLink) -> None:
        if link.process is not None:
            await asyncio.to_thread(link.process.wait)
        await asyncio.sleep(1.0)
        if not self._stopping and self.dispatcher is not None:
            self.dispatcher.workers.remove(link)
            self._spawn(link.number)

    async def stop(self) -> None:
        """Stop listening, ask every worker to finish, and wait for them (killing any
        that does not end in time)."""
        self._stopping = True
        for task in self._respawns:
            task.cancel()
        dispatcher = self.dispatcher
        if dispatcher is None:
            for sockets in self.sockets.values():
                for sock in sockets:
                    sock.close()
            return
        dispatcher.stop_accepting()
        dispatcher.stop_workers()
        processes = [w.process for w in dispatcher.workers if w.process is not None]

        def wait_all() -> None:
            for process in processes:
                try:
                    process.wait(timeout=WORKER_STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

        await asyncio.to_thread(wait_all)
        dispatcher.close()


async def _start_event_relay(runtime: Runtime, workers: MailWorkers | None) -> Any:
    """Share change events with the other ``postern serve`` processes through Redis:
    those of this process and its workers go out; theirs reach this process's bus and
    its workers."""

    def deliver(events: list[Any]) -> None:
        runtime.bus.deliver(events)
        if workers is not None:
            workers.broadcast(events)

    def on_gap() -> None:
        runtime.bus.mark_all_overflowed()
        if workers is not None:
            workers.broadcast_gap()

    # Imported here: only a process configured for Redis needs it.
    from postern.serve.event_relay import RedisEventRelay

    relay = RedisEventRelay(runtime.settings.redis_url or "", deliver, on_gap, channel=runtime.settings.event_channel)
    await relay.start()
    runtime.bus.forward_to(relay.publish)
    if workers is not None:
        workers.beyond.append(relay.publish)
    return relay


async def _start_metrics_listener(runtime: Runtime, listen: str, tasks: list[asyncio.Task[None]]) -> tuple[_HttpServer, str]:
    """POSTERN_METRICS_LISTEN: /metrics alone, without a token."""
    from postern.http.metrics_endpoint import MetricsApp

    address = parse_listen(listen)
    config = uvicorn.Config(
        MetricsApp(runtime), host=address.host, port=address.port, access_log=False, log_config=None, lifespan="off", server_header=False
    )
    server = _HttpServer(config)
    task = asyncio.create_task(server.run_until_stopped(listen), name="metrics")
    tasks.append(task)
    while not server.started:
        if task.done():
            await task
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, f"{address.host}:{port}"


def _worker_doors(settings: Settings) -> list[str]:
    """The doors the mail workers serve: MX, LMTP and IMAP (IMAPS when it listens)."""
    doors: list[str] = [d for d in ("smtp", "lmtp", "imap") if d in settings.enabled_doors]
    if "imap" in doors and settings.imaps_listen:
        doors.append("imaps")
    return doors


async def serve(settings: Settings, *, announce: Callable[[str], None] = print) -> None:
    # aiosmtpd announces every connection's AUTH mechanisms at INFO, and warns about
    # its own deprecated attribute on every login.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # Before anything opens: a flood of connections meets the doors' limits, not EMFILE
    # (the mail workers inherit it).
    raise_file_limit()
    runtime = Runtime.build(settings)
    await runtime.start(create_token=False)
    doors = settings.enabled_doors
    mark = run_marks.acquire(settings.data_dir)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    announce(f"postern {__version__}")
    announce(f"  data directory: {settings.data_dir.resolve()}")
    announce(f"  database:       {runtime.db.url.render_as_string(hide_password=True)}")
    announce(f"  blob store:     {settings.resolved_blob_store}")
    if mark.previous_run_unclean and runtime.db.is_sqlite:
        # Before any door opens: see run_marks. (PostgreSQL shows a commit to other
        # sessions only once it is on disk.)
        gap = await runtime.mailstore.advance_counters_after_unclean_stop()
        announce(f"  unclean stop:   the last run did not stop cleanly; every folder's next UID and MODSEQ moved on by {gap:,}")

    tasks: list[asyncio.Task[None]] = []
    mail_servers: list[asyncio.Server] = []
    http: _HttpServer | None = None
    metrics_server: _HttpServer | None = None
    owner: queue_owner.QueueOwner | None = None
    owners: list[queue_owner.QueueOwner] = []
    workers: MailWorkers | None = None
    relay: Any = None  # RedisEventRelay
    try:
        worker_count = settings.resolved_mail_workers
        worker_doors = _worker_doors(settings) if worker_count > 1 else []
        if worker_doors:
            workers = MailWorkers(runtime, worker_doors, worker_count)
            await workers.start()
            # This process's own events (admin API, submission, POP3) reach the workers' sessions.
            runtime.bus.forward_to(workers.broadcast)
        if settings.redis_url:
            relay = await _start_event_relay(runtime, workers)
            announce("  change events:  shared with other postern processes through Redis")

        def announce_doors(labels: dict[str, str], listeners: dict[str, asyncio.Server]) -> None:
            for door, label in labels.items():
                if door in listeners:
                    port = bound_port(listeners[door])
                elif workers is not None and door in worker_doors:
                    port = workers.port(door)
                else:
                    continue
                announce(f"  {label} {parse_listen(getattr(settings, door + '_listen')).host}:{port}")

        listeners = await start_mail_doors(runtime, exclude=set(worker_doors))
        mail_servers = list(listeners.values())
        announce_doors({"smtp": "SMTP (MX):     ", "lmtp": "LMTP:          ", "submission": "submission:    "}, listeners)
        if workers is not None:
            served = [d.upper() for d in ("smtp", "lmtp", "imap") if d in worker_doors]
            announce(
                f"  mail workers:   {worker_count} processes for {', '.join(served[:-1])}{' and ' if len(served) > 1 else ''}{served[-1]}"
            )
        pop3_listeners = await start_pop3_doors(runtime)
        mail_servers.extend(pop3_listeners.values())
        announce_doors({"pop3": "POP3:          ", "pop3s": "POP3 (TLS):    "}, pop3_listeners)
        imap_listeners = await start_imap_doors(runtime) if "imap" not in worker_doors else {}
        mail_servers.extend(imap_listeners.values())
        announce_doors({"imap": "IMAP:          ", "imaps": "IMAP (TLS):    "}, imap_listeners)
        if "http" in doors:
            address = settings.http_address
            # Guarded against slow and greedy clients; forwarded headers from trusted proxies only.
            http = _HttpServer(uvicorn_config(create_app(runtime), settings))
            tasks.append(asyncio.create_task(http.run_until_stopped(address), name="http"))
            while not http.started:
                if tasks[0].done():
                    await tasks[0]  # raises why it stopped
                await asyncio.sleep(0.01)
            announce(f"  HTTP:           http://{address}/  (admin API, /health, /openapi.json)")
        if settings.metrics and settings.metrics_listen:
            metrics_server, metrics_address = await _start_metrics_listener(runtime, settings.metrics_listen, tasks)
            announce(f"  metrics:        http://{metrics_address}/metrics  (no token: keep this listener private)")
        if "queue" in doors:
            # Rows this data directory's worker left "sending" when it died are its own to retry.
            owner = queue_owner.acquire(settings.data_dir)
            tasks.append(asyncio.create_task(runtime.outbound.run(owner.id if owner.exclusive else None), name="queue"))
        if "gc" in doors:
            tasks.append(asyncio.create_task(_collect_garbage(runtime, settings.gc_interval), name="gc"))
        if "remote" in doors:
            # Remote identities: fetches this data directory's scheduler left leased when it died are its own.
            remote_owner = queue_owner.acquire(settings.data_dir, "remote-owner")
            owners.append(remote_owner)
            tasks.append(asyncio.create_task(runtime.remote_scheduler.run(remote_owner.id, remote_owner.exclusive), name="remote"))
        new_token = await runtime.admin_token.ensure()
        if not settings.admin_auth:
            announce("  admin API:      WITHOUT an access token (POSTERN_ADMIN_AUTH=false)")
        elif new_token:
            announce(f"  admin token:    {new_token}")
            announce("                  (shown only now; `postern token` makes a new one)")
        elif settings.admin_token:
            announce("  admin token:    from the configuration")
        announce("ready")
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopper and task.exception():
                raise task.exception()  # type: ignore[misc]
        stopper.cancel()
    finally:
        for server in mail_servers:
            server.close()
        if workers is not None:
            await workers.stop()
        if relay is not None:
            await relay.close()
        if http is not None:
            http.should_exit = True
        if metrics_server is not None:
            metrics_server.should_exit = True
        for task in tasks:
            if task.get_name() in ("http", "metrics"):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, timeout=10)
            else:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if owner is not None:
            owner.release()
        for other in owners:
            other.release()
        for server in mail_servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), timeout=5)
        await runtime.close()
        mark.release()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        announce("stopped")
