"""/users/{user}/asps: application specific passwords."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from postern.accounts.application_passwords import scopes_of
from postern.accounts.authlog import AuthMeta
from postern.http.admin.common import (
    ID_PATTERN,
    SUCCESS,
    Flag,
    Ip,
    IpQuery,
    RuntimeDep,
    Sess,
    SessQuery,
    Success,
    UserId,
    iso,
    no_nul,
    responses,
)

router = APIRouter(tags=["Application Specific Passwords"])

AspId = Annotated[str, Path(pattern=ID_PATTERN, description="ID of the application specific password")]
Scope = Literal["imap", "pop3", "smtp", "*"]


def _scope_list(value: list[str] | str | None) -> list[str] | str | None:
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
        bad = [v for v in items if v not in ("imap", "pop3", "smtp", "*")]
        if bad:
            raise ValueError("scopes must be some of imap, pop3, smtp, * (comma separated)")
    return value


class AspCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    description: Annotated[str, AfterValidator(no_nul)] = Field(
        min_length=1, max_length=255, pattern=r"\S", description="What the password is for"
    )
    scopes: Annotated[list[Scope] | str | None, AfterValidator(_scope_list)] = Field(
        default=None,
        description='Scopes as a list or a comma separated string: some of "imap", "pop3", "smtp", or "*" (the default) for all of them',
    )
    generateMobileconfig: Flag = Field(
        default=False, description="Also answer an Apple configuration profile (base64) for iOS and macOS Mail"
    )
    sess: Sess = None
    ip: Ip = None


class AspCreated(BaseModel):
    success: Literal[True]
    id: str
    password: str = Field(description="16 lowercase letters, shown only now (spaces in it are ignored at login)")
    mobileconfig: str | None = Field(
        default=None, description="Base64 of an unsigned configuration profile (application/x-apple-aspen-config)"
    )


class Asp(BaseModel):
    id: str
    description: str
    scopes: list[str]
    lastUse: str | Literal[False]
    created: str


class AspList(BaseModel):
    success: Literal[True]
    results: list[Asp]


@router.get("/users/{user}/asps", summary="List application specific passwords", responses=responses(AspList))
async def list_asps(user: UserId, runtime: RuntimeDep) -> dict[str, Any]:
    rows = await runtime.accounts.application_passwords.list(user)
    return {
        "success": True,
        "results": [
            {
                "id": row.id,
                "description": row.description,
                "scopes": scopes_of(row),
                "lastUse": iso(row.last_used_ms) or False,
                "created": iso(row.created_ms),
            }
            for row in rows
        ],
    }


@router.post("/users/{user}/asps", summary="Add an application specific password", responses=responses(AspCreated))
async def create_asp(user: UserId, body: AspCreate, runtime: RuntimeDep) -> dict[str, Any]:
    created = await runtime.accounts.application_passwords.create(
        user,
        body.description,
        body.scopes,
        generate_mobileconfig=body.generateMobileconfig,
        meta=AuthMeta(protocol="API", sess=body.sess, ip=body.ip),
    )
    answer: dict[str, Any] = {"success": True, "id": created.id, "password": created.password}
    if created.mobileconfig is not None:
        answer["mobileconfig"] = created.mobileconfig
    return answer


@router.delete("/users/{user}/asps/{asp}", summary="Delete an application specific password", responses=responses(Success))
async def delete_asp(user: UserId, asp: AspId, runtime: RuntimeDep, sess: SessQuery = None, ip: IpQuery = None) -> dict[str, Any]:
    await runtime.accounts.application_passwords.delete(user, asp, AuthMeta(protocol="API", sess=sess, ip=ip))
    return SUCCESS
