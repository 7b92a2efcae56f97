"""v2 ``/account/register``, ``/account`` and ``/account/logout``."""

from __future__ import annotations

from typing import Annotated

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

router = APIRouter(prefix="/_matrix/identity/v2", route_class=MatrixRoute, tags=["Identity service v2"])

REGISTER_BODY = json_body(
    {
        "access_token": {
            "type": "string",
            "description": "An OpenID access token from the user's homeserver",
        },
        "token_type": {"type": "string", "enum": ["Bearer"]},
        "matrix_server_name": {
            "type": "string",
            "description": "The homeserver that issued the token",
        },
        "expires_in": {"type": "integer"},
    },
    ["access_token", "matrix_server_name"],
)


class Registered(BaseModel):
    token: str
    access_token: str


class Account(BaseModel):
    user_id: str


class Empty(BaseModel):
    pass


@router.post(
    "/account/register",
    summary="Exchange an OpenID token for an access token",
    response_model=Registered,
    responses=error_responses(401),
    openapi_extra=REGISTER_BODY,
)
async def register(request: Request) -> Registered:
    params = await parameters(request, ("access_token", "matrix_server_name"))
    token = await runtime_of(request).identity_accounts.register(
        access_token=params.get("access_token"),
        token_type=params.get("token_type"),
        matrix_server_name=params.get("matrix_server_name"),
    )
    return Registered(token=token, access_token=token)


@router.get(
    "/account",
    summary="The Matrix user of the access token",
    response_model=Account,
    responses=error_responses(401),
)
async def account(user_id: Annotated[str, Depends(v2_account)]) -> Account:
    return Account(user_id=user_id)


@router.post(
    "/account/logout",
    summary="End the access token",
    response_model=Empty,
    responses=error_responses(401),
)
async def logout(request: Request, _user_id: Annotated[str, Depends(v2_account)]) -> Empty:
    await runtime_of(request).identity_accounts.logout(request.state.identity_token)
    return Empty()
