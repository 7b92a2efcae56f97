"""/api/v1/identities: the addresses that are the user's (hosted addresses, aliases,
verified mailboxes, external addresses proven by mail), each with how and when it was
proven; POST starts the proof of an external address (a token mailed to it, whose
link proves it), DELETE drops a proof by mail.

Not in SimpleLogin's API: postern's one proof of address ownership
(``postern.verification``), which the remote identities' From checks also use."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from postern.http.api.common import (
    ApiError,
    ApiRoute,
    Email,
    KeyHolderDep,
    api_date,
    api_timestamp,
    meta_of,
    responses,
    runtime_of,
)
from postern.verification.ownership import EMAIL_TOKEN, address_key
from postern.verification.sessions import UserProofs

router = APIRouter(tags=["User API: identities"], route_class=ApiRoute)

HOW = {
    "hosted": "a hosted address of this account",
    "alias": "an alias of this account",
    "mailbox": "a mailbox verified with a mailed code",
    EMAIL_TOKEN: "a token mailed to it was submitted back",
}


class Identity(BaseModel):
    email: str
    method: str = Field(description="hosted, alias, mailbox or email_token")
    how: str = Field(description="How it was proven, in words")
    proven_timestamp: int = Field(description="When (seconds since the epoch)")
    proven_at: str | None = Field(description="When, as a date")


class Pending(BaseModel):
    email: str
    sid: int = Field(description="The validation session, as the mailed link names it")
    requested_timestamp: int


class IdentityList(BaseModel):
    identities: list[Identity]
    pending: list[Pending]


class NewIdentity(BaseModel):
    model_config = ConfigDict(extra="ignore")

    email: Email


class Started(BaseModel):
    email: str
    sid: int
    pending: bool


class Deleted(BaseModel):
    deleted: bool


def proofs_of(request: Request) -> UserProofs:
    return UserProofs(runtime_of(request).validation)


@router.get(
    "/v1/identities",
    summary="The user's proven addresses",
    response_model=IdentityList,
    responses=responses(401),
)
async def list_identities(holder: KeyHolderDep, request: Request) -> IdentityList:
    runtime = runtime_of(request)
    proven = await runtime.ownership.proven_addresses(holder.user.id)
    pending = await proofs_of(request).pending(holder.user.id)
    known = {p.key for p in proven}
    return IdentityList(
        identities=[
            Identity(
                email=p.address,
                method=p.method,
                how=HOW.get(p.method, p.method),
                proven_timestamp=api_timestamp(p.proven_ms) or 0,
                proven_at=api_date(p.proven_ms),
            )
            for p in proven
        ],
        pending=[
            Pending(
                email=r.address,
                sid=r.id,
                requested_timestamp=api_timestamp(r.mtime_ms) or 0,
            )
            for r in pending
            if r.address_key not in known
        ],
    )


@router.post(
    "/v1/identities",
    status_code=202,
    summary="Prove an external address: a token is mailed to it",
    response_model=Started,
    responses=responses(401, 409, 429),
)
async def add_identity(body: NewIdentity, holder: KeyHolderDep, request: Request) -> Started:
    """Mails a link to the address (again, when a proof is pending); following it
    proves the address. 409 when it is already the user's."""
    runtime = runtime_of(request)
    if await runtime.ownership.address_is_proven(holder.user.id, body.email):
        raise ApiError(409, "This address is already proven to be yours")
    sid, display = await proofs_of(request).start(holder.user.id, body.email, ip=meta_of(request).ip)
    return Started(email=display, sid=sid, pending=True)


@router.delete(
    "/v1/identities",
    summary="Drop the proof of an external address",
    response_model=Deleted,
    responses=responses(
        401,
        404,
        _403="Hosted addresses, aliases and mailboxes are removed where they are managed",
    ),
)
async def delete_identity(
    holder: KeyHolderDep,
    request: Request,
    email: Annotated[str, Query(min_length=1, max_length=320, description="The address")],
) -> Deleted:
    runtime = runtime_of(request)
    key = address_key(email)
    if key is None:
        raise ApiError(400, "email must be an email address")
    proofs = {p.key: p.method for p in await runtime.ownership.proven_addresses(holder.user.id)}
    if proofs.get(key) not in (None, EMAIL_TOKEN):
        raise ApiError(403, f"This address is {HOW[proofs[key]]}: remove it there")
    if not await proofs_of(request).forget(holder.user.id, email):
        raise ApiError(404, "No such proven address")
    return Deleted(deleted=True)
