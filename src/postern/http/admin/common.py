"""What the admin routes share: the access check, paging and answer models."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, APIKeyQuery
from pydantic import AfterValidator, BaseModel, Field, PlainValidator, WithJsonSchema

from postern.errors import InvalidInput
from postern.http.errors import ErrorResponse, error_response, guarded_by
from postern.http.services import HttpServices
from postern.storage.pagination import Cursor, Page, decode_cursor
from postern.telemetry import metrics

ID_PATTERN = r"^[0-9a-f]{24}$"


def no_nul(value: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL: a 400 here rather than a 500 from the database.
    if value is not None and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _flag(value: Any) -> bool:
    """true or false; 1 or 0 as well, as WildDuck's clients send form-style values.
    Nothing else (pydantic alone would also take "yes", "off", "t", 1.0 ...)."""
    if isinstance(value, bool):
        return value
    if type(value) is int and value in (0, 1):
        return bool(value)
    raise ValueError("must be true or false")


# A boolean of the admin API's input, documented as exactly what it takes.
Flag = Annotated[
    bool,
    PlainValidator(_flag),
    WithJsonSchema({"anyOf": [{"type": "boolean"}, {"type": "integer", "enum": [0, 1]}]}),
]


# What a caller tells about the request it makes for a user, for the authentication log.
Sess = Annotated[
    str | None, Field(default=None, max_length=255, description="Session identifier, for the authentication log"), AfterValidator(no_nul)
]
Ip = Annotated[
    str | None,
    Field(default=None, max_length=64, description="IP address the request came from, for the authentication log"),
    AfterValidator(no_nul),
]
SessQuery = Annotated[str | None, Query(max_length=255, description="Session identifier, for the authentication log")]
IpQuery = Annotated[str | None, Query(max_length=64, description="IP address the request came from, for the authentication log")]
UserId = Annotated[str, Path(pattern=ID_PATTERN, description="ID of the user")]
AddressId = Annotated[str, Path(pattern=ID_PATTERN, description="ID of the address")]
MailboxId = Annotated[str, Path(pattern=ID_PATTERN, description="ID of the mailbox")]
MessageUid = Annotated[int, Path(ge=1, le=2**32 - 1, description="ID of the message (its IMAP UID)")]

_token_query = APIKeyQuery(name="accessToken", auto_error=False, description="Admin access token")
_token_header = APIKeyHeader(name="X-Access-Token", auto_error=False, description="Admin access token")


def runtime_of(request: Request) -> HttpServices:
    return request.app.state.runtime


async def _runtime_dependency(request: Request) -> HttpServices:
    # async on purpose: FastAPI runs a plain `def` dependency in its thread pool, which
    # cost every admin request a round trip to a worker thread (see docs/benchmarks.md).
    return request.app.state.runtime


RuntimeDep = Annotated[HttpServices, Depends(_runtime_dependency)]


class AccessDenied(Exception):
    def __init__(self, status: int, message: str, code: str):
        self.status, self.message, self.code = status, message, code


async def require_admin(
    request: Request,
    query_token: Annotated[str | None, Depends(_token_query)],
    header_token: Annotated[str | None, Depends(_token_header)],
) -> None:
    runtime = runtime_of(request)
    if not runtime.admin_token.required:
        return
    token = header_token or query_token
    if not token:
        raise AccessDenied(401, "Access token is required", "MissingAccessToken")
    if not await runtime.admin_token.check(token):
        metrics.M.auth_failures("http").inc()
        raise AccessDenied(403, "Invalid access token", "InvalidToken")


async def _admin_refusal(request: Request) -> Response | None:
    """require_admin's answer for a request whose body could not even be decoded (see
    http/errors.auth_answer_first): the token is checked before the body. The admin
    router marks its routes with it (app.py)."""
    try:
        await require_admin(request, request.query_params.get("accessToken"), request.headers.get("x-access-token"))
    except AccessDenied as denied:
        return error_response(denied.status, denied.message, denied.code)
    return None


def guard_admin_routes(router: APIRouter) -> None:
    """Mark the routes of a router that the admin token guards (see _admin_refusal)."""
    for route in router.routes:
        if isinstance(route, APIRoute):
            guarded_by(route.endpoint, _admin_refusal)


async def plain_text_query(request: Request) -> None:
    """No query argument may carry a NUL character: PostgreSQL text cannot hold one,
    and a search for it must be a 400, not a 500 from the database."""
    for name, value in request.query_params.multi_items():
        if "\x00" in value:
            raise InvalidInput(f"{name} must not contain NUL characters", field=name)


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Invalid input"},
    401: {"model": ErrorResponse, "description": "Access token missing"},
    403: {"model": ErrorResponse, "description": "Access token invalid, or the action is not allowed"},
    404: {"model": ErrorResponse, "description": "Not found"},
}


def responses(model: type[BaseModel], *extra: int, **more: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    """The documented answers of a route: its success model and the common errors."""
    result: dict[int | str, dict[str, Any]] = {200: {"model": model}, **ERRORS}
    for status in extra:
        result[status] = {"model": ErrorResponse}
    result.update({int(k): v for k, v in more.items()})
    return result


class Success(BaseModel):
    success: Literal[True] = True


class Created(BaseModel):
    success: Literal[True] = True
    id: str


SUCCESS = {"success": True}


# Paging ------------------------------------------------------------------------------

Limit = Annotated[int, Query(ge=1, le=250, description="How many results to return (at most 250)")]
PageNumber = Annotated[int, Query(ge=1, le=1_000_000, description="The page number the client is on (echoed back)")]
NextCursor = Annotated[str | None, Query(max_length=512, description="Cursor for the next page")]
PreviousCursor = Annotated[str | None, Query(max_length=512, description="Cursor for the previous page")]


def cursor_from(next_cursor: str | None, previous_cursor: str | None, types: tuple[type, ...]) -> Cursor | None:
    if next_cursor and previous_cursor:
        raise InvalidInput("next and previous can not be used together", field="next")
    if next_cursor:
        return decode_cursor(next_cursor, "next", "next", types)
    if previous_cursor:
        return decode_cursor(previous_cursor, "previous", "previous", types)
    return None


class CursorPage(BaseModel):
    """What every paged list answers: WildDuck's cursors, false where there is no page."""

    success: Literal[True]
    total: int
    page: int
    previousCursor: str | Literal[False]
    nextCursor: str | Literal[False]


