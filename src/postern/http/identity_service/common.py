"""What the identity service's routes share: Matrix errors (``{"errcode", "error"}``),
request parameters from a JSON or (deprecated) form-encoded body, the v2 access token
and terms checks, and the documented shapes."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.responses import Response

from postern.errors import RateLimited
from postern.http.errors import JSONBody
from postern.http.services import HttpServices
from postern.verification import errors
from postern.verification.errors import MatrixError

MAX_BODY = 64 * 1024
FORM = "application/x-www-form-urlencoded"


class MatrixErrorBody(BaseModel):
    errcode: str
    error: str
    retry_after_ms: int | None = None


def matrix_error(status: int, errcode: str, message: str, **extra: Any) -> JSONBody:
    return JSONBody({"errcode": errcode, "error": message, **extra}, status_code=status)


def rate_limited(error: RateLimited) -> JSONBody:
    response = matrix_error(
        429,
        errors.LIMIT_EXCEEDED,
        "Too many requests",
        retry_after_ms=error.retry_after * 1000,
    )
    response.headers["Retry-After"] = str(error.retry_after)
    return response


class MatrixRoute(APIRoute):
    """Answers in the identity service's words, whatever went wrong."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except MatrixError as error:
                return matrix_error(error.status, error.errcode, error.message)
            except RateLimited as error:
                return rate_limited(error)
            except RequestValidationError as error:
                first = (error.errors() or [{}])[0]
                where = ".".join(str(p) for p in first.get("loc", ())[1:])
                if first.get("type") == "missing":
                    return matrix_error(400, errors.MISSING_PARAMS, f"Missing parameter: {where}")
                return matrix_error(400, errors.INVALID_PARAM, f"Invalid parameter: {where}")

        return answer


def runtime_of(request: Request) -> HttpServices:
    return request.app.state.runtime


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


async def parameters(request: Request, required: tuple[str, ...]) -> dict[str, Any]:
    """The body's parameters: a JSON object, or the deprecated form encoding (and, as
    the older servers did, the query string's)."""
    body = await request.body()
    if len(body) > MAX_BODY:
        raise MatrixError("M_TOO_LARGE", "The request body is too large", status=413)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    params: dict[str, Any]
    if content_type == FORM or (not body.strip() and content_type != "application/json"):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise MatrixError(errors.INVALID_PARAM, "The form body is not UTF-8") from None
        params = {}
        for key, value in [*parse_qsl(request.url.query), *parse_qsl(text)]:
            params.setdefault(key, value)
        params = {k: v for k, v in params.items() if not isinstance(v, str) or "\x00" not in v}
    else:
        try:
            params = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise MatrixError(errors.NOT_JSON, "The request body is not JSON") from None
        if not isinstance(params, dict):
            raise MatrixError(errors.BAD_JSON, "The request body must be a JSON object")
    missing = [name for name in required if params.get(name) in (None, "")]
    if missing:
        raise MatrixError(errors.MISSING_PARAMS, "Missing parameters: " + ", ".join(missing))
    return params


def query_parameters(request: Request, required: tuple[str, ...]) -> dict[str, str]:
    params = dict(request.query_params)
    missing = [name for name in required if not params.get(name)]
    if missing:
        raise MatrixError(errors.MISSING_PARAMS, "Missing parameters: " + ", ".join(missing))
    return params


# v2: who is asking ------------------------------------------------------------------------


def access_token_of(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query_params.get("access_token") or None


async def v2_account(request: Request) -> str:
    """The Matrix user id of the v2 access token (M_UNAUTHORIZED without one)."""
    token = access_token_of(request)
    account = await runtime_of(request).identity_accounts.authenticate(token) if token else None
    if account is None:
        raise MatrixError(errors.UNAUTHORIZED, "Unrecognised access token", status=401)
    request.state.identity_token = token
    return account.matrix_user_id


async def v2_account_with_terms(request: Request, user_id: Annotated[str, Depends(v2_account)]) -> str:
    """As ``v2_account``, and the operator's terms accepted (M_TERMS_NOT_SIGNED)."""
    if not await runtime_of(request).identity_accounts.terms_signed(user_id):
        raise MatrixError(errors.TERMS_NOT_SIGNED, "Terms not signed", status=403)
    return user_id


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    described = {
        400: "Invalid request (see errcode)",
        401: "Access token missing or unknown",
        403: "Terms not signed",
        429: "Rate limited",
    }
    return {
        status: {
            "model": MatrixErrorBody,
            "description": described.get(status, "Error"),
        }
        for status in (400, *statuses)
    }


def json_body(schema: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """The documented request body: JSON, or the deprecated form encoding."""
    body = {"type": "object", "properties": schema, "required": required}
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": body}, FORM: {"schema": body}},
        }
    }
