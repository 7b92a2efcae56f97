"""One log line per HTTP request, and the request latency histogram.

The line has the method, the path WITHOUT the query string (``?accessToken=`` and
other secrets live there; none is ever logged), the status, the duration in ms and
the client's address. The histogram is labelled by route template
(``/users/{user}``), never by the raw path.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from postern.telemetry import metrics

log = logging.getLogger("postern.http.access")


def route_template(scope: Scope) -> str:
    """The matched route's path template, its router's prefix included ("unmatched"
    when no route matched: raw paths would make a label per URL)."""
    template = getattr(scope.get("route"), "path_format", None)
    if not template:
        return "unmatched"
    # An included router's route may be its own (without the prefix, e.g. the user
    # API's /api): the prefix is what the path has before the route's own part.
    try:
        own = template.format(**scope.get("path_params", {}))
    except (KeyError, IndexError, ValueError):
        return str(template)
    path = scope["path"]
    if own != path and path.endswith(own):
        return path[: len(path) - len(own)] + template
    return str(template)


class AccessLog:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            elapsed = time.perf_counter() - start
            template = route_template(scope)
            method = scope["method"]
            metrics.M.http_duration(method, template).observe(elapsed)
            if log.isEnabledFor(logging.INFO):
                client = scope.get("client")
                path = scope["path"]
                log.info(
                    "%s %s %d %.1fms client=%s",
                    method,
                    path,
                    status,
                    elapsed * 1000,
                    client[0] if client else "-",
                    extra={
                        "method": method,
                        "path": path,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 1),
                        "client": client[0] if client else None,
                    },
                )
