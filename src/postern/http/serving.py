"""The HTTP door as ``postern serve`` runs it: uvicorn, configured and guarded.

uvicorn times out idle keep-alive connections, but not a client that opens a
connection and sends its request head a byte at a time, nor one that stops in the
middle of a body; and it takes any number of connections from one address. So the
HTTP protocol here is uvicorn's (httptools) with three guards:

- the head of every request (request line and headers) must arrive within
  ``http_header_timeout`` seconds of its first byte (of the connection, for the first
  request): else ``408`` and the connection is closed;
- while a body is being received, ``http_body_timeout`` seconds of silence close the
  connection;
- at most ``http_connections_per_ip`` open connections per client address (trusted
  proxies excepted: they carry many clients): the next one is answered ``503`` and
  closed at once.

Forwarded headers (``X-Forwarded-For``, ``X-Forwarded-Proto``) are believed only from
``POSTERN_TRUSTED_PROXIES`` (none by default; uvicorn's own default trusts 127.0.0.1),
so that rate limits and the authentication log see the real peer.

``raise_file_limit`` lifts the process's soft limit of open files to its hard limit,
so that a flood of connections meets the guards above before it meets EMFILE.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import resource
from collections import Counter
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from postern.config import Settings
from postern.telemetry import metrics

log = logging.getLogger("postern.http")

# At most this many open files, whatever the hard limit allows.
MAX_FILES = 1 << 20
# Request heads larger than this are refused (h11's event size; httptools has its own).
MAX_HEAD_SIZE = 64 * 1024

_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"


def _too_many() -> bytes:
    body = b'{"error":"Too many connections from your address","code":"TooManyConnections"}'
    head = (
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
        b"retry-after: 10\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    return head + body


TOO_MANY = _too_many()


def raise_file_limit() -> tuple[int, int]:
    """Lift the soft limit of open files to the hard one (at most MAX_FILES); returns
    the limits in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = MAX_FILES if hard == resource.RLIM_INFINITY else min(hard, MAX_FILES)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as error:
            log.warning("could not raise the open files limit from %d to %d: %s", soft, wanted, error)
    return resource.getrlimit(resource.RLIMIT_NOFILE)


class HttpGuard:
    """What the connections of one HTTP listener share: the count per address."""

    def __init__(self, *, header_timeout: float, body_timeout: float, per_ip: int, trusted: list[str]):
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.per_ip = per_ip
        self._trusted = [ipaddress.ip_network(item, strict=False) for item in trusted]
        self._open: Counter[str] = Counter()

    def _is_trusted(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return False
        return any(address in network for network in self._trusted)

    def acquire(self, ip: str) -> bool:
        if self._open[ip] >= self.per_ip and not self._is_trusted(ip):
            return False
        self._open[ip] += 1
        return True

    def release(self, ip: str) -> None:
        self._open[ip] -= 1
        if self._open[ip] <= 0:
            del self._open[ip]


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the guards of the module's docstring."""

    guard: HttpGuard  # set on the subclass ``guarded_protocol`` makes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard_ip: str | None = None
        self._guard_timer: asyncio.TimerHandle | None = None
        self._in_head = False
        self._in_body = False

    # Connections ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if not self.guard.acquire(ip):
            transport.write(TOO_MANY)
            transport.close()
            return
        self._guard_ip = ip
        metrics.M.connections("http").inc()
        metrics.M.connections_open("http").inc()
        super().connection_made(transport)
        # Nothing yet: the first request's head is due within the header timeout.
        self._in_head = True
        self._arm(self.guard.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._guard_ip is None:
            return  # refused in connection_made: uvicorn never saw it
        self.guard.release(self._guard_ip)
        self._guard_ip = None
        metrics.M.connections_open("http").dec()
        self._disarm()
        super().connection_lost(exc)

    # Deadlines -------------------------------------------------------------------------

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._guard_timer = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._guard_timer is not None:
            self._guard_timer.cancel()
            self._guard_timer = None

    def _expired(self) -> None:
        self._guard_timer = None
        if self.transport.is_closing():
            return
        if self._in_head:
            log.info("HTTP: %s did not send a request head in time", self._guard_ip)
            self.transport.write(_TIMEOUT)
        else:
            log.info("HTTP: %s stopped sending a request body", self._guard_ip)
        self.transport.close()

    # Parser callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:
            # A new request on a kept-alive connection: its head is due in time too.
            self._in_head = True
            self._arm(self.guard.header_timeout)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._in_body = True
        self._arm(self.guard.body_timeout)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        if self._in_body:
            self._arm(self.guard.body_timeout)  # silence is what is timed, not the whole body

    def on_message_complete(self) -> None:
        self._in_body = False
        self._disarm()
        super().on_message_complete()


def guarded_protocol(guard: HttpGuard) -> type[GuardedHttpProtocol]:
    return type("GuardedHttpProtocol", (GuardedHttpProtocol,), {"guard": guard})


def uvicorn_config(app: Any, settings: Settings) -> uvicorn.Config:
    """The HTTP door's uvicorn configuration: guarded protocol, trusted proxies only."""
    address = settings.http_address
    trusted = settings.trusted_proxy_list
    guard = HttpGuard(
        header_timeout=settings.http_header_timeout,
        body_timeout=settings.http_body_timeout,
        per_ip=settings.http_connections_per_ip,
        trusted=trusted,
    )
    return uvicorn.Config(
        app,
        host=address.host,
        port=address.port,
        http=guarded_protocol(guard),
        log_level=settings.log_level.lower(),
        access_log=False,  # postern's own request line: http/access_log.py
        log_config=None,  # uvicorn's messages go through postern's handler (serve/logs.py)
        lifespan="off",
        server_header=False,
        # Idle keep-alive connections close after this many seconds (uvicorn's default).
        timeout_keep_alive=5,
        h11_max_incomplete_event_size=MAX_HEAD_SIZE,
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted,
    )
