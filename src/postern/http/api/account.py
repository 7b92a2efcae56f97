"""/api/user_info, the public profile picture, /api/sudo and DELETE /api/user."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from postern.accounts.user_profile import MAX_NAME, UserInfo
from postern.http.api.common import ApiErrorBody, ApiRoute, KeyHolderDep, Ok, Text, meta_of, responses, runtime_of
from postern.http.services import HttpServices

router = APIRouter(tags=["User API: account"], route_class=ApiRoute)


class UserInfoAnswer(BaseModel):
    name: str = Field(description="Empty when the user has none")
    email: str
    is_premium: bool
    in_trial: bool
    max_alias_free_plan: int
    can_create_reverse_alias: bool
    profile_picture_url: str | None
    trial_end_timestamp: int | None
    connected_proton_address: str | None


class UserInfoPatch(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: Annotated[Text, Field(max_length=MAX_NAME)] | None = None
    profile_picture: Annotated[Text, Field(max_length=3 * 1024 * 1024)] | None = Field(
        default=None, description="A PNG, JPEG, GIF or WebP image in base64 (at most 2 MB); null removes the picture"
    )


class SudoBody(BaseModel):
    password: Annotated[Text, Field(max_length=1024)]


def _info_answer(runtime: HttpServices, info: UserInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "email": info.email,
        "is_premium": info.is_premium,
        "in_trial": False,
        "max_alias_free_plan": runtime.settings.max_alias_free_plan,
        "can_create_reverse_alias": runtime.profiles.can_create_reverse_alias(info),
        "profile_picture_url": info.profile_picture_url,
        "trial_end_timestamp": None,
        "connected_proton_address": None,
    }


@router.get("/user_info", summary="The signed-in user", response_model=UserInfoAnswer, responses=responses(401))
async def get_user_info(holder: KeyHolderDep, request: Request) -> dict[str, Any]:
    """Also the way to check that an API key works."""
    runtime = runtime_of(request)
    return _info_answer(runtime, await runtime.profiles.info(holder.user.id))


@router.patch("/user_info", summary="Change the name or the profile picture", response_model=UserInfoAnswer, responses=responses(401))
async def patch_user_info(body: UserInfoPatch, holder: KeyHolderDep, request: Request) -> dict[str, Any]:
    runtime = runtime_of(request)
    changes = {name: getattr(body, name) for name in body.model_fields_set & {"name", "profile_picture"}}
    await runtime.profiles.update(holder.user.id, changes, meta_of(request))
    return _info_answer(runtime, await runtime.profiles.info(holder.user.id))


PICTURE_TYPES = {
    kind: {"schema": {"type": "string", "format": "binary"}} for kind in ("image/png", "image/jpeg", "image/gif", "image/webp")
}


@router.get(
    "/profile_picture/{user_id}/{token}",
    summary="A profile picture (public, at the URL user_info gives)",
    response_class=Response,
    responses={200: {"content": PICTURE_TYPES, "description": "The image"}, 404: {"model": ApiErrorBody, "description": "Not found"}},
)
async def profile_picture(
    user_id: Annotated[str, Path(description="The user's id")],
    token: Annotated[str, Path(description="Changes with the picture")],
    request: Request,
) -> Response:
    data, kind = await runtime_of(request).profiles.picture(user_id, token)
    headers = {
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        # The URL changes with the picture: what it names never changes.
        "Cache-Control": "public, max-age=31536000, immutable",
    }
    return Response(data, media_type=kind, headers=headers)


@router.patch("/sudo", summary="Confirm the password: sudo mode for 5 minutes", response_model=Ok, responses=responses(401, 403, 429))
async def sudo(body: SudoBody, holder: KeyHolderDep, request: Request) -> dict[str, bool]:
    """Opens sudo mode for the API key presented (not for the user's other keys)."""
    await runtime_of(request).profiles.sudo(holder, body.password, meta_of(request))
    return {"ok": True}


@router.delete("/user", summary="Delete the account (needs sudo mode)", response_model=Ok, responses=responses(401, 440))
async def delete_user(holder: KeyHolderDep, request: Request) -> dict[str, bool]:
    """440 unless PATCH /api/sudo confirmed the password with this key in the last
    5 minutes. Deletes the user and everything it owns."""
    await runtime_of(request).profiles.delete_account(holder)
    return {"ok": True}
