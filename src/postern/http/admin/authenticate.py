"""POST /authenticate: check a user's password for a scope."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from postern.accounts.authlog import AuthMeta
from postern.http.admin.common import Ip, RuntimeDep, Sess, no_nul, responses

router = APIRouter(tags=["Authentication"])


class AuthenticateRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    username: str = Field(min_length=1, max_length=320, description="Username or any address of the user")
    password: str = Field(min_length=1, max_length=256)
    scope: Literal["master", "imap", "pop3", "smtp"] = "master"
    protocol: Annotated[str | None, AfterValidator(no_nul)] = Field(default=None, max_length=64)
    sess: Sess = None
    ip: Ip = None


class AuthenticateResponse(BaseModel):
    success: Literal[True]
    id: str
    username: str
    address: str | None
    scope: str
    require2fa: Literal[False] | list[str]
    requirePasswordChange: bool


@router.post("/authenticate", summary="Authenticate a user", responses=responses(AuthenticateResponse, 429))
async def authenticate(body: AuthenticateRequest, runtime: RuntimeDep) -> dict[str, Any]:
    meta = AuthMeta(protocol=body.protocol or "API", sess=body.sess, ip=body.ip)
    result = await runtime.accounts.authenticate(body.username, body.password, body.scope, meta)
    return {
        "success": True,
        "id": result.user.id,
        "username": result.user.username,
        "address": result.user.address,
        "scope": result.scope,
        "require2fa": result.require_2fa or False,
        "requirePasswordChange": result.require_password_change,
    }
