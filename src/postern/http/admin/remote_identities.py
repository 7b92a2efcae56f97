"""/users/{user}/remote-identities: a user's remote identities for the operator (the
user API's rendering, which holds no secret)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel

from postern.http.admin.common import RuntimeDep, UserId, responses
from postern.http.api.remote_identities import RemoteIdentity, render

router = APIRouter(tags=["Remote identities"])


class RemoteIdentityList(BaseModel):
    success: Literal[True]
    results: list[RemoteIdentity]
    total: int


@router.get(
    "/users/{user}/remote-identities",
    summary="List a user's remote identities (no secrets)",
    responses=responses(RemoteIdentityList),
)
async def list_remote_identities(user: UserId, runtime: RuntimeDep) -> dict[str, Any]:
    await runtime.accounts.get_user(user)  # 404 for an unknown user
    rows = await runtime.remote_identities.list(user)
    return {"success": True, "results": [render(r) for r in rows], "total": len(rows)}
