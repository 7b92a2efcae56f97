"""/api/auth/*, /api/api_key and /api/logout: registration, activation, password
reset and signing in (SimpleLogin's account endpoints)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from postern.accounts.user_login import SignedIn
from postern.http.api.common import (
    ApiRoute,
    Code,
    Device,
    Email,
    KeyHolderDep,
    Message,
    NewPassword,
    Ok,
    Text,
    meta_of,
    responses,
    runtime_of,
)

router = APIRouter(tags=["User API: account"], route_class=ApiRoute)

NEEDS_CONFIRMATION = "User needs to confirm their account"


class RegisterBody(BaseModel):
    email: Email
    password: NewPassword


class ActivateBody(BaseModel):
    email: Email
    code: Code


class EmailBody(BaseModel):
    email: Email


class LoginBody(BaseModel):
    email: Email
    password: Annotated[Text, Field(max_length=1024)]
    device: Device = ""


class MfaBody(BaseModel):
    mfa_token: Annotated[Text, Field(max_length=64, description="The TOTP code the user typed")]
    mfa_key: Annotated[Text, Field(max_length=1024, description="mfa_key from /api/auth/login")]
    device: Device = ""


class GoogleBody(BaseModel):
    google_token: Annotated[Text, Field(min_length=1, max_length=4096)]
    device: Device = ""


class FacebookBody(BaseModel):
    facebook_token: Annotated[Text, Field(min_length=1, max_length=4096)]
    device: Device = ""


class ResetBody(BaseModel):
    email: Email | None = Field(default=None, description="The account's email (or give token)")
    token: Annotated[Text, Field(max_length=1024)] | None = Field(
        default=None, description="The token of the link in the mail (or give email)"
    )
    code: Code
    password: NewPassword


class DeviceBody(BaseModel):
    device: Device = ""


class LoginAnswer(BaseModel):
    name: str
    email: str
    mfa_enabled: bool
    mfa_key: str = Field(description="Empty unless the TOTP code is needed: then give it to /api/auth/mfa within 5 minutes")
    api_key: str = Field(description="Empty while the TOTP code is needed")


class MfaAnswer(BaseModel):
    name: str
    email: str
    api_key: str


class ApiKeyAnswer(BaseModel):
    api_key: str


def _login_answer(result: SignedIn) -> dict[str, object]:
    return {
        "name": result.name,
        "email": result.email,
        "mfa_enabled": result.mfa_enabled,
        "mfa_key": result.mfa_key,
        "api_key": result.api_key,
    }


@router.post(
    "/auth/register",
    summary="Register an account; an activation code is mailed",
    response_model=Message,
    responses=responses(403, 429),
)
async def register(body: RegisterBody, request: Request) -> dict[str, str]:
    """Always the same answer, whether or not the email has an account already (its
    owner is then mailed a notice, or a new activation code if it is not active)."""
    await runtime_of(request).registration.register(body.email, body.password, meta_of(request))
    return {"msg": NEEDS_CONFIRMATION}


@router.post(
    "/auth/activate",
    summary="Activate an account with the mailed code",
    response_model=Message,
    responses=responses(410, 429),
)
async def activate(body: ActivateBody, request: Request) -> dict[str, str]:
    """400 for a wrong email or code (or an expired code); the third wrong code
    kills it: 410 until /api/auth/reactivate mails a new one."""
    await runtime_of(request).registration.activate(body.email, body.code, meta_of(request))
    return {"msg": "Account is activated, user can login now"}


@router.post(
    "/auth/reactivate",
    summary="Mail a new activation code",
    response_model=Message,
    responses=responses(429),
)
async def reactivate(body: EmailBody, request: Request) -> dict[str, str]:
    """Always 200: a code is mailed only when the account exists and is not active."""
    await runtime_of(request).registration.reactivate(body.email, meta_of(request))
    return {"msg": NEEDS_CONFIRMATION}


@router.post(
    "/auth/forgot_password",
    summary="Mail a password reset code and link",
    response_model=Ok,
    responses=responses(429),
)
async def forgot_password(body: EmailBody, request: Request) -> dict[str, bool]:
    """Always 200, whether or not the email has an account."""
    await runtime_of(request).registration.forgot_password(body.email, meta_of(request))
    return {"ok": True}


@router.post(
    "/auth/reset_password",
    summary="Set a new password with the mailed reset code",
    response_model=Ok,
    responses=responses(410, 429),
)
async def reset_password(body: ResetBody, request: Request) -> dict[str, bool]:
    """postern's own (not in SimpleLogin's API): ``{email, code, password}`` with the
    code typed from the mail, or ``{token, code, password}`` with both taken from
    the link in it. Sets the password, clears "password change required" and signs
    every API key out. Wrong codes count like activation codes (the third: 410)."""
    await runtime_of(request).registration.reset_password(
        email=body.email, token=body.token, code=body.code, password=body.password, meta=meta_of(request)
    )
    return {"ok": True}


@router.post(
    "/auth/login",
    summary="Sign in with email and password",
    response_model=LoginAnswer,
    responses=responses(422, 429),
)
async def login(body: LoginBody, request: Request) -> dict[str, object]:
    """A wrong email and a wrong password get the same 400 ("Email or password
    incorrect"); an account not activated yet gets 422. With TOTP on, ``api_key`` is
    empty and ``mfa_key`` goes to /api/auth/mfa with the code."""
    result = await runtime_of(request).user_login.login(body.email, body.password, body.device, meta_of(request))
    return _login_answer(result)


@router.post(
    "/auth/mfa",
    summary="Second step of a sign-in with TOTP on",
    response_model=MfaAnswer,
    responses=responses(429),
)
async def mfa(body: MfaBody, request: Request) -> dict[str, object]:
    result = await runtime_of(request).user_login.mfa(body.mfa_token, body.mfa_key, body.device, meta_of(request))
    return {"name": result.name, "email": result.email, "api_key": result.api_key}


@router.post(
    "/auth/google",
    summary="Sign in with a Google access token",
    response_model=LoginAnswer,
    responses=responses(429),
)
async def google(body: GoogleBody, request: Request) -> dict[str, object]:
    """400 unless the operator configured POSTERN_GOOGLE_CLIENT_ID."""
    return _login_answer(await runtime_of(request).user_login.social("google", body.google_token, body.device, meta_of(request)))


@router.post(
    "/auth/facebook",
    summary="Sign in with a Facebook access token",
    response_model=LoginAnswer,
    responses=responses(429),
)
async def facebook(body: FacebookBody, request: Request) -> dict[str, object]:
    """400 unless the operator configured POSTERN_FACEBOOK_APP_ID and _SECRET."""
    return _login_answer(await runtime_of(request).user_login.social("facebook", body.facebook_token, body.device, meta_of(request)))


@router.post(
    "/api_key",
    summary="Create another API key",
    status_code=201,
    response_model=ApiKeyAnswer,
    responses=responses(401),
)
async def create_api_key(body: DeviceBody, holder: KeyHolderDep, request: Request) -> dict[str, str]:
    runtime = runtime_of(request)
    key = await runtime.api_keys.create(holder.user.id, body.device)
    await runtime.authlog.record(holder.user.id, "create api key", "success", meta_of(request), device=body.device)
    return {"api_key": key}


@router.get(
    "/logout",
    summary="Sign out: revoke the API key presented",
    response_model=Message,
    responses=responses(401),
)
async def logout(holder: KeyHolderDep, request: Request) -> dict[str, str]:
    await runtime_of(request).api_keys.revoke(holder.key_id)
    return {"msg": "User is logged out"}
