"""``/3pid/getValidated3pid``: what a validated session proved."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from postern.http.identity_service.common import (
    MatrixRoute,
    error_responses,
    runtime_of,
)
from postern.http.identity_service.validate_email import v2_authenticated

v1 = APIRouter(
    prefix="/_matrix/identity/api/v1",
    route_class=MatrixRoute,
    tags=["Identity service v1"],
)
v2 = APIRouter(prefix="/_matrix/identity/v2", route_class=MatrixRoute, tags=["Identity service v2"])


class Validated3pid(BaseModel):
    medium: str
    address: str
    validated_at: int


async def get_validated_3pid(
    request: Request,
    sid: Annotated[str, Query(description="The session ID")],
    client_secret: Annotated[str, Query(description="The client secret given to requestToken")],
) -> Validated3pid:
    """The address a session validated, and when (milliseconds since the epoch)."""
    validated = await runtime_of(request).validation.validated(sid=sid, client_secret=client_secret)
    return Validated3pid(medium="email", address=validated.address, validated_at=validated.validated_ms)


v1.add_api_route(
    "/3pid/getValidated3pid",
    get_validated_3pid,
    methods=["GET"],
    summary="The address a session validated",
    response_model=Validated3pid,
    responses=error_responses(),
)
v2.add_api_route(
    "/3pid/getValidated3pid",
    get_validated_3pid,
    methods=["GET"],
    summary="The address a session validated",
    response_model=Validated3pid,
    responses=error_responses(401, 403),
    dependencies=v2_authenticated,
)
