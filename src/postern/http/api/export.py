"""/api/export/data: the user's data in one JSON document."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from postern.aliases.export import export_data
from postern.http.api.common import ApiRoute, KeyHolderDep, responses, runtime_of
from postern.http.api.mailboxes import MailboxAnswer, mailbox_answer

router = APIRouter(tags=["User API: import and export"], route_class=ApiRoute)


class ExportedAlias(BaseModel):
    email: str
    enabled: bool


class ExportedApp(BaseModel):
    name: str
    home_url: str


class ExportAnswer(BaseModel):
    email: str
    name: str
    aliases: list[ExportedAlias]
    apps: list[ExportedApp] = Field(description='Always empty: postern has no "Sign in with" apps')
    custom_domains: list[str] = Field(description="Domain names")
    mailboxes: list[MailboxAnswer]


@router.get("/export/data", summary="Export the user's data", response_model=ExportAnswer, responses=responses(401))
async def export_user_data(holder: KeyHolderDep, request: Request) -> dict[str, Any]:
    data = await export_data(runtime_of(request).db, holder.user.id)
    return {
        "email": data.email,
        "name": data.name,
        "aliases": [{"email": a.email, "enabled": a.enabled} for a in data.aliases],
        "apps": [],
        "custom_domains": data.custom_domains,
        "mailboxes": [mailbox_answer(m) for m in data.mailboxes],
    }
