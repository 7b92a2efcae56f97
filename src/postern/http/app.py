"""The FastAPI application: admin API routes, errors, health and the OpenAPI document."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.datastructures import State
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from postern import __version__
from postern.http import metrics_endpoint
from postern.http.access_log import AccessLog
from postern.http.admin import (
    addresses,
    asps,
    authenticate,
    authlog,
    autoreply,
    domains,
    filters,
    mailboxes,
    messages,
    queue,
    quota,
    remote_identities,
    two_factor,
    users,
)
from postern.http.admin.common import AccessDenied, guard_admin_routes, plain_text_query, require_admin
from postern.http.api import router as user_api_router
from postern.http.content_safety import ContentSafety
from postern.http.discovery import install as install_discovery
from postern.http.errors import JSONBody, error_response, install_error_handlers
from postern.http.identity_service import install as install_identity_service
from postern.http.services import HttpServices


class Health(BaseModel):
    success: Literal[True]
    version: str


class LegacyUserPaths:
    """The WildDuck documentation writes some paths as ``/user/{user}/...``; its
    server and clients use ``/users/...``. Serve both."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/user/"):
            scope = dict(scope)
            scope["path"] = "/users/" + scope["path"][len("/user/") :]
            scope["raw_path"] = scope["path"].encode()
        await self.app(scope, receive, send)


HEALTH_BODY = b'{"success":true,"version":"' + __version__.encode() + b'"}'


def create_app(runtime: HttpServices) -> FastAPI:
    app = FastAPI(
        title="postern admin API",
        version=__version__,
        description="The operator's API of postern, compatible with the WildDuck HTTP API.",
        default_response_class=JSONBody,
        docs_url=None,
        redoc_url=None,
    )
    app.state.runtime = runtime
    install_error_handlers(app)

    @app.exception_handler(AccessDenied)
    async def _denied(_request: Request, error: AccessDenied) -> JSONBody:
        return error_response(error.status, error.message, error.code)

    @app.get("/health", tags=["Health"], summary="Liveness check", responses={200: {"model": Health}})
    async def health() -> Response:
        return Response(HEALTH_BODY, media_type="application/json")

    admin = APIRouter(dependencies=[Depends(require_admin), Depends(plain_text_query)])
    for module in (
        users,
        authenticate,
        authlog,
        asps,
        two_factor,
        addresses,
        mailboxes,
        messages,
        filters,
        autoreply,
        remote_identities,
        domains,
        queue,
        quota,
    ):
        admin.include_router(module.router)
        guard_admin_routes(module.router)
    app.include_router(admin)
    app.include_router(metrics_endpoint.router)
    # The user API (SimpleLogin), under /api: its own key and error shape.
    app.include_router(user_api_router)
    # The Matrix identity service (email validation), under /_matrix/identity.
    install_identity_service(app)
    # Public: client autoconfiguration, the MTA-STS policy, the front page and /docs.
    install_discovery(app)
    # Outermost last: legacy paths are rewritten before the fast listing looks at them.
    app.add_middleware(messages.FastMessageListing, runtime=runtime)
    app.add_middleware(LegacyUserPaths)
    # Around everything, the fast listing included: no answer without nosniff and CSP.
    app.add_middleware(ContentSafety)
    # Outermost: one log line per request, whatever answered it.
    app.add_middleware(AccessLog)
    app.openapi = _without_422(app)  # type: ignore[method-assign]
    return app


class _NoRuntime:
    """Where the runtime goes while ``AppFactory`` builds its one app: create_app may
    keep it, never read it (the routes reach theirs per request)."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"create_app read runtime.{name} while building: the routes must reach it per request")


class AppFactory:
    """Apps for many runtimes at the cost of one: ``create_app`` runs once (its
    routes take FastAPI and pydantic 0.3 s or more to build), and each app after is a
    shallow copy that shares those routes, with its own state, middleware and
    exception handlers, holding its own runtime. This works because create_app keeps
    its runtime only in ``app.state`` and in its middleware's arguments, and the
    routes reach it through the request (``request.app.state.runtime``).

    ``postern serve`` builds one app and calls create_app; the tests, which build an
    app per runtime, share one factory."""

    def __init__(self) -> None:
        self._template: FastAPI | None = None
        self._placeholder = _NoRuntime()

    def __call__(self, runtime: HttpServices) -> FastAPI:
        if self._template is None:
            self._template = create_app(self._placeholder)  # type: ignore[arg-type]
        template = self._template

        def bind(value: Any) -> Any:
            return runtime if value is self._placeholder else value

        app = copy.copy(template)
        app.state = State({key: bind(value) for key, value in template.state._state.items()})
        app.user_middleware = [
            Middleware(m.cls, *map(bind, m.args), **{key: bind(value) for key, value in m.kwargs.items()}) for m in template.user_middleware
        ]
        app.middleware_stack = None
        app.exception_handlers = dict(template.exception_handlers)
        return app


def _without_422(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """FastAPI documents a 422 for every operation with input; invalid input answers
    400 here (errors.py), which the operations document already."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            for operations in document.get("paths", {}).values():
                for operation in operations.values():
                    # Only FastAPI's own 422 (a 422 a route documents itself stays).
                    if operation.get("responses", {}).get("422", {}).get("description") == "Validation Error":
                        operation["responses"].pop("422")
            for name in ("HTTPValidationError", "ValidationError"):
                document.get("components", {}).get("schemas", {}).pop(name, None)
        return app.openapi_schema  # type: ignore[return-value]

    return openapi
