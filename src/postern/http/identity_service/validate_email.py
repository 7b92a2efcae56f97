"""``/validate/email/requestToken`` and ``/validate/email/submitToken`` (v1 as the
specification writes them; v2 the same behind an access token, except the GET that a
person's browser opens from the mail)."""

from __future__ import annotations

import html
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field
from starlette.responses import Response

from postern.errors import RateLimited
from postern.http.identity_service.common import (
    MatrixRoute,
    client_ip,
    error_responses,
    json_body,
    parameters,
    runtime_of,
    v2_account_with_terms,
)
from postern.verification.errors import MatrixError

v1 = APIRouter(
    prefix="/_matrix/identity/api/v1",
    route_class=MatrixRoute,
    tags=["Identity service v1"],
)
v2 = APIRouter(prefix="/_matrix/identity/v2", route_class=MatrixRoute, tags=["Identity service v2"])
v2_authenticated = [Depends(v2_account_with_terms)]

REQUEST_BODY = json_body(
    {
        "client_secret": {
            "type": "string",
            "description": "A unique string used to identify the validation attempt",
        },
        "email": {"type": "string", "description": "The email address to validate"},
        "send_attempt": {
            "type": "integer",
            "description": "Mail again only when higher than the last one seen",
        },
        "next_link": {
            "type": "string",
            "description": "Where to send the browser after a successful GET submitToken",
        },
    },
    ["client_secret", "email"],
)
SUBMIT_BODY = json_body(
    {
        "sid": {"type": "string", "description": "The session ID, from requestToken"},
        "client_secret": {
            "type": "string",
            "description": "The client secret given to requestToken",
        },
        "token": {"type": "string", "description": "The token mailed"},
    },
    ["sid", "client_secret", "token"],
)


class Session(BaseModel):
    sid: str = Field(description="The session ID")


class Success(BaseModel):
    success: bool


async def request_token(request: Request) -> Session:
    """Create (or find again) a session for an email address and mail it a token."""
    params = await parameters(request, ("client_secret", "email"))
    sid = await runtime_of(request).validation.request_token(
        email=params.get("email"),
        client_secret=params.get("client_secret"),
        send_attempt=params.get("send_attempt"),
        next_link=params.get("next_link"),
        ip=client_ip(request),
    )
    return Session(sid=str(sid))


async def submit_token(request: Request) -> Success:
    """Prove the address: the three values of one requestToken."""
    params = await parameters(request, ("sid", "client_secret", "token"))
    await runtime_of(request).validation.submit_token(
        sid=params.get("sid"),
        client_secret=params.get("client_secret"),
        token=params.get("token"),
        ip=client_ip(request),
    )
    return Success(success=True)


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{title}</title></head>
<body style="font-family: sans-serif; max-width: 36em; margin: 3em auto"><h1>{title}</h1><p>{text}</p></body></html>
"""


def page(status: int, title: str, text: str) -> HTMLResponse:
    body = PAGE.format(title=html.escape(title), text=html.escape(text))
    return HTMLResponse(
        body,
        status_code=status,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


async def submit_token_page(
    request: Request,
    sid: Annotated[str | None, Query(description="The session ID, from requestToken")] = None,
    client_secret: Annotated[str | None, Query(description="The client secret given to requestToken")] = None,
    token: Annotated[str | None, Query(description="The token mailed")] = None,
) -> Response:
    """The link in the mail: a page for a person (or a redirect to the next_link
    stored with the session), never JSON."""
    if not sid or not client_secret or not token:
        return page(
            400,
            "Invalid link",
            "This link is incomplete. Open the link from the email again.",
        )
    try:
        validated = await runtime_of(request).validation.submit_token(
            sid=sid, client_secret=client_secret, token=token, ip=client_ip(request)
        )
    except RateLimited as error:
        return page(
            429,
            "Too many attempts",
            f"Please try again in {error.retry_after} seconds.",
        )
    except MatrixError as error:
        return page(400, "Verification failed", error.message)
    if validated.next_link:
        return RedirectResponse(
            validated.next_link,
            status_code=302,
            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
        )
    return page(
        200,
        "Email address verified",
        "Your email address has been verified. You may now return to the application.",
    )


GET_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Validated: a page for a person",
        "content": {"text/html": {}},
    },
    302: {"description": "Validated: redirected to the session's next_link"},
    400: {
        "description": "Validation failed: a page for a person",
        "content": {"text/html": {}},
    },
    429: {
        "description": "Too many attempts: a page for a person",
        "content": {"text/html": {}},
    },
}

for router, dependencies in ((v1, []), (v2, v2_authenticated)):
    router.add_api_route(
        "/validate/email/requestToken",
        request_token,
        methods=["POST"],
        summary="Request a token for validating an email address",
        response_model=Session,
        responses=error_responses(*((401, 403) if dependencies else ()), 429),
        openapi_extra=REQUEST_BODY,
        dependencies=dependencies,
    )
    router.add_api_route(
        "/validate/email/submitToken",
        submit_token,
        methods=["POST"],
        summary="Validate ownership of an email address",
        response_model=Success,
        responses=error_responses(*((401, 403) if dependencies else ()), 429),
        openapi_extra=SUBMIT_BODY,
        dependencies=dependencies,
    )
    router.add_api_route(
        "/validate/email/submitToken",
        submit_token_page,
        methods=["GET"],
        summary="Validate ownership of an email address (the mailed link)",
        response_class=HTMLResponse,
        responses=GET_RESPONSES,
    )
