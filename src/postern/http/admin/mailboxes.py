"""/users/{user}/mailboxes: the user's folders."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Row

from postern.http.admin.common import SUCCESS, Created, Flag, MailboxId, RuntimeDep, Success, UserId, responses
from postern.mailstore.folders import name_of
from postern.mailstore.service import UNSET

router = APIRouter(tags=["Mailboxes"])

# strict: pydantic would otherwise read JSON true as 1 (a retention of 1 ms).
Retention = Annotated[int, Field(strict=True, ge=0, le=2**50, description="Retention time in milliseconds; 0 for none")]


class MailboxCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    path: str = Field(min_length=1, max_length=1024, description="Path with / as the separator; missing parents are created")
    retention: Retention | None = None


class MailboxUpdate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    path: str | None = Field(default=None, min_length=1, max_length=1024, description="New path (renames the mailbox and its children)")
    retention: Retention | Literal[False] | None = None
    subscribed: Flag | None = None


class Mailbox(BaseModel):
    id: str
    name: str
    path: str
    specialUse: str | None
    modifyIndex: int
    subscribed: bool
    retention: int | Literal[False]
    total: int | None = None
    unseen: int | None = None
    size: int | None = None


class MailboxList(BaseModel):
    success: Literal[True]
    results: list[Mailbox]


class MailboxDetails(Mailbox):
    success: Literal[True]
    uidNext: int
    uidValidity: int


def _lstrip(path: str) -> str:
    # WildDuck takes "/Folder" as "Folder": leading separators are dropped, not refused.
    return path.lstrip("/")


def mailbox_json(row: Row, counters: bool) -> dict[str, Any]:
    result: dict[str, Any] = {
        "id": row.id,
        "name": name_of(row.path),
        "path": row.path,
        "specialUse": row.special_use,
        "modifyIndex": row.modseq,
        "subscribed": row.subscribed,
        "retention": row.retention_ms or False,
    }
    if counters:
        result.update(total=row.message_count, unseen=row.unseen_count, size=row.size_total)
    return result


@router.get("/users/{user}/mailboxes", summary="List mailboxes", responses=responses(MailboxList))
async def list_mailboxes(
    user: UserId,
    runtime: RuntimeDep,
    counters: Annotated[bool, Query(description="Include total and unseen message counts")] = False,
    specialUse: Annotated[bool, Query(description="List only the special-use mailboxes")] = False,
) -> dict[str, Any]:
    rows = await runtime.mailstore.list_folders(user)
    if specialUse:
        rows = [r for r in rows if r.special_use]
    return {"success": True, "results": [mailbox_json(r, counters) for r in rows]}


@router.post("/users/{user}/mailboxes", summary="Add a new mailbox", responses=responses(Created, 409))
async def create_mailbox(user: UserId, body: MailboxCreate, runtime: RuntimeDep) -> dict[str, Any]:
    folder_id = await runtime.mailstore.create_folder(user, _lstrip(body.path), body.retention)
    return {"success": True, "id": folder_id}


@router.get("/users/{user}/mailboxes/resolve/{path:path}", summary="Resolve a mailbox path to its ID", responses=responses(Created))
async def resolve_mailbox(user: UserId, path: str, runtime: RuntimeDep) -> dict[str, Any]:
    row = await runtime.mailstore.folder_by_path(user, _lstrip(path))
    return {"success": True, "id": row.id}


@router.get("/users/{user}/mailboxes/{mailbox}", summary="Get one mailbox", responses=responses(MailboxDetails))
async def get_mailbox(user: UserId, mailbox: MailboxId, runtime: RuntimeDep) -> dict[str, Any]:
    row = await runtime.mailstore.get_folder(user, mailbox)
    return {"success": True, **mailbox_json(row, True), "uidNext": row.uid_next, "uidValidity": row.uidvalidity}


@router.put("/users/{user}/mailboxes/{mailbox}", summary="Update mailbox details", responses=responses(Success, 409))
async def update_mailbox(user: UserId, mailbox: MailboxId, body: MailboxUpdate, runtime: RuntimeDep) -> dict[str, Any]:
    given = body.model_fields_set
    await runtime.mailstore.update_folder(
        user,
        mailbox,
        path=None if body.path is None else _lstrip(body.path),
        retention_ms=(body.retention or None) if "retention" in given else UNSET,
        subscribed=body.subscribed,
    )
    return SUCCESS


@router.delete("/users/{user}/mailboxes/{mailbox}", summary="Delete a mailbox", responses=responses(Success))
async def delete_mailbox(user: UserId, mailbox: MailboxId, runtime: RuntimeDep) -> dict[str, Any]:
    await runtime.mailstore.delete_folder(user, mailbox)
    return SUCCESS
