"""What the user API tells and changes about the signed-in user: ``user_info``, the
profile picture, sudo mode and deleting the account."""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from postern.accounts.api_keys import ApiKeys, KeyHolder
from postern.accounts.authlog import NO_META, AuthLog, AuthMeta
from postern.accounts.rate_limit import RateLimiter
from postern.accounts.service import Accounts
from postern.config import Settings
from postern.errors import DomainError, Forbidden, InvalidInput, NotFound
from postern.mime import header_writing
from postern.storage import profile_pictures as picture_store
from postern.storage import users as user_store
from postern.storage.database import Database
from postern.storage.ids import is_id, now_ms

MAX_PICTURE_BYTES = 2 * 1024 * 1024
MAX_NAME = 256


class SudoRequired(DomainError):
    """The action needs sudo mode (``PATCH /api/sudo``) for this key (440)."""

    code = "SudoRequired"


def picture_type(data: bytes) -> str | None:
    """The image type by its magic bytes (PNG, JPEG, GIF, WebP), or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def decode_picture(value: str) -> tuple[bytes, str]:
    """Base64 (standard or URL-safe, a data: URL prefix allowed) to (bytes, type)."""
    text = value.strip()
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    text = "".join(text.split())
    if len(text) > (MAX_PICTURE_BYTES * 4) // 3 + 8:
        raise InvalidInput("profile_picture is too large (at most 2 MB)", field="profile_picture")
    try:
        data = base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("profile_picture must be a base64 encoded image", field="profile_picture") from None
    if not data:
        raise InvalidInput("profile_picture must be a base64 encoded image", field="profile_picture")
    if len(data) > MAX_PICTURE_BYTES:
        raise InvalidInput("profile_picture is too large (at most 2 MB)", field="profile_picture")
    kind = picture_type(data)
    if kind is None:
        raise InvalidInput("profile_picture must be a PNG, JPEG, GIF or WebP image", field="profile_picture")
    return data, kind


@dataclass(frozen=True, slots=True)
class UserInfo:
    name: str
    email: str
    is_premium: bool
    profile_picture_url: str | None


class UserProfiles:
    def __init__(self, *, db: Database, settings: Settings, accounts: Accounts, limiter: RateLimiter, authlog: AuthLog, api_keys: ApiKeys):
        self.db = db
        self.settings = settings
        self.accounts = accounts
        self.limiter = limiter
        self.authlog = authlog
        self.api_keys = api_keys

    def picture_url(self, user_id: str, token: str) -> str:
        return f"{self.settings.resolved_public_url}/api/profile_picture/{user_id}/{token}"

    async def info(self, user_id: str) -> UserInfo:
        async with self.db.read() as conn:
            user = await user_store.get_user(conn, user_id)
            token = await picture_store.token_of(conn, user_id)
        if user is None:
            raise NotFound("This user does not exist")
        return UserInfo(
            name=user.name or "",
            email=user.email or user.address or user.username,
            is_premium=bool(user.premium),
            profile_picture_url=self.picture_url(user_id, token) if token else None,
        )

    def can_create_reverse_alias(self, info: UserInfo) -> bool:
        return info.is_premium or self.settings.free_reverse_alias

    async def update(self, user_id: str, changes: dict[str, Any], meta: AuthMeta = NO_META) -> None:
        """``name`` (None clears it) and ``profile_picture`` (base64; None removes it)."""
        picture: tuple[bytes, str] | None = None
        if changes.get("name") and header_writing.has_control(changes["name"]):
            raise InvalidInput("name must not contain line breaks or control characters", field="name")
        if changes.get("profile_picture") is not None:
            picture = decode_picture(changes["profile_picture"])
        async with self.db.write() as conn:
            if await user_store.get_user(conn, user_id, for_update=True) is None:
                raise NotFound("This user does not exist")
            if "name" in changes:
                name = (changes["name"] or "").strip()[:MAX_NAME]
                await user_store.update_user(conn, user_id, {"name": name or None})
            if "profile_picture" in changes:
                if picture is None:
                    await picture_store.remove(conn, user_id)
                else:
                    data, kind = picture
                    # A new token with every picture: its URL changes, and caches may keep it forever.
                    values = {
                        "user_id": user_id,
                        "token": secrets.token_hex(16),
                        "content_type": kind,
                        "data": data,
                        "updated_ms": now_ms(),
                    }
                    await picture_store.put(conn, values)

    async def picture(self, user_id: str, token: str) -> tuple[bytes, str]:
        async with self.db.read() as conn:
            row = await picture_store.get(conn, user_id) if is_id(user_id) else None
        if row is None or not hmac.compare_digest(row.token.encode(), token.encode("utf-8", "replace")):
            raise NotFound("No such profile picture")
        return bytes(row.data), row.content_type

    async def sudo(self, holder: KeyHolder, password: str, meta: AuthMeta = NO_META) -> None:
        user_id = holder.user.id
        await self.limiter.check("login", ip=meta.ip, account=user_id)
        async with self.db.read() as conn:
            user = await user_store.get_user(conn, user_id)
        if user is None or not await self.accounts.passwords.verify(user.password_hash, password):
            await self.limiter.failed("login", ip=meta.ip, account=user_id)
            await self.authlog.record(user_id, "sudo", "fail", meta)
            raise Forbidden("Invalid password", code="AuthFailed")
        await self.limiter.succeeded("login", account=user_id)
        await self.api_keys.open_sudo(holder.key_id)
        await self.authlog.record(user_id, "sudo", "success", meta)

    async def delete_account(self, holder: KeyHolder) -> None:
        if not holder.in_sudo:
            raise SudoRequired("This needs sudo mode: confirm your password with PATCH /api/sudo first")
        await self.accounts.delete_user(holder.user.id)
