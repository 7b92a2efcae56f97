"""Contacts of an alias and their reverse aliases: list, create, delete, block."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from postern.aliases.service import CANNOT_REVERSE_ALIAS, ContactView
from postern.http.api.common import ApiRoute, KeyHolderDep, Text, api_date, api_timestamp, page_id_of, responses, runtime_of

router = APIRouter(tags=["User API: contacts"], route_class=ApiRoute)


class ContactAnswer(BaseModel):
    id: int
    contact: str = Field(description="The contact's address")
    creation_date: str
    creation_timestamp: int
    last_email_sent_date: str | None
    last_email_sent_timestamp: int | None
    reverse_alias: str = Field(description='As displayed: "Name | john at example.com" <ra+…@domain>')
    reverse_alias_address: str
    block_forward: bool


class CreatedContact(ContactAnswer):
    existed: bool


class ContactList(BaseModel):
    contacts: list[ContactAnswer]


class ContactBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    contact: Annotated[Text, Field(min_length=1, max_length=512, description='"First Last <first@example.com>" or an address')]


class Deleted(BaseModel):
    deleted: bool


class BlockForward(BaseModel):
    block_forward: bool


def contact_answer(view: ContactView) -> dict[str, Any]:
    return {
        "id": view.id,
        "contact": view.email,
        "creation_date": api_date(view.created_ms),
        "creation_timestamp": api_timestamp(view.created_ms),
        "last_email_sent_date": api_date(view.last_email_sent_ms),
        "last_email_sent_timestamp": api_timestamp(view.last_email_sent_ms),
        "reverse_alias": view.reverse_alias,
        "reverse_alias_address": view.reverse_alias_address,
        "block_forward": view.block_forward,
    }


@router.get(
    "/aliases/{alias_id}/contacts", summary="An alias's contacts, 20 a page", response_model=ContactList, responses=responses(401, 404)
)
async def list_contacts(
    alias_id: int,
    holder: KeyHolderDep,
    request: Request,
    page_id: Annotated[str | None, Query(max_length=16, description="The page, from 0; required")] = None,
) -> dict[str, Any]:
    page = page_id_of(page_id)
    views = await runtime_of(request).aliases.contacts(holder.user.id, alias_id, page)
    return {"contacts": [contact_answer(v) for v in views]}


@router.post(
    "/aliases/{alias_id}/contacts",
    summary="Add a contact (and its reverse alias) to an alias",
    status_code=201,
    response_model=CreatedContact,
    responses={**responses(401, 404, _403=CANNOT_REVERSE_ALIAS), 200: {"model": CreatedContact, "description": "The contact existed"}},
)
async def create_contact(alias_id: int, body: ContactBody, holder: KeyHolderDep, request: Request) -> Any:
    """201 with the new contact, or 200 with ``existed: true``. 403 when the user may
    not create reverse aliases (not premium, and the operator keeps them premium)."""
    view, created = await runtime_of(request).aliases.create_contact(holder.user, alias_id, body.contact)
    answer = {**contact_answer(view), "existed": not created}
    if created:
        return answer
    return JSONResponse(CreatedContact.model_validate(answer).model_dump(), status_code=200)


@router.delete("/contacts/{contact_id}", summary="Delete a contact", response_model=Deleted, responses=responses(401, 404))
async def delete_contact(contact_id: int, holder: KeyHolderDep, request: Request) -> dict[str, bool]:
    await runtime_of(request).aliases.delete_contact(holder.user.id, contact_id)
    return {"deleted": True}


@router.post(
    "/contacts/{contact_id}/toggle", summary="Block or unblock a contact", response_model=BlockForward, responses=responses(401, 404)
)
async def toggle_contact(contact_id: int, holder: KeyHolderDep, request: Request) -> dict[str, bool]:
    """A blocked contact's mail to the alias is counted, not forwarded."""
    return {"block_forward": await runtime_of(request).aliases.toggle_contact(holder.user.id, contact_id)}
