"""The identity service's status (v1 and v2) and the versions it speaks."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from postern.http.identity_service.common import MatrixRoute

router = APIRouter(prefix="/_matrix/identity", route_class=MatrixRoute, tags=["Identity service"])

# The versions whose email validation, account and terms endpoints are served here.
VERSIONS = ["r0.1.0", "r0.2.0", "r0.2.1", "r0.3.0", "v1.1"]


class Empty(BaseModel):
    pass


class Versions(BaseModel):
    versions: list[str]


@router.get("/api/v1", summary="Status (v1)", response_model=Empty)
async def status_v1() -> Empty:
    return Empty()


@router.get("/v2", summary="Status (v2)", response_model=Empty)
async def status_v2() -> Empty:
    return Empty()


@router.get("/versions", summary="The specification versions served", response_model=Versions)
async def versions() -> Versions:
    return Versions(versions=VERSIONS)
