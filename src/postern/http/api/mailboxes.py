"""/api/mailboxes and /api/v2/mailboxes: the addresses aliases forward to, their
verification (by a mailed code or link), default, address change and deletion."""

from __future__ import annotations

import html
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool
from sqlalchemy.engine import Row

from postern.aliases.mailboxes import MailboxChanges
from postern.errors import DomainError
from postern.http.api.common import ApiRoute, Code, Email, KeyHolderDep, api_timestamp, meta_of, responses, runtime_of

router = APIRouter(tags=["User API: mailboxes"], route_class=ApiRoute)

MailboxId = Annotated[int, Path(description="The mailbox's id")]
# PUT and DELETE /mailboxes/{id} take digits only (":int"), so that other methods on
# /mailboxes/verify answer 405 rather than reach them.


class MailboxAnswer(BaseModel):
    id: int
    email: str
    verified: bool
    default: bool
    creation_timestamp: int
    nb_alias: int = Field(description="Aliases that forward to this mailbox")
    pending_email: str | None = Field(description="The new address while an address change waits for its verification")
    require_reply_authentication: bool = Field(description="Replies by MX from this mailbox must pass SPF or DKIM")


class MailboxList(BaseModel):
    mailboxes: list[MailboxAnswer]


class NewMailbox(BaseModel):
    model_config = ConfigDict(extra="ignore")

    email: Email


class VerifyBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    code: Code


class MailboxUpdate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    default: StrictBool | None = Field(default=None, description="true makes this (verified) mailbox the default")
    email: Email | None = Field(default=None, description="Change the address: verified by mail before it takes effect")
    cancel_email_change: StrictBool | None = Field(default=None, description="true drops a pending address change")
    require_reply_authentication: StrictBool | None = Field(
        default=None, description="postern extension: replies by MX from this mailbox must pass SPF or DKIM (not merely not fail)"
    )


class Updated(BaseModel):
    updated: bool


class Deleted(BaseModel):
    deleted: bool


class Sent(BaseModel):
    sent: bool


def mailbox_answer(row: Row) -> dict[str, Any]:
    return {
        "id": row.id,
        "email": row.email,
        "verified": row.verified,
        "default": row.is_default,
        "creation_timestamp": api_timestamp(row.created_ms),
        "nb_alias": int(row.nb_alias or 0),
        "pending_email": row.pending_email,
        "require_reply_authentication": row.require_reply_authentication,
    }


@router.get("/v2/mailboxes", summary="The user's mailboxes, verified or not", response_model=MailboxList, responses=responses(401))
async def list_mailboxes(holder: KeyHolderDep, request: Request) -> dict[str, Any]:
    rows = await runtime_of(request).forward_mailboxes.list(holder.user.id)
    return {"mailboxes": [mailbox_answer(r) for r in rows]}


@router.get("/mailboxes", summary="The user's verified mailboxes (older clients)", response_model=MailboxList, responses=responses(401))
async def list_verified_mailboxes(holder: KeyHolderDep, request: Request) -> dict[str, Any]:
    rows = await runtime_of(request).forward_mailboxes.list(holder.user.id, verified_only=True)
    return {"mailboxes": [mailbox_answer(r) for r in rows]}


