"""Every error answers ``{"error": ..., "code": ...}`` with the status the spec gives."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from postern.errors import AuthFailed, Conflict, DomainError, Forbidden, InvalidInput, NotFound, OverQuota, RateLimited, TooLarge
from postern.storage.blobs import BlobNotFound

log = logging.getLogger("postern.http")


class JSONBody(JSONResponse):
    """JSON rendered by orjson: the API's answers are plain dicts, built for speed.

    A JSONResponse, so that FastAPI documents the answers by their models; any other
    default response class makes it add ``"type": "string"`` to every documented
    JSON answer, which then contradicts the model beside it."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


STATUS_OF: dict[type[DomainError], int] = {
    InvalidInput: 400,
    AuthFailed: 403,
    Forbidden: 403,
    OverQuota: 403,
    NotFound: 404,
    Conflict: 409,
    TooLarge: 413,
    RateLimited: 429,
}


class ErrorResponse(BaseModel):
    error: str
    code: str | None = None
    details: dict[str, str] | None = None


def error_response(
    status: int, message: str, code: str | None = None, details: dict[str, str] | None = None, headers: dict[str, str] | None = None
) -> JSONBody:
    body: dict[str, Any] = {"error": message}
    if code:
        body["code"] = code
    if details:
        body["details"] = details
    return JSONBody(body, status_code=status, headers=headers)


def status_of(error: DomainError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]  # type: ignore[index]
    return 400


# pydantic names the member of a union that failed ("literal[False]", "constrained-str",
# "int"): not a field, so left out of the field's name.
_UNION_MEMBERS = {"str", "int", "float", "bool", "bytes", "none"}


def _is_union_member(part: Any) -> bool:
    return isinstance(part, str) and (part in _UNION_MEMBERS or "[" in part or "-" in part)


def _field_name(location: tuple[Any, ...]) -> str:
    # ("body", "quota") -> "quota"; ("query", "limit") -> "limit"; ("body",) -> "body";
    # ("body", "password", "literal[False]") -> "password"
    parts = [str(p) for p in location[1:] if not _is_union_member(p)] or [str(location[0]) if location else "request"]
    return ".".join(parts)


def _allowed_methods(request: Request) -> str:
    """Every method of the request's path. Starlette's 405 names only those of the first
    route whose path matched, and FastAPI makes one route per method."""
    # Ask the routes about each method: routes of an included router sit inside one
    # entry of app.router.routes that has no `methods` of its own.
    methods: set[str] = set()
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes):
            methods.add(method)
    return ", ".join(sorted(methods))


AUTH_ANSWER = "postern_auth_answer"


def guarded_by(endpoint: Any, answer: Callable[[Request], Awaitable[Response | None]]) -> None:
    """Mark a route's endpoint as needing the access check ``answer`` (see below); for
    checks a router adds to routes that do not name it themselves."""
    setattr(endpoint, AUTH_ANSWER, answer)


async def auth_answer_first(request: Request) -> Response | None:
    """The answer of the route's access check, if it refuses the request; None if it
    lets it pass (or the route has none).

    FastAPI decodes a JSON body before it runs a route's dependencies, so a request
    that is both unauthenticated and malformed would learn "bad JSON" before "who are
    you?". The error handlers call this first: whoever has no access is told only that.
    An access check is found on the endpoint (``guarded_by``) or among the route's own
    dependencies (a dependency with an ``auth_answer`` attribute: a function of the
    request that returns the refusal, or None)."""
    answer = getattr(request.scope.get("endpoint"), AUTH_ANSWER, None)
    if answer is not None:
        return await answer(request)
    dependant = getattr(request.scope.get("route"), "dependant", None)
    stack = list(dependant.dependencies) if dependant is not None else []
    while stack:
        dependency = stack.pop()
        answer = getattr(dependency.call, "auth_answer", None)
        if answer is not None:
            return await answer(request)
        stack.extend(dependency.dependencies)
    return None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_request: Request, error: DomainError) -> JSONBody:
        details = {error.field: error.message} if error.field else None
        headers = {"Retry-After": str(error.retry_after)} if isinstance(error, RateLimited) else None
        return error_response(status_of(error), error.message, error.code, details, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> Response:
        denied = await auth_answer_first(request)
        if denied is not None:
            return denied
        details: dict[str, str] = {}
        for item in error.errors():
            # A body that is not JSON at all: its loc names a character position, not a field.
            field = "body" if item.get("type") == "json_invalid" else _field_name(tuple(item.get("loc", ())))
            details.setdefault(field, str(item.get("msg", "is invalid")))
        first = next(iter(details.items()), ("request", "is invalid"))
        return error_response(400, f"{first[0]}: {first[1]}", "InputValidationError", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> Response:
        if error.status_code == 400:
            denied = await auth_answer_first(request)
            if denied is not None:
                return denied
        messages = {404: "Not found", 405: "Method not allowed"}
        message = (
            error.detail
            if isinstance(error.detail, str) and error.status_code not in messages
            else messages.get(error.status_code, "Request failed")
        )
        headers = getattr(error, "headers", None)
        if error.status_code == 405:
            headers = {**(headers or {}), "Allow": _allowed_methods(request)}
        # The framework's own 400 (a body it could not decode) is invalid input like any other.
        if error.status_code == 400:
            return error_response(400, message, "InputValidationError", {"body": message}, headers)
        return error_response(error.status_code, message, None, None, headers)

    @app.exception_handler(BlobNotFound)
    async def _blob(_request: Request, error: BlobNotFound) -> JSONBody:
        log.error("message contents missing from the blob store: %s", error)
        return error_response(500, "Message contents are not available", "StorageError")

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, error: Exception) -> JSONBody:
        log.exception("unhandled error")
        return error_response(500, "Internal server error", "InternalError")
