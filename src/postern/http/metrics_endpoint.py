"""``GET /metrics``: the Prometheus exposition of every postern process.

On the HTTP listener it is an admin route (the admin token, as ``X-Access-Token`` or
``?accessToken=``); on ``POSTERN_METRICS_LISTEN`` it is served alone, without a token
(bind that listener to an address only the scraper reaches).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.types import Receive, Scope, Send

from postern.http.admin.common import require_admin
from postern.http.services import HttpServices as Runtime
from postern.telemetry import metrics

log = logging.getLogger("postern.telemetry.metrics")

router = APIRouter()


async def scrape(runtime: Runtime) -> Response:
    depth: int | None = None
    age: float | None = None
    try:
        depth, age = await runtime.outbound.stats()
    except Exception:
        log.exception("reading the queue's depth for /metrics failed")
    body, content_type = metrics.render(depth, age if age is not None else (0.0 if depth is not None else None))
    return Response(body, media_type=content_type)


@router.get(
    "/metrics",
    tags=["Metrics"],
    summary="Prometheus metrics",
    dependencies=[Depends(require_admin)],
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition format"}},
)
async def metrics_route(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    if not runtime.settings.metrics:
        return Response(b'{"error":"Metrics are turned off (POSTERN_METRICS=false)","code":"NotFound"}', 404, media_type="application/json")
    return await scrape(runtime)


class MetricsApp:
    """The ASGI app of ``POSTERN_METRICS_LISTEN``: /metrics only, no token."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        response: Any
        if scope["path"] == "/metrics" and scope["method"] in ("GET", "HEAD"):
            response = await scrape(self.runtime)
        else:
            response = Response(b"not found\n", 404, media_type="text/plain")
        await response(scope, receive, send)
