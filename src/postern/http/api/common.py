"""What the user API's routes share: errors as ``{"error": "..."}`` (a sentence a
client may show as is), the API key check, request metadata and answer models."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader
from pydantic import AfterValidator, BaseModel, Field
from starlette.responses import Response

from postern.accounts.api_keys import KeyHolder
from postern.accounts.authlog import AuthMeta
from postern.accounts.registration import CodeExhausted, NotActivated
from postern.accounts.user_profile import SudoRequired
from postern.errors import AuthFailed, Conflict, DomainError, Forbidden, InvalidInput, NotFound, RateLimited, TooLarge
from postern.http.errors import JSONBody, auth_answer_first
from postern.http.services import HttpServices
from postern.telemetry import metrics

RATE_LIMITED = "Rate limit exceeded"


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class ApiErrorBody(BaseModel):
    error: str


def api_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONBody:
    return JSONBody({"error": message}, status_code=status, headers=headers)


# Checked in order: the first class in a domain error's ancestry decides.
_STATUS: list[tuple[type[DomainError], int]] = [
    (CodeExhausted, 410),
    (NotActivated, 422),
    (SudoRequired, 440),
    (RateLimited, 429),
    (InvalidInput, 400),
    (AuthFailed, 400),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (TooLarge, 413),
]


def _domain_answer(error: DomainError) -> JSONBody:
    if isinstance(error, RateLimited):
        return api_error(429, RATE_LIMITED, {"Retry-After": str(error.retry_after)})
    status = next((s for cls, s in _STATUS if isinstance(error, cls)), 400)
    return api_error(status, error.message)


def _field(location: tuple[Any, ...]) -> str:
    parts = [str(p) for p in location[1:] if not isinstance(p, int)]
    return ".".join(parts)


def validation_sentence(error: RequestValidationError) -> str:
    """The first problem of a request as a sentence, e.g. "password must be at least
    8 characters"."""
    items = error.errors()
    if not items:
        return "The request is invalid"
    item = items[0]
    kind = str(item.get("type", ""))
    location = tuple(item.get("loc", ()))
    field = _field(location)
    context = item.get("ctx") or {}
    if kind == "json_invalid":
        return "Request body is not valid JSON"
    if not field:
        if kind == "missing":
            return "Request body cannot be empty"
        return "Request body must be a JSON object"
    if location[:1] == ("header",):
        return f"The {field} header is invalid"
    if kind == "missing":
        return f"{field} is required"
    if kind == "string_too_short":
        return f"{field} must be at least {context.get('min_length')} characters"
    if kind == "string_too_long":
        return f"{field} must be at most {context.get('max_length')} characters"
    if kind in ("string_type", "str_type"):
        return f"{field} must be a string"
    if kind == "bool_type" or kind == "bool_parsing":
        return f"{field} must be true or false"
    if kind == "value_error":
        message = str(item.get("msg", "is invalid")).removeprefix("Value error, ")
        return f"{field} {message}"
    return f"{field}: {item.get('msg', 'is invalid')}"


class ApiRoute(APIRoute):
    """Answers the user API's way: invalid input is a 400 with a sentence, domain
    errors get the user API's statuses (410 for a dead code, 422 for an account not
    activated, 429 ``Rate limit exceeded``...)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as error:
                # Who has no valid key learns only that, not what is wrong with the body.
                denied = await auth_answer_first(request)
                return denied if denied is not None else api_error(400, validation_sentence(error))
            except ApiError as error:
                return api_error(error.status, error.message)
            except DomainError as error:
                return _domain_answer(error)

        return answer


# Input ----------------------------------------------------------------------------------


def _plain(value: str) -> str:
    # PostgreSQL text cannot hold NUL, and a lone surrogate is not UTF-8: a 400 here
    # rather than a 500 further down.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


Text = Annotated[str, AfterValidator(_plain)]
Email = Annotated[str, Field(min_length=1, max_length=320, description="Email address"), AfterValidator(_plain)]
Device = Annotated[str, Field(max_length=256, description="Device name, to manage the API key later"), AfterValidator(_plain)]
NewPassword = Annotated[str, Field(min_length=8, max_length=100), AfterValidator(_plain)]
Code = Annotated[str, Field(min_length=1, max_length=64, description="The code mailed to the user"), AfterValidator(_plain)]


# Who is asking ------------------------------------------------------------------------

_key_header = APIKeyHeader(
    name="Authentication", scheme_name="UserApiKey", auto_error=False, description="The user's API key (not in Authorization)"
)


def runtime_of(request: Request) -> HttpServices:
    return request.app.state.runtime


def meta_of(request: Request) -> AuthMeta:
    return AuthMeta(protocol="API", ip=request.client.host if request.client else None)


async def current_key(request: Request, key: Annotated[str | None, Depends(_key_header)]) -> KeyHolder:
    if not key or not key.strip():
        raise ApiError(401, "An API key is required in the Authentication header")
    holder = await runtime_of(request).api_keys.authenticate(key.strip())
    if holder is None:
        metrics.M.auth_failures("http").inc()
        raise ApiError(401, "Wrong API key")
    return holder


async def _key_refusal(request: Request) -> Response | None:
    """current_key's answer for a request whose body could not be decoded: the key is
    checked before the body (see http/errors.auth_answer_first)."""
    try:
        await current_key(request, request.headers.get("Authentication"))
    except ApiError as error:
        return api_error(error.status, error.message)
    return None


current_key.auth_answer = _key_refusal  # type: ignore[attr-defined]

KeyHolderDep = Annotated[KeyHolder, Depends(current_key)]


def responses(*statuses: int, **described: str) -> dict[int | str, dict[str, Any]]:
    """Documented error answers: 400 always, and the statuses given."""
    result: dict[int | str, dict[str, Any]] = {400: {"model": ApiErrorBody, "description": "Invalid input"}}
    for status in statuses:
        result[status] = {"model": ApiErrorBody, "description": _DESCRIPTIONS.get(status, "Error")}
    for name, description in described.items():
        result[int(name.lstrip("_"))] = {"model": ApiErrorBody, "description": description}
    return result


_DESCRIPTIONS = {
    401: "API key missing or wrong",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    410: "Too many wrong codes: ask for a new one",
    422: "Account not activated",
    429: "Rate limit exceeded",
    440: "Sudo mode required (PATCH /api/sudo)",
}


class Message(BaseModel):
    msg: str


class Ok(BaseModel):
    ok: bool


# Wire formats -------------------------------------------------------------------------


def api_date(ms: int | None) -> str | None:
    """A time as the user API writes dates: ``2020-04-06 17:57:14+00:00``."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms // 1000, UTC).isoformat(sep=" ")


def api_timestamp(ms: int | None) -> int | None:
    """A time as the user API's ``*_timestamp`` fields: whole seconds."""
    return None if ms is None else ms // 1000


def page_id_of(value: str | None, field: str = "page_id") -> int:
    """A required page number (from 0) in the query."""
    if value is None or value == "":
        raise ApiError(400, f"{field} must be provided in request query")
    if not value.isdigit() or len(value) > 9:
        raise ApiError(400, f"{field} must be a number from 0")
    return int(value)
