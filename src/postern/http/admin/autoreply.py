"""/users/{user}/autoreply: the user's autoreply (WildDuck's fields and limits)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from postern.errors import InvalidInput
from postern.http.admin.common import (
    SUCCESS,
    Created,
    Flag,
    RuntimeDep,
    Success,
    UserId,
    iso,
    no_nul,
    responses,
)
from postern.rules.service import MAX_AUTOREPLY

router = APIRouter(tags=["Autoreplies"])

DateOrFalse = Any  # a date (ISO 8601 or milliseconds), false, or "" (checked by _time_ms)


class AutoreplyBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: Flag | None = Field(default=None, description="Whether autoreplies are sent")
    name: Annotated[
        str | None,
        Field(default=None, max_length=MAX_AUTOREPLY["name"]),
        AfterValidator(no_nul),
    ] = None
    subject: Annotated[
        str | None,
        Field(default=None, max_length=MAX_AUTOREPLY["subject"]),
        AfterValidator(no_nul),
    ] = None
    text: Annotated[
        str | None,
        Field(default=None, max_length=MAX_AUTOREPLY["text"]),
        AfterValidator(no_nul),
    ] = None
    html: Annotated[
        str | None,
        Field(default=None, max_length=MAX_AUTOREPLY["html"]),
        AfterValidator(no_nul),
    ] = None
    start: DateOrFalse = Field(default=None, description="When replies start: a date, or false for no start")
    end: DateOrFalse = Field(default=None, description="When replies end: a date, or false for no end")


class AutoreplyDetails(BaseModel):
    success: Literal[True]
    status: bool
    name: str
    subject: str
    text: str
    html: str
    start: str | Literal[False]
    end: str | Literal[False]
    created: str | Literal[False]


def _time_ms(value: Any, field: str) -> int:
    """A date as WildDuck's Joi.date() reads one: ISO 8601, or milliseconds."""
    if isinstance(value, bool) or not isinstance(value, (str, int)) or len(str(value)) > 64:
        raise InvalidInput(f'"{field}" must be a valid date', field=field)
    if isinstance(value, int):
        return _in_range(value, field)
    text = value.strip()
    try:
        if text.lstrip("-").isdigit():
            return _in_range(int(text), field)
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, OverflowError):
        raise InvalidInput(f'"{field}" must be a valid date', field=field) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return _in_range(int(when.timestamp() * 1000), field)


def _in_range(ms: int, field: str) -> int:
    if not 0 <= ms < 253402300800000:  # 1970 to 9999
        raise InvalidInput(f'"{field}" must be a valid date', field=field)
    return ms


@router.put(
    "/users/{user}/autoreply",
    summary="Set up or update the autoreply",
    responses=responses(Created),
)
async def set_autoreply(user: UserId, body: AutoreplyBody, runtime: RuntimeDep) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key in ("status", "name", "subject", "text", "html"):
        value = getattr(body, key)
        if value is not None:
            values[key] = value.strip() if key in ("name", "subject") else value
    for key in ("start", "end"):
        if key not in body.model_fields_set:
            continue
        value = getattr(body, key)
        values[f"{key}_ms"] = None if value in (None, False, "") else _time_ms(value, key)
    await runtime.rules.set_autoreply(user, values)
    return {"success": True, "id": user}


@router.get(
    "/users/{user}/autoreply",
    summary="Get the autoreply",
    responses=responses(AutoreplyDetails),
)
async def get_autoreply(user: UserId, runtime: RuntimeDep) -> dict[str, Any]:
    row = await runtime.rules.get_autoreply(user)
    if row is None:
        return {
            "success": True,
            "status": False,
            "name": "",
            "subject": "",
            "text": "",
            "html": "",
            "start": False,
            "end": False,
            "created": False,
        }
    return {
        "success": True,
        "status": row.status,
        "name": row.name,
        "subject": row.subject,
        "text": row.text,
        "html": row.html,
        "start": iso(row.start_ms) if row.start_ms is not None else False,
        "end": iso(row.end_ms) if row.end_ms is not None else False,
        "created": iso(row.created_ms),
    }


@router.delete(
    "/users/{user}/autoreply",
    summary="Delete the autoreply",
    responses=responses(Success),
)
async def delete_autoreply(user: UserId, runtime: RuntimeDep) -> dict[str, Any]:
    await runtime.rules.delete_autoreply(user)
    return SUCCESS
