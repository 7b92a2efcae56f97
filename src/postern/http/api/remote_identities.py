"""/api/v1/remote-identities: the Caliopen RFC's remote identities (third-party mail
accounts fetched into postern and sent through), rendered exactly as the RFC shows
them, with postern's extra parameters beside the RFC's. Secrets are never answered:
``password`` (and ``refresh_token``, ``smtp_password``) are present and null."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Request
from pydantic import BaseModel, Field

from postern.http.api.common import ApiRoute, KeyHolderDep, responses, runtime_of

router = APIRouter(tags=["User API: remote identities"], route_class=ApiRoute)

IdentityId = Annotated[str, Path(description="The remote identity's id (a UUID)", max_length=64)]


def rfc_time(ms: int | None) -> str | None:
    """ISO 8601 with the offset, as the RFC writes it: ``2016-08-31T10:15:39+0000``."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S%z")


class Params(BaseModel):
    login: str
    password: None = Field(description="Never returned: always null (send it to change it; leave it out to keep it)")
    mail_protocol: Literal["IMAP", "POP3"]
    incomming_mail_server: str = Field(description="Spelled as the RFC spells it")
    mail_port: str = Field(description="A string, as in the RFC")
    fetch_method: Literal["from_now", "all"]
    tls: Literal["ssl", "starttls", "plain"]
    auth: Literal["password", "oauth2"]
    oauth_provider: str | None
    refresh_token: None = Field(description="Never returned")
    folders: list[str] | Literal["all"]
    keep_on_server: bool
    poll_interval: int = Field(description="Seconds between checks when the server has no IDLE (or for folders other than INBOX)")
    outgoing_mail_server: str | None
    smtp_port: int | None
    smtp_tls: str | None
    smtp_login: str | None = Field(description="null: the incoming login")
    smtp_password: None = Field(description="Never returned; when never set, the incoming password is used")


class History(BaseModel):
    total: int = Field(description="Messages the current fetch found to get")
    fetched: int
    done: bool


class RemoteIdentity(BaseModel):
    remote_identity_id: str
    is_fetching: bool
    connected: bool
    last_connection: str | None = Field(description="ISO 8601 with offset, e.g. 2016-08-31T10:15:39+0000")
    connection_required: bool
    cancel_fetch_required: bool
    identity_type: Literal["email"]
    identity_id: str = Field(description="The email identity: an address of the user's")
    params: Params
    last_error: str | None
    stopped: bool = Field(description="Stopped after failing for days; set connection_required to true to start again")
    fetched_count: int
    history: History


class RemoteIdentityList(BaseModel):
    remote_identities: list[RemoteIdentity]
    total: int


class Created(RemoteIdentity):
    connection_ok: bool = Field(description="Whether the connection tried at creation worked")


class Deleted(BaseModel):
    deleted: bool


def render(row: Any) -> dict[str, Any]:
    folders = json.loads(row.folders)
    return {
        "remote_identity_id": row.id,
        "is_fetching": bool(row.is_fetching),
        "connected": bool(row.connected),
        "last_connection": rfc_time(row.last_connection_ms),
        "connection_required": bool(row.connection_required),
        "cancel_fetch_required": bool(row.cancel_fetch_required),
        "identity_type": row.identity_type,
        "identity_id": row.address,
        "params": {
            "login": row.login,
            "password": None,
            "mail_protocol": row.protocol,
            "incomming_mail_server": row.host,
            "mail_port": str(row.port),
            "fetch_method": row.fetch_method,
            "tls": row.tls,
            "auth": row.auth,
            "oauth_provider": row.oauth_provider,
            "refresh_token": None,
            "folders": "all" if folders == ["*"] else folders,
            "keep_on_server": bool(row.keep_on_server),
            "poll_interval": int(row.poll_interval_s),
            "outgoing_mail_server": row.smtp_host,
            "smtp_port": row.smtp_port,
            "smtp_tls": row.smtp_tls,
            "smtp_login": row.smtp_login,
            "smtp_password": None,
        },
        "last_error": row.last_error,
        "stopped": bool(row.stopped),
        "fetched_count": int(row.fetched_count),
        "history": {
            "total": int(row.history_total),
            "fetched": int(row.history_fetched),
            "done": int(row.history_fetched) >= int(row.history_total),
        },
    }


JsonObject = Annotated[
    dict[str, Any],
    Body(description="A remote identity as the RFC renders it (read-only fields are ignored)"),
]


@router.get(
    "/v1/remote-identities",
    summary="The user's remote identities",
    response_model=RemoteIdentityList,
    responses=responses(401),
)
async def list_identities(holder: KeyHolderDep, request: Request) -> dict[str, Any]:
    rows = await runtime_of(request).remote_identities.list(holder.user.id)
    return {"remote_identities": [render(r) for r in rows], "total": len(rows)}


@router.post(
    "/v1/remote-identities",
    summary="Connect a remote account (the connection is tried at once)",
    status_code=201,
    response_model=Created,
    responses=responses(401),
)
async def create_identity(holder: KeyHolderDep, request: Request, body: JsonObject) -> dict[str, Any]:
    row, tried = await runtime_of(request).remote_identities.create(holder.user.id, body)
    return {**render(row), "connection_ok": tried.connected}


@router.get(
    "/v1/remote-identities/{identity_id}",
    summary="One remote identity",
    response_model=RemoteIdentity,
    responses=responses(401, 404),
)
async def get_identity(identity_id: IdentityId, holder: KeyHolderDep, request: Request) -> dict[str, Any]:
    return render(await runtime_of(request).remote_identities.get(holder.user.id, identity_id))


@router.patch(
    "/v1/remote-identities/{identity_id}",
    summary="Change a remote identity: connection_required starts or pauses fetching, cancel_fetch_required stops a history fetch",
    response_model=RemoteIdentity,
    responses=responses(401, 404),
)
async def update_identity(identity_id: IdentityId, holder: KeyHolderDep, request: Request, body: JsonObject) -> dict[str, Any]:
    return render(await runtime_of(request).remote_identities.update(holder.user.id, identity_id, body))


@router.delete(
    "/v1/remote-identities/{identity_id}",
    summary="Disconnect a remote account",
    response_model=Deleted,
    responses=responses(401, 404),
)
async def delete_identity(identity_id: IdentityId, holder: KeyHolderDep, request: Request) -> dict[str, bool]:
    await runtime_of(request).remote_identities.delete(holder.user.id, identity_id)
    return {"deleted": True}
