"""``postern serve``: every door of one process in one asyncio event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator

import uvicorn

from postern import __version__
from postern.config import Settings
from postern.http.app import create_app
from postern.runtime import Runtime

log = logging.getLogger("postern")

# Sweep for orphan blobs once every this many garbage collection rounds.
ORPHAN_SWEEP_EVERY = 24


class _HttpServer(uvicorn.Server):
    """uvicorn without its own signal handling: ``serve`` owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


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


async def serve(settings: Settings, *, announce: Callable[[str], None] = print) -> None:
    runtime = Runtime.build(settings)
    new_token = await runtime.start()
    app = create_app(runtime)
    address = settings.http_address
    http = _HttpServer(
        uvicorn.Config(
            app,
            host=address.host,
            port=address.port,
            log_level=settings.log_level.lower(),
            access_log=False,
            lifespan="off",
            server_header=False,
        )
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    announce(f"postern {__version__}")
    announce(f"  data directory: {settings.data_dir.resolve()}")
    announce(f"  database:       {runtime.db.url.render_as_string(hide_password=True)}")
    announce(f"  blob store:     {settings.resolved_blob_store}")
    if not settings.admin_auth:
        announce("  admin API:      WITHOUT an access token (POSTERN_ADMIN_AUTH=false)")
    elif new_token:
        announce(f"  admin token:    {new_token}")
        announce("                  (shown only now; `postern token` makes a new one)")
    elif settings.admin_token:
        announce("  admin token:    from the configuration")

    tasks = [
        asyncio.create_task(http.serve(), name="http"),
        asyncio.create_task(_collect_garbage(runtime, settings.gc_interval), name="gc"),
    ]
    try:
        while not http.started:
            if tasks[0].done():
                await tasks[0]  # startup failed: surface the error (e.g. port in use)
                raise SystemExit("the HTTP server stopped during startup")
            await asyncio.sleep(0.01)
        announce(f"  HTTP:           http://{address}/  (admin API, /health, /openapi.json)")
        announce("ready")
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopper and task.exception():
                raise task.exception()  # type: ignore[misc]
        stopper.cancel()
    finally:
        http.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(tasks[0], timeout=10)
        for task in tasks[1:]:
            task.cancel()
        await asyncio.gather(*tasks[1:], return_exceptions=True)
        await runtime.close()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        announce("stopped")
