"""/queue: the outbound queue as the operator sees it (beyond WildDuck's API, like
`postern queue`): list, show, retry now, cancel."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel

from postern.delivery.queue_admin import STATES, WAITING, QueuedMessage
from postern.http.admin.common import ID_PATTERN, RuntimeDep, iso, responses

router = APIRouter(tags=["Queue"])

UserIdQuery = Annotated[str | None, Query(pattern=ID_PATTERN, description="Only this user's messages")]
QueueId = Annotated[str, Path(pattern=ID_PATTERN, description="ID of the queued message")]


class QueueRecipient(BaseModel):
    id: str
    to: str
    state: str
    attempts: int
    nextAttempt: str | None
    lastResponse: str | None
    target: str | None


class QueueEntry(BaseModel):
    queueId: str
    user: str | None
    sender: str
    state: str
    created: str
    expires: str
    recipients: list[QueueRecipient]


class QueueList(BaseModel):
    success: bool = True
    total: int
    results: list[QueueEntry]


class QueueEntryAnswer(QueueEntry):
    success: bool = True


class QueueChange(BaseModel):
    success: bool = True
    queueId: str
    recipients: int


def _entry(message: QueuedMessage) -> dict[str, Any]:
    data = message.as_dict()
    return {
        "queueId": message.queue_id,
        "user": message.user_id,
        "sender": message.mail_from,
        "state": message.state,
        "created": iso(message.created_ms),
        "expires": iso(message.expires_ms),
        "recipients": [{**r, "nextAttempt": iso(r["nextAttempt"]) if r["nextAttempt"] else None} for r in data["recipients"]],
    }


@router.get("/queue", summary="List the outbound queue", responses=responses(QueueList))
async def list_queue(
    runtime: RuntimeDep,
    state: Annotated[
        list[str] | None, Query(description=f"Only messages with recipients in these states ({', '.join(STATES)}); default: waiting ones")
    ] = None,
    user: UserIdQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 250,
) -> dict[str, Any]:
    messages = await runtime.queue_admin.messages(states=state or WAITING, user_id=user, limit=limit)
    return {"success": True, "total": len(messages), "results": [_entry(m) for m in messages]}


@router.get("/queue/{queue_id}", summary="Show a queued message", responses=responses(QueueEntryAnswer))
async def show_queued(queue_id: QueueId, runtime: RuntimeDep) -> dict[str, Any]:
    return {"success": True, **_entry(await runtime.queue_admin.show(queue_id))}


@router.post("/queue/{queue_id}/retry", summary="Try a queued message again now", responses=responses(QueueChange))
async def retry_queued(queue_id: QueueId, runtime: RuntimeDep) -> dict[str, Any]:
    return {"success": True, "queueId": queue_id, "recipients": await runtime.queue_admin.retry(queue_id)}


@router.delete("/queue/{queue_id}", summary="Cancel a queued message", responses=responses(QueueChange))
async def cancel_queued(queue_id: QueueId, runtime: RuntimeDep) -> dict[str, Any]:
    return {"success": True, "queueId": queue_id, "recipients": await runtime.queue_admin.cancel(queue_id)}
