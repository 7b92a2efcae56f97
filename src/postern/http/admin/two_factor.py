"""/users/{user}/2fa: TOTP two-factor authentication."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from postern.accounts.authlog import AuthMeta
from postern.errors import AuthFailed
from postern.http.admin.common import SUCCESS, Flag, Ip, IpQuery, RuntimeDep, Sess, SessQuery, Success, UserId, no_nul, responses

router = APIRouter(tags=["2FA"])

Token = Annotated[str, AfterValidator(no_nul), Field(min_length=1, max_length=32, description="The 6-digit code of the authenticator app")]


class TotpSetupRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    issuer: Annotated[str | None, AfterValidator(no_nul)] = Field(
        default=None, max_length=255, description="Name shown in the authenticator app"
    )
    fresh: Flag = Field(default=False, description="Make a new seed even if one was set up before")
    sess: Sess = None
    ip: Ip = None


class TotpSetupAnswer(BaseModel):
    success: Literal[True]
    seed: str = Field(description="The TOTP secret (base32), for manual entry")
    qrcode: str = Field(description="A data: URL of a PNG QR code of the otpauth:// link")


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    token: Token
    sess: Sess = None
    ip: Ip = None


def _meta(sess: str | None, ip: str | None) -> AuthMeta:
    return AuthMeta(protocol="API", sess=sess, ip=ip)


@router.post("/users/{user}/2fa/totp/setup", summary="Set up TOTP 2FA", responses=responses(TotpSetupAnswer, 409))
async def setup_totp(user: UserId, runtime: RuntimeDep, body: TotpSetupRequest | None = None) -> dict[str, Any]:
    body = body or TotpSetupRequest()
    row, _tags = await runtime.accounts.get_user(user)
    setup = await runtime.two_factor.setup_totp(
        user,
        issuer=(body.issuer or "").strip() or runtime.settings.hostname,
        label=row.address or row.username,
        fresh=body.fresh,
        meta=_meta(body.sess, body.ip),
    )
    return {"success": True, "seed": setup.secret, "qrcode": setup.qrcode}


@router.post("/users/{user}/2fa/totp/enable", summary="Enable TOTP 2FA with a first code", responses=responses(Success, 409, 429))
async def enable_totp(user: UserId, body: TokenRequest, runtime: RuntimeDep) -> dict[str, Any]:
    await runtime.two_factor.enable_totp(user, body.token, _meta(body.sess, body.ip))
    return SUCCESS


@router.post("/users/{user}/2fa/totp/check", summary="Check a TOTP code", responses=responses(Success, 429))
async def check_totp(user: UserId, body: TokenRequest, runtime: RuntimeDep) -> dict[str, Any]:
    if not await runtime.two_factor.verify_totp(user, body.token, _meta(body.sess, body.ip)):
        raise AuthFailed("Invalid authentication token", code="InvalidToken")
    return SUCCESS


@router.delete("/users/{user}/2fa/totp", summary="Disable TOTP 2FA", responses=responses(Success))
async def disable_totp(user: UserId, runtime: RuntimeDep, sess: SessQuery = None, ip: IpQuery = None) -> dict[str, Any]:
    await runtime.two_factor.disable_totp(user, _meta(sess, ip))
    return SUCCESS


@router.delete("/users/{user}/2fa", summary="Disable every 2FA method", responses=responses(Success))
async def disable_2fa(user: UserId, runtime: RuntimeDep, sess: SessQuery = None, ip: IpQuery = None) -> dict[str, Any]:
    await runtime.two_factor.disable_all(user, _meta(sess, ip))
    return SUCCESS
