"""``postern serve``: every door of one process in one asyncio event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator

import uvicorn

from postern import __version__
from postern.config import Settings, parse_listen
from postern.delivery import queue_owner
from postern.errors import DomainError
from postern.http.app import create_app
from postern.protocols.smtp.handlers import InboundHandler, SubmissionHandler
from postern.protocols.smtp.server import start_listener
from postern.runtime import Runtime
from postern.tls import ensure_self_signed, server_context

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
        except Exception:
            log.exception("garbage collection failed; retrying next round")


def _smtp_authenticator(runtime: Runtime) -> Callable[[str, str, str], Awaitable[str | None]]:
    async def authenticate(login: str, password: str, ip: str) -> str | None:
        try:
            result = await runtime.accounts.authenticate(login, password, scope="smtp")
        except DomainError:
            return None
        return result.user.id

    return authenticate


async def start_mail_doors(runtime: Runtime) -> dict[str, asyncio.Server]:
    """Open the SMTP, LMTP and submission listeners this process is configured for."""
    settings = runtime.settings
    doors = settings.enabled_doors & {"smtp", "lmtp", "submission"}
    if not doors:
        return {}
    cert, key = (settings.tls_cert, settings.tls_key)
    if cert is None or key is None:
        cert, key = await asyncio.to_thread(ensure_self_signed, settings.data_dir / "tls", settings.hostname)
    tls = server_context(cert, key)
    listeners: dict[str, asyncio.Server] = {}
    try:
        for door, listen in (("smtp", settings.smtp_listen), ("lmtp", settings.lmtp_listen), ("submission", settings.submission_listen)):
            if door not in doors:
                continue
            address = parse_listen(listen)
            if door == "submission":
                handler: InboundHandler | SubmissionHandler = SubmissionHandler(runtime.submission, max_recipients=settings.smtp_max_recipients)
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


def bound_port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


async def serve(settings: Settings, *, announce: Callable[[str], None] = print) -> None:
    # aiosmtpd announces every connection's AUTH mechanisms at INFO, and warns about
    # its own deprecated attribute on every login.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    runtime = Runtime.build(settings)
    await runtime.start(create_token=False)
    doors = settings.enabled_doors

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    announce(f"postern {__version__}")
    announce(f"  data directory: {settings.data_dir.resolve()}")
    announce(f"  database:       {runtime.db.url.render_as_string(hide_password=True)}")
    announce(f"  blob store:     {settings.resolved_blob_store}")

    tasks: list[asyncio.Task[None]] = []
    mail_servers: list[asyncio.Server] = []
    http: _HttpServer | None = None
    owner: queue_owner.QueueOwner | None = None
    try:
        listeners = await start_mail_doors(runtime)
        mail_servers = list(listeners.values())
        labels = {"smtp": "SMTP (MX):     ", "lmtp": "LMTP:          ", "submission": "submission:    "}
        for door, server in listeners.items():
            announce(f"  {labels[door]} {parse_listen(getattr(settings, door + '_listen')).host}:{bound_port(server)}")
        if "http" in doors:
            address = settings.http_address
            http = _HttpServer(
                uvicorn.Config(
                    create_app(runtime),
                    host=address.host,
                    port=address.port,
                    log_level=settings.log_level.lower(),
                    access_log=False,
                    lifespan="off",
                    server_header=False,
                )
            )
            tasks.append(asyncio.create_task(http.run_until_stopped(address), name="http"))
            while not http.started:
                if tasks[0].done():
                    await tasks[0]  # raises why it stopped
                await asyncio.sleep(0.01)
            announce(f"  HTTP:           http://{address}/  (admin API, /health, /openapi.json)")
        if "queue" in doors:
            # Rows this data directory's worker left "sending" when it died are its own to retry.
            owner = queue_owner.acquire(settings.data_dir)
            tasks.append(asyncio.create_task(runtime.outbound.run(owner.id if owner.exclusive else None), name="queue"))
        if "gc" in doors:
            tasks.append(asyncio.create_task(_collect_garbage(runtime, settings.gc_interval), name="gc"))
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
        if http is not None:
            http.should_exit = True
        for task in tasks:
            if task.get_name() == "http":
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, timeout=10)
            else:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if owner is not None:
            owner.release()
        for server in mail_servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), timeout=5)
        await runtime.close()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        announce("stopped")
