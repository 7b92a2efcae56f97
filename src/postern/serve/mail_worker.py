"""A mail worker process: the MX, LMTP and IMAP sessions of ``postern serve`` when
POSTERN_MAIL_WORKERS is above 1 (see ``workers.py`` and ``server.MailWorkers``,
which starts it with
``python -c "from postern.serve.mail_worker import main; main()" <channel fd> <parent pid>``).

It reads its settings from the channel, builds the services of a postern process
(the parent has migrated the database already), takes the connections its parent
hands it, and stops when the parent asks or goes away. It imports nothing of the HTTP
side, to start quickly.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import pickle
import signal
import socket
import sys

from postern.config import Settings
from postern.delivery.outbound import QueueWakeup
from postern.protocols.imap.server import serve_accepted
from postern.protocols.smtp.handlers import InboundHandler
from postern.protocols.smtp.server import session_factory
from postern.serve.logs import configure as configure_logging
from postern.serve.runtime import Runtime
from postern.serve.tls import server_context
from postern.serve.workers import Receiver, StreamDoor

SMTP_DOORS = ("smtp", "lmtp")
# At a stop, how long the messages being stored may take to be answered.
FINISH_TIMEOUT = 10.0


def _die_with_parent(parent_pid: int) -> None:
    """A worker never outlives ``serve``: the kernel kills it when its parent dies
    (Linux), and its channel reaching end of file stops it anywhere."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:
        os._exit(1)  # the parent died before the line above


def main() -> None:
    """Entry point of a mail worker process (started by ``MailWorkers``)."""
    channel = socket.socket(fileno=int(sys.argv[1]))
    _die_with_parent(int(sys.argv[2]))
    data = channel.recv(1 << 20)
    if not data:
        return
    settings: Settings = pickle.loads(data)  # noqa: S301 (from the process that started this one)
    configure_logging(settings.log_level, settings.log_format, worker=True)
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(_serve(settings, channel))


async def _serve(settings: Settings, channel: socket.socket) -> None:
    runtime = Runtime.build(settings)
    # A worker's statements are all short (recipient lookups, batch appends): it runs
    # them in its event loop's thread rather than through aiosqlite's thread.
    runtime.db.run_statements_inline()
    receiver: Receiver | None = None
    loop = asyncio.get_running_loop()
    try:
        tls = server_context(settings.tls_cert, settings.tls_key) if settings.tls_cert and settings.tls_key else None
        factories = {
            door: session_factory(
                door,
                InboundHandler(runtime.router, runtime.inbound, lmtp=door == "lmtp", max_recipients=settings.smtp_max_recipients),
                hostname=settings.hostname,
                max_message_size=settings.max_message_size,
                tls_context=tls,
                timeout=settings.smtp_timeout,
                limiter=None,
            )
            for door in SMTP_DOORS
        }
        stream_doors: dict[str, StreamDoor] = {}
        if "imap" in settings.enabled_doors:
            imap = runtime.imap_services(tls)
            stream_doors["imap"] = lambda sock: serve_accepted(imap, sock)
            stream_doors["imaps"] = lambda sock: serve_accepted(imap, sock, implicit_tls=True)
        # The events of this worker's changes reach its own sessions and go to the
        # parent, which passes them to its bus and the other workers; theirs come
        # back the other way.
        receiver = Receiver(channel, factories, stream_doors, on_events=runtime.bus.deliver, on_gap=runtime.bus.mark_all_overflowed)
        runtime.bus.forward_to(receiver.forward_events)
        # Rows queued here (alias forwards) are delivered by the parent's queue worker.
        runtime.outbound.wake = lambda: receiver.forward_events([QueueWakeup("")])  # type: ignore[method-assign]
        # The parent decides when to stop (it asks, or it goes away); a terminal's
        # Ctrl-C reaches the parent too.
        loop.add_signal_handler(signal.SIGINT, lambda: None)
        loop.add_signal_handler(signal.SIGTERM, receiver.stopped.set)
        # What was built to start lives as long as the process: leave it out of the
        # cyclic collector's passes, which otherwise walk all of it again and again
        # (about 5% of a worker's CPU while it delivers).
        gc.collect()
        gc.freeze()
        receiver.start()
        await receiver.stopped.wait()
        # Stopping: the messages being stored get their answers first.
        await receiver.finish(FINISH_TIMEOUT)
    finally:
        if receiver is not None:
            receiver.close()
        await runtime.close()
