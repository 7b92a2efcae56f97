"""/api/notifications: what the user must hear about, newest first, with humanised
times ("2 minutes ago")."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from postern.http.api.common import ApiError, ApiRoute, KeyHolderDep, responses, runtime_of
from postern.storage.ids import now_ms

router = APIRouter(tags=["User API: notifications"], route_class=ApiRoute)

MAX_ID = 2**31 - 1


def _ago(count: int, unit: str) -> str:
    if count == 1:
        return f"{'an' if unit == 'hour' else 'a'} {unit} ago"
    return f"{count} {unit}s ago"


def humanise(created_ms: int, now: int) -> str:
    """How long ago, in the words of the user API (close to SimpleLogin's): "just
    now", "30 seconds ago", "a minute ago", "2 minutes ago", "an hour ago", "3 days
    ago", "a month ago", "2 years ago". A time in the future is "just now"."""
    seconds = max(0, (now - created_ms) // 1000)
    if seconds < 10:
        return "just now"
    if seconds < 45:
        return f"{seconds} seconds ago"
    if seconds < 90:
        return "a minute ago"
    if seconds < 45 * 60:
        return _ago(max(2, seconds // 60), "minute")
    if seconds < 90 * 60:
        return "an hour ago"
    if seconds < 22 * 3600:
        return _ago(max(2, seconds // 3600), "hour")
    if seconds < 36 * 3600:
        return "a day ago"
    if seconds < 26 * 86400:
        return _ago(max(2, seconds // 86400), "day")
    if seconds < 45 * 86400:
        return "a month ago"
    if seconds < 320 * 86400:
        return _ago(max(2, seconds // (30 * 86400)), "month")
    if seconds < 548 * 86400:
        return "a year ago"
    return _ago(max(2, seconds // (365 * 86400)), "year")


class NotificationAnswer(BaseModel):
    id: int
    message: str = Field(description="HTML")
    title: str
    read: bool
    created_at: str = Field(description='How long ago, e.g. "2 minutes ago"')


class NotificationPage(BaseModel):
    more: bool = Field(description="Whether a next page exists")
    notifications: list[NotificationAnswer]


class Done(BaseModel):
    done: bool


@router.get(
    "/notifications", summary="Notifications, newest first (20 per page)", response_model=NotificationPage, responses=responses(401)
)
async def list_notifications(
    holder: KeyHolderDep, request: Request, page: Annotated[str | None, Query(description="The page number, from 0")] = None
) -> dict[str, Any]:
    number = 0
    if page not in (None, ""):
        if not page.isdigit() or len(page) > 9:
            raise ApiError(400, "page must be a number from 0")
        number = int(page)
    items, more = await runtime_of(request).notifications.page(holder.user.id, number)
    now = now_ms()
    return {
        "more": more,
        "notifications": [
            {"id": n.id, "message": n.message, "title": n.title, "read": n.read, "created_at": humanise(n.created_ms, now)} for n in items
        ],
    }


@router.post("/notifications/{notification_id}", summary="Mark a notification as read", response_model=Done, responses=responses(401, 404))
async def mark_notification_read(
    notification_id: Annotated[int, Path(description="The notification's id")], holder: KeyHolderDep, request: Request
) -> dict[str, bool]:
    if not 0 < notification_id <= MAX_ID:
        raise ApiError(404, "Notification not found")
    await runtime_of(request).notifications.mark_read(holder.user.id, notification_id)
    return {"done": True}