def cursor_page(result: Page, *, total: int, page: int, results: list[Any], **extra: Any) -> dict[str, Any]:
    return {
        "success": True,
        **extra,
        "total": total,
        "page": page,
        "previousCursor": result.previous_cursor or False,
        "nextCursor": result.next_cursor or False,
        "results": results,
    }


# Years 1970 to 9999: the range the fast path below formats exactly.
_FAST_ISO_RANGE = range(0, 253402300800000)
# "YYYY-MM-DDT" of recent days: listings format two dates per message.
_DAY_PREFIX: dict[int, str] = {}


def iso(ms: int | None) -> str | None:
    """Milliseconds since the epoch as the API's ISO 8601 form, 2017-07-17T11:15:03.841Z."""
    if ms is None:
        return None
    if ms in _FAST_ISO_RANGE:
        day, rest = divmod(ms, 86_400_000)
        prefix = _DAY_PREFIX.get(day)
        if prefix is None:
            if len(_DAY_PREFIX) >= 4096:
                _DAY_PREFIX.clear()
            prefix = _DAY_PREFIX[day] = time.strftime("%Y-%m-%dT", time.gmtime(day * 86400))
        seconds, millis = divmod(rest, 1000)
        minutes, seconds = divmod(seconds, 60)
        hours, minutes = divmod(minutes, 60)
        return f"{prefix}{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}Z"
    when = datetime.fromtimestamp(ms / 1000, UTC)
    # %Y does not pad years before 1000 to four digits everywhere.
    return f"{when.year:04d}" + when.strftime("-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def split_list(value: str | None) -> list[str]:
    return [v for v in (p.strip() for p in (value or "").split(",")) if v]
