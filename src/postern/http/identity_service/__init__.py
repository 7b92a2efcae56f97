"""The Matrix identity service's email validation, under ``/_matrix/identity``: v1 as
the specification writes it, v2 behind access tokens (OpenID from a homeserver) and
terms. Browsers (Matrix web clients) call it from other origins: every answer allows
any origin, as identity services do.

Its paths are kept out of the admin API's ``/openapi.json`` and documented on their
own at ``/_matrix/identity/openapi.json``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from postern import __version__
from postern.http.identity_service import (
    account,
    status,
    terms,
    three_pid,
    validate_email,
)

PREFIX = "/_matrix/identity"

router = APIRouter()
for module_router in (
    status.router,
    validate_email.v1,
    validate_email.v2,
    three_pid.v1,
    three_pid.v2,
    account.router,
    terms.router,
):
    router.include_router(module_router)

CORS_HEADERS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"GET, POST, PUT, DELETE, OPTIONS"),
    (
        b"access-control-allow-headers",
        b"Origin, X-Requested-With, Content-Type, Accept, Authorization",
    ),
]


class IdentityCors:
    """CORS for the identity service's paths: preflights answered, any origin."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX + "/"):
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        *CORS_HEADERS,
                        (b"content-length", b"2"),
                        (b"content-type", b"application/json"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b"{}"})
            return

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), *CORS_HEADERS]
            await send(message)

        await self.app(scope, receive, with_cors)


def install(app: FastAPI) -> None:
    """Add the identity service to ``app``, its own OpenAPI document beside it."""
    app.include_router(router)
    app.add_middleware(IdentityCors)
    document: dict[str, Any] = {}

    def identity_document() -> dict[str, Any]:
        if not document:
            # The whole application's document, of which the identity paths are kept.
            whole = get_openapi(
                title="postern identity service",
                version=__version__,
                description="The Matrix identity service's email validation (v1 and v2), as served by postern.",
                routes=app.routes,
            )
            whole["paths"] = {p: ops for p, ops in whole.get("paths", {}).items() if p.startswith(PREFIX + "/")}
            document.update(whole)
            for operations in document.get("paths", {}).values():
                for operation in operations.values():
                    if operation.get("responses", {}).get("422", {}).get("description") == "Validation Error":
                        operation["responses"].pop("422")
        return document

    @app.get(PREFIX + "/openapi.json", include_in_schema=False)
    async def openapi_document() -> JSONResponse:
        return JSONResponse(identity_document())

    generate: Callable[[], dict[str, Any]] = app.openapi

    def without_identity_paths() -> dict[str, Any]:
        whole = generate()  # cached by FastAPI: the paths go once
        for path in [p for p in whole.get("paths", {}) if p.startswith(PREFIX + "/")]:
            whole["paths"].pop(path)
        return whole

    app.openapi = without_identity_paths  # type: ignore[method-assign]
