"""/addresses and /users/{user}/addresses."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from postern.http.admin.common import (
    SUCCESS,
    AddressId,
    Created,
    CursorPage,
    Flag,
    Limit,
    NextCursor,
    PageNumber,
    PreviousCursor,
    RuntimeDep,
    Success,
    UserId,
    cursor_from,
    cursor_page,
    iso,
    responses,
)
from postern.storage.pagination import page_from_rows

router = APIRouter(tags=["Addresses"])


class AddressCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    address: str = Field(min_length=3, max_length=320, description="Internationalised addresses are accepted")
    main: Flag = False


class AddressUpdate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    main: Literal[True] = Field(description="Must be true: makes this the user's main address")


class SearchedAddress(BaseModel):
    id: str
    address: str
    user: str


class AddressSearch(CursorPage):
    query: str
    results: list[SearchedAddress]


class UserAddress(BaseModel):
    id: str
    address: str
    main: bool
    created: str


class UserAddressList(BaseModel):
    success: Literal[True]
    results: list[UserAddress]


class UserAddressDetails(UserAddress):
    success: Literal[True]


def _address(row: Any) -> dict[str, Any]:
    return {"id": row.id, "address": row.address, "main": row.main, "created": iso(row.created_ms)}


@router.get("/addresses", summary="Search and list addresses", responses=responses(AddressSearch))
async def search_addresses(
    runtime: RuntimeDep,
    query: Annotated[str | None, Query(max_length=320, description="Partial match of the address")] = None,
    limit: Limit = 20,
    next: NextCursor = None,
    previous: PreviousCursor = None,
    page: PageNumber = 1,
) -> dict[str, Any]:
    cursor = cursor_from(next, previous, (str,))
    rows, total = await runtime.accounts.search_addresses(query=query, limit=limit, cursor=cursor)
    result = page_from_rows(rows, limit, cursor, lambda r: (r.address_key,))
    results = [{"id": r.id, "address": r.address, "user": r.user_id} for r in result.rows]
    return cursor_page(result, total=total, page=page, results=results, query=query or "")


@router.get("/users/{user}/addresses", summary="List user addresses", responses=responses(UserAddressList))
async def list_addresses(user: UserId, runtime: RuntimeDep) -> dict[str, Any]:
    rows = await runtime.accounts.list_addresses(user)
    return {"success": True, "results": [_address(r) for r in rows]}


@router.post("/users/{user}/addresses", summary="Add a new address", responses=responses(Created, 409))
async def add_address(user: UserId, body: AddressCreate, runtime: RuntimeDep) -> dict[str, Any]:
    address_id = await runtime.accounts.add_address(user, body.address, body.main)
    return {"success": True, "id": address_id}


@router.get("/users/{user}/addresses/{address}", summary="Get one address", responses=responses(UserAddressDetails))
async def get_address(user: UserId, address: AddressId, runtime: RuntimeDep) -> dict[str, Any]:
    row = await runtime.accounts.get_address(user, address)
    return {"success": True, **_address(row)}


@router.put("/users/{user}/addresses/{address}", summary="Update address details", responses=responses(Success))
async def update_address(user: UserId, address: AddressId, body: AddressUpdate, runtime: RuntimeDep) -> dict[str, Any]:
    await runtime.accounts.set_main_address(user, address)
    return SUCCESS


@router.delete("/users/{user}/addresses/{address}", summary="Delete an address", responses=responses(Success))
async def delete_address(user: UserId, address: AddressId, runtime: RuntimeDep) -> dict[str, Any]:
    await runtime.accounts.delete_address(user, address)
    return SUCCESS
