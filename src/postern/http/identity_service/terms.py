"""v2 ``/terms``: the operator's policies, and accepting them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from postern.http.identity_service.common import (
    MatrixRoute,
    error_responses,
    json_body,
    parameters,
    runtime_of,
    v2_account,
)
from postern.verification import errors
from postern.verification.errors import MatrixError

router = APIRouter(prefix="/_matrix/identity/v2", route_class=MatrixRoute, tags=["Identity service v2"])


class Terms(BaseModel):
    policies: dict[str, Any]


class Empty(BaseModel):
    pass


ACCEPT_BODY = json_body({"user_accepts": {"type": "array", "items": {"type": "string"}}}, ["user_accepts"])


@router.get("/terms", summary="The terms of service", response_model=Terms)
async def terms(request: Request) -> Terms:
    return Terms(**runtime_of(request).identity_accounts.terms())


@router.post(
    "/terms",
    summary="Accept terms",
    response_model=Empty,
    responses=error_responses(401),
    openapi_extra=ACCEPT_BODY,
)
async def accept(request: Request, user_id: Annotated[str, Depends(v2_account)]) -> Empty:
    params = await parameters(request, ())
    urls = params.get("user_accepts")
    if isinstance(urls, str):  # the form encoding has no lists: one URL
        urls = [urls]
    if not isinstance(urls, list):
        raise MatrixError(
            errors.MISSING_PARAMS if urls is None else errors.INVALID_PARAM,
            "user_accepts must be a list of URLs",
        )
    await runtime_of(request).identity_accounts.accept_terms(user_id, urls)
    return Empty()
