"""/users/{user}/authlog: the authentication log of a user (30 days)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from postern.accounts.authlog import entry_data
from postern.http.admin.common import (
    CursorPage,
    Limit,
    NextCursor,
    PageNumber,
    PreviousCursor,
    RuntimeDep,
    UserId,
    cursor_from,
    cursor_page,
    iso,
    responses,
)
from postern.storage.pagination import page_from_rows

router = APIRouter(tags=["Authentication"])


class AuthLogEntry(BaseModel):
    """One event; besides these, the fields the event has (``scope``, ``asp``, ...)."""

    model_config = ConfigDict(extra="allow")

    id: str
    action: str
    result: str
    protocol: str | None
    sess: str | None
    ip: str | None
    created: str


class AuthLogList(CursorPage):
    action: str | None
    results: list[AuthLogEntry]


def _entry(row: Any) -> dict[str, Any]:
    return {
        **entry_data(row),
        "id": row.id,
        "action": row.action,
        "result": row.result,
        "protocol": row.protocol,
        "sess": row.sess,
        "ip": row.ip,
        "created": iso(row.created_ms),
    }


@router.get("/users/{user}/authlog", summary="List the authentication log", responses=responses(AuthLogList))
async def list_authlog(
    user: UserId,
    runtime: RuntimeDep,
    action: Annotated[str | None, Query(max_length=64, description='Only this action, e.g. "authentication" or "create asp"')] = None,
    sess: Annotated[str | None, Query(max_length=255, description="Only entries of this session")] = None,
    ip: Annotated[str | None, Query(max_length=64, description="Only entries from this IP address")] = None,
    limit: Limit = 20,
    next: NextCursor = None,
    previous: PreviousCursor = None,
    page: PageNumber = 1,
) -> dict[str, Any]:
    cursor = cursor_from(next, previous, (int, str))
    rows, total = await runtime.authlog.list_for_user(user, action=action, sess=sess, ip=ip, limit=limit, cursor=cursor)
    result = page_from_rows(rows, limit, cursor, lambda r: (r.created_ms, r.id))
    return cursor_page(result, total=total, page=page, results=[_entry(r) for r in result.rows], action=action)
