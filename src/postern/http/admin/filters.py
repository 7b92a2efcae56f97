"""/users/{user}/filters and /filters: message filters (WildDuck's shapes, codes and
limits). The query and action are objects as WildDuck's current API takes them; the
flat fields of the older API (``query_from``, ``action_forward``, ...) are read too."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Path, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy.engine import Row

from postern.errors import InvalidInput
from postern.http.admin.common import (
    ID_PATTERN,
    SUCCESS,
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
    no_nul,
    responses,
)
from postern.rules.model import ACTION_KEYS, QUERY_KEYS, describe
from postern.storage.pagination import page_from_rows

router = APIRouter(tags=["Filters"])

FilterId = Annotated[str, Path(pattern=ID_PATTERN, description="ID of the filter")]
Name = Annotated[str | None, Field(default=None, max_length=255), AfterValidator(no_nul)]
_LEGACY_QUERY = {
    "query_from": "from",
    "query_to": "to",
    "query_subject": "subject",
    "query_text": "text",
    "query_ha": "ha",
    "query_size": "size",
}
_LEGACY_ACTION = {
    "action_seen": "seen",
    "action_flag": "flag",
    "action_delete": "delete",
    "action_spam": "spam",
    "action_mailbox": "mailbox",
}


class FilterBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: Name = None
    query: dict[str, Any] | None = Field(default=None, description="from, to, subject, listId, text, ha, size")
    action: dict[str, Any] | None = Field(default=None, description="seen, flag, delete, spam, mailbox, targets")
    disabled: Flag | None = None


def _parts(body: FilterBody) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The query and action the body gives (None: not given), legacy fields merged in."""
    query = dict(body.query) if body.query is not None else None
    action = dict(body.action) if body.action is not None else None
    extra = body.model_extra or {}
    for legacy, key in _LEGACY_QUERY.items():
        if legacy in extra:
            query = query if query is not None else {}
            query.setdefault(key, extra[legacy])
    for legacy, key in _LEGACY_ACTION.items():
        if legacy in extra:
            action = action if action is not None else {}
            action.setdefault(key, extra[legacy])
    legacy_targets = [extra[k] for k in ("action_forward", "action_targetUrl") if extra.get(k)]
    if legacy_targets:
        action = action if action is not None else {}
        action.setdefault("targets", legacy_targets)
    for given, allowed, name in (
        (query, QUERY_KEYS, "query"),
        (action, ACTION_KEYS, "action"),
    ):
        for key in given or ():
            if key not in allowed:
                raise InvalidInput(f'"{name}.{key}" is not allowed', field=f"{name}.{key}")
    return query, action


class Limits(BaseModel):
    allowed: int
    used: int


class FilterListItem(BaseModel):
    id: str
    name: str
    query: list[list[Any]]
    action: list[list[Any]]
    disabled: bool
    created: str
    broken: bool = Field(description="The filter moves mail to a folder that no longer exists (such mail stays in INBOX)")


class FilterList(BaseModel):
    success: Literal[True]
    limits: Limits
    results: list[FilterListItem]


class FilterDetails(BaseModel):
    success: Literal[True]
    id: str
    name: str
    query: dict[str, Any]
    action: dict[str, Any]
    disabled: bool
    created: str


class AllFiltersItem(FilterListItem):
    user: str
    targets: list[str] | None = None


class AllFilters(CursorPage):
    results: list[AllFiltersItem]


def _listed(row: Row, paths: dict[str, str]) -> dict[str, Any]:
    query, action = orjson.loads(row.query), orjson.loads(row.action)
    described_query, described_action = describe(query, action, paths)
    return {
        "id": row.id,
        "name": row.name,
        "query": described_query,
        "action": described_action,
        "disabled": row.disabled,
        "created": iso(row.created_ms),
        "broken": bool(action.get("mailbox")) and action["mailbox"] not in paths,
    }


@router.get(
    "/users/{user}/filters",
    summary="List filters of a user",
    responses=responses(FilterList),
)
async def list_filters(user: UserId, runtime: RuntimeDep) -> dict[str, Any]:
    rows, paths, allowed = await runtime.rules.list_filters(user)
    return {
        "success": True,
        "limits": {"allowed": allowed, "used": len(rows)},
        "results": [_listed(r, paths) for r in rows],
    }


@router.post("/users/{user}/filters", summary="Create a new filter", responses=responses(Created))
async def create_filter(user: UserId, body: FilterBody, runtime: RuntimeDep) -> dict[str, Any]:
    query, action = _parts(body)
    filter_id = await runtime.rules.create_filter(
        user,
        name=(body.name or "").strip(),
        query=query or {},
        action=action or {},
        disabled=bool(body.disabled),
    )
    return {"success": True, "id": filter_id}


@router.get(
    "/users/{user}/filters/{filter}",
    summary="Get one filter",
    responses=responses(FilterDetails),
)
async def get_filter(user: UserId, filter: FilterId, runtime: RuntimeDep) -> dict[str, Any]:
    row = await runtime.rules.get_filter(user, filter)
    return {
        "success": True,
        "id": row.id,
        "name": row.name,
        "query": orjson.loads(row.query),
        "action": orjson.loads(row.action),
        "disabled": row.disabled,
        "created": iso(row.created_ms),
    }


@router.put(
    "/users/{user}/filters/{filter}",
    summary="Update a filter",
    responses=responses(Success),
)
async def update_filter(user: UserId, filter: FilterId, body: FilterBody, runtime: RuntimeDep) -> dict[str, Any]:
    query, action = _parts(body)
    await runtime.rules.update_filter(
        user,
        filter,
        name=body.name.strip() if body.name else None,
        disabled=body.disabled,
        query=query,
        action=action,
    )
    return SUCCESS


@router.delete(
    "/users/{user}/filters/{filter}",
    summary="Delete a filter",
    responses=responses(Success),
)
async def delete_filter(user: UserId, filter: FilterId, runtime: RuntimeDep) -> dict[str, Any]:
    await runtime.rules.delete_filter(user, filter)
    return SUCCESS


@router.get("/filters", summary="List the filters of all users", responses=responses(AllFilters))
async def all_filters(
    runtime: RuntimeDep,
    forward: Annotated[str | None, Query(max_length=255, description="Part of a forward target")] = None,
    limit: Limit = 20,
    next: NextCursor = None,
    previous: PreviousCursor = None,
    page: PageNumber = 1,
) -> dict[str, Any]:
    cursor = cursor_from(next, previous, (str,))
    rows, total, paths = await runtime.rules.all_filters(forward=(forward or "").strip() or None, limit=limit, cursor=cursor)
    result = page_from_rows(rows, limit, cursor, lambda r: (r.id,))
    results = []
    for row in result.rows:
        item = _listed(row, paths)
        item["user"] = row.user_id
        targets = orjson.loads(row.action).get("targets")
        if targets:
            item["targets"] = targets
        results.append(item)
    return cursor_page(result, total=total, page=page if result.previous_cursor else 1, results=results)