@router.post(
    "/mailboxes",
    status_code=201,
    summary="Add a mailbox (verified by mail)",
    response_model=MailboxAnswer,
    responses=responses(401, 429),
)
async def create_mailbox(body: NewMailbox, holder: KeyHolderDep, request: Request) -> dict[str, Any]:
    """Mails a 6-digit code and a link to the address; the mailbox is usable once
    either comes back (``POST /api/mailboxes/{mailbox_id}/verify`` or the link). An
    alias, a reverse alias, a deleted alias or one of the user's mailboxes is refused."""
    row = await runtime_of(request).forward_mailboxes.create(holder.user.id, body.email, meta_of(request))
    return mailbox_answer(row)


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title></head>
<body><h1>{title}</h1><p>{text}</p></body></html>
"""
_PAGE_HEADERS = {"Content-Security-Policy": "default-src 'none'", "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


def _page(status: int, title: str, text: str) -> HTMLResponse:
    body = _PAGE.format(title=html.escape(title), text=html.escape(text))
    return HTMLResponse(body, status_code=status, headers=_PAGE_HEADERS)


@router.get(
    "/mailboxes/verify",
    summary="Verify a mailbox by the link mailed to it (no API key)",
    response_class=HTMLResponse,
    responses={
        200: {"content": {"text/html": {"schema": {"type": "string"}}}, "description": "A page saying the mailbox is verified"},
        400: {"content": {"text/html": {"schema": {"type": "string"}}}, "description": "A page saying the link is invalid or expired"},
    },
)
async def verify_mailbox_link(
    request: Request, token: Annotated[str, Query(description="The token of the mailed link")] = ""
) -> HTMLResponse:
    """The link's token carries the code mailed with it: it dies with that code (used,
    replaced by a newer one, or after 24 hours). For an address change, the mailbox's
    address changes now."""
    try:
        row = await runtime_of(request).forward_mailboxes.verify_link(token[:1024])
    except DomainError as error:
        return _page(400, "Mailbox not verified", error.message)
    return _page(200, "Mailbox verified", f"{row.email} is verified: mail to your aliases can be forwarded to it.")


@router.post(
    "/mailboxes/{mailbox_id}/verify",
    summary="Verify a mailbox with the mailed code",
    response_model=MailboxAnswer,
    responses=responses(401, 404, 410, 409, 429),
)
async def verify_mailbox(mailbox_id: MailboxId, body: VerifyBody, holder: KeyHolderDep, request: Request) -> dict[str, Any]:
    """Verifies a new mailbox, or the new address of a mailbox whose address change
    waits. The third wrong code kills it: 410 until a new one is sent."""
    row = await runtime_of(request).forward_mailboxes.verify_code(holder.user.id, mailbox_id, body.code, meta_of(request))
    return mailbox_answer(row)


@router.post(
    "/mailboxes/{mailbox_id}/resend",
    summary="Mail a new verification code and link",
    response_model=Sent,
    responses=responses(401, 404, 429),
)
async def resend_verification(mailbox_id: MailboxId, holder: KeyHolderDep, request: Request) -> dict[str, bool]:
    """For a mailbox not verified yet, or waiting for its new address to be
    verified; the code and link mailed before stop working."""
    await runtime_of(request).forward_mailboxes.resend(holder.user.id, mailbox_id, meta_of(request))
    return {"sent": True}


@router.put("/mailboxes/{mailbox_id:int}", summary="Update a mailbox", response_model=Updated, responses=responses(401, 404, 429))
async def update_mailbox(mailbox_id: MailboxId, body: MailboxUpdate, holder: KeyHolderDep, request: Request) -> dict[str, bool]:
    """``default: true`` (a verified mailbox only), ``email`` (mails a code and a link
    to the new address; the address changes once verified), ``cancel_email_change:
    true``, and ``require_reply_authentication`` (a postern extension). All in one
    transaction: any invalid field changes nothing."""
    given = body.model_fields_set
    changes = MailboxChanges(
        default=body.default if "default" in given else None,
        email=body.email if "email" in given else None,
        cancel_email_change=bool(body.cancel_email_change),
        require_reply_authentication=body.require_reply_authentication if "require_reply_authentication" in given else None,
    )
    await runtime_of(request).forward_mailboxes.update(holder.user.id, mailbox_id, changes, meta_of(request))
    return {"updated": True}


@router.delete(
    "/mailboxes/{mailbox_id:int}", summary="Delete a mailbox (not the default)", response_model=Deleted, responses=responses(401, 404)
)
async def delete_mailbox(mailbox_id: MailboxId, holder: KeyHolderDep, request: Request) -> dict[str, bool]:
    """Aliases (and custom domains) left without a mailbox forward to the default
    mailbox; aliases whose first mailbox it was get their next one."""
    await runtime_of(request).forward_mailboxes.delete(holder.user.id, mailbox_id)
    return {"deleted": True}
