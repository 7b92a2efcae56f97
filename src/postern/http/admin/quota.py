"""/users/{user}/quota/reset and /quota/reset: recompute the stored size of mail."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel

from postern.http.admin.common import RuntimeDep, UserId, responses

router = APIRouter(tags=["Quota"])


class QuotaResetAnswer(BaseModel):
    success: Literal[True]
    storageUsed: int
    previousStorageUsed: int


class TaskStarted(BaseModel):
    success: Literal[True]
    task: str


@router.post("/users/{user}/quota/reset", summary="Recalculate user quota", responses=responses(QuotaResetAnswer))
async def reset_user_quota(user: UserId, runtime: RuntimeDep) -> dict[str, Any]:
    result = await runtime.quota.reset_user(user)
    return {"success": True, "storageUsed": result.used, "previousStorageUsed": result.previous}


@router.post("/quota/reset", summary="Recalculate the quota of every user", responses=responses(TaskStarted))
async def reset_all_quotas(runtime: RuntimeDep) -> dict[str, Any]:
    """Starts a background task in the serving process, which walks every user in
    batches (progress in the log); answers at once with the task's id."""
    return {"success": True, "task": runtime.quota.reset_all()}
