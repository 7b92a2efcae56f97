"""/users: search, create, read, update and delete users."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator
from sqlalchemy.engine import Row

from postern.accounts.authlog import AuthMeta
from postern.accounts.service import NewUser
from postern.http.admin.common import (
    SUCCESS,
    Created,
    CursorPage,
    Flag,
    Ip,
    Limit,
    NextCursor,
    PageNumber,
    PreviousCursor,
    RuntimeDep,
    Sess,
    Success,
    UserId,
    cursor_from,
    cursor_page,
    no_nul,
    responses,
    split_list,
)
from postern.mime import header_writing
from postern.storage.pagination import page_from_rows

router = APIRouter(tags=["Users"])


def _false_or_text(value: Any) -> Any:
    # Exactly false or a string: pydantic alone would read 0 as false.
    if value is False or isinstance(value, str):
        return value
    raise ValueError("must be a string, or false for no password")


Password = Annotated[str, Field(min_length=1, max_length=256)]
PasswordOrFalse = Annotated[Literal[False] | Password, BeforeValidator(_false_or_text)]


def _not_bool(value: Any, field: str | None) -> Any:
    # pydantic would read JSON true/false as 1 and 0 (a quota of 0 bytes); only
    # `retention: false` means something (no retention).
    if isinstance(value, bool) and not (value is False and field == "retention"):
        raise ValueError("must be a number")
    return value


def _no_nul(value: Any) -> Any:
    # PostgreSQL text cannot hold NUL: a 400 here rather than a 500 from the database.
    if any(isinstance(text, str) and "\x00" in text for text in (value if isinstance(value, list) else [value])):
        raise ValueError("must not contain NUL characters")
    return value


def _no_control(value: Any) -> Any:
    # A name goes into mail headers: a line break there would be a header injection.
    if isinstance(value, str) and header_writing.has_control(value):
        raise ValueError("must not contain line breaks or control characters")
    return value


def _tags(value: list[str] | str | None) -> list[str]:
    if value is None:
        return []
    items = split_list(value) if isinstance(value, str) else value
    return [t for t in items if t.strip()]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    username: str = Field(min_length=1, max_length=128, description="Letters, numbers, dots, hyphens and underscores, or an email address")
    password: PasswordOrFalse = Field(description="The password, or false for an account without one")
    hashedPassword: Flag = Field(
        default=False,
        description="The password is a hash made elsewhere: bcrypt, MD5/SHA-256/SHA-512 crypt ($1$, $5$, $6$), PBKDF2 or argon2. "
        "It is checked at login and replaced by an argon2id hash then; anything else is refused.",
    )
    address: str | None = Field(default=None, max_length=320, description="Main address; generated from the username when absent")
    emptyAddress: Flag = False
    name: str | None = Field(default=None, max_length=256)
    quota: int | None = Field(default=None, ge=0, le=2**62)
    retention: int | Literal[False] | None = Field(
        default=None, ge=0, le=2**50, description="Default retention in ms for new folders; false for none"
    )
    language: str | None = Field(default=None, max_length=16)
    recipients: int | None = Field(default=None, ge=0, le=10**9)
    forwards: int | None = Field(default=None, ge=0, le=10**9)
    tags: list[Annotated[str, Field(max_length=128)]] | str | None = Field(default=None, max_length=1000)
    pubKey: str | None = Field(default=None, max_length=65536)
    encryptMessages: Flag = False
    encryptForwarded: Flag = False
    premium: Flag = Field(default=False, description="The user API's premium plan (its user_info.is_premium)")
    sess: str | None = Field(default=None, max_length=255)
    ip: str | None = Field(default=None, max_length=64)

    @field_validator("quota", "retention", "recipients", "forwards", mode="before")
    @classmethod
    def _numbers(cls, value: Any, info: ValidationInfo) -> Any:
        return _not_bool(value, info.field_name)

    @field_validator("name", "language", "tags", "pubKey")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return _no_nul(value)

    @field_validator("name")
    @classmethod
    def _header_safe(cls, value: Any) -> Any:
        return _no_control(value)


def _no_null(schema: dict[str, Any]) -> None:
    """Document a field that may be left out but not sent as null (see _not_null)."""
    options = [option for option in schema.pop("anyOf") if option.get("type") != "null"]
    if len(options) == 1:
        schema.update(options[0])
    else:
        schema["anyOf"] = options
    schema.pop("default", None)


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str | None = Field(default=None, max_length=256)
    password: PasswordOrFalse | None = None
    hashedPassword: Flag | None = Field(
        default=None, json_schema_extra=_no_null, description="The password is a hash made elsewhere (as for a new user)"
    )
    existingPassword: str | None = Field(default=None, max_length=256)
    quota: int | None = Field(default=None, ge=0, le=2**62, json_schema_extra=_no_null)
    retention: int | Literal[False] | None = Field(default=None, ge=0, le=2**50)
    language: str | None = Field(default=None, max_length=16)
    recipients: int | None = Field(default=None, ge=0, le=10**9, json_schema_extra=_no_null)
    forwards: int | None = Field(default=None, ge=0, le=10**9, json_schema_extra=_no_null)
    tags: list[Annotated[str, Field(max_length=128)]] | str | None = Field(default=None, max_length=1000)
    pubKey: str | None = Field(default=None, max_length=65536)
    encryptMessages: Flag | None = Field(default=None, json_schema_extra=_no_null)
    encryptForwarded: Flag | None = Field(default=None, json_schema_extra=_no_null)
    disabled: Flag | None = Field(default=None, json_schema_extra=_no_null)
    premium: Flag | None = Field(default=None, json_schema_extra=_no_null, description="The user API's premium plan")
    sess: Sess = None
    ip: Ip = None

    @field_validator("quota", "recipients", "forwards", "encryptMessages", "encryptForwarded", "disabled", "premium")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may not be null")
        return value

    @field_validator("quota", "retention", "recipients", "forwards", mode="before")
    @classmethod
    def _numbers(cls, value: Any, info: ValidationInfo) -> Any:
        return _not_bool(value, info.field_name)

    @field_validator("name", "language", "tags", "pubKey")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return _no_nul(value)

    @field_validator("name")
    @classmethod
    def _header_safe(cls, value: Any) -> Any:
        return _no_control(value)


class Quota(BaseModel):
    allowed: int
    used: int


class Limit24h(BaseModel):
    allowed: int
    used: int
    ttl: int | Literal[False]


class Limits(BaseModel):
    quota: Quota
    recipients: Limit24h
    forwards: Limit24h


class UserListItem(BaseModel):
    id: str
    username: str
    name: str | None
    address: str | None
    tags: list[str]
    encryptMessages: bool
    encryptForwarded: bool
    quota: Quota
    hasPasswordSet: bool
    activated: bool
    disabled: bool


class UserList(CursorPage):
    query: str
    results: list[UserListItem]


class UserDetails(BaseModel):
    success: Literal[True]
    id: str
    username: str
    name: str | None
    address: str | None
    language: str | None
    retention: int | Literal[False]
    enabled2fa: list[str]
    encryptMessages: bool
    encryptForwarded: bool
    pubKey: str
    keyInfo: Literal[False]
    limits: Limits
    tags: list[str]
    hasPasswordSet: bool
    activated: bool
    disabled: bool
    requirePasswordChange: bool
    premium: bool


def _quota(user: Row) -> dict[str, int]:
    return {"allowed": user.quota_allowed, "used": user.storage_used}


def _list_item(user: Row, tags: list[str]) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "name": user.name,
        "address": user.address,
        "tags": tags,
        "encryptMessages": user.encrypt_messages,
        "encryptForwarded": user.encrypt_forwarded,
        "quota": _quota(user),
        "hasPasswordSet": user.password_hash is not None,
        "activated": user.activated,
        "disabled": user.disabled,
    }


@router.get("/users", summary="Search and list users", responses=responses(UserList))
async def list_users(
    runtime: RuntimeDep,
    query: Annotated[str | None, Query(max_length=256, description="Partial match of username or address")] = None,
    tags: Annotated[str | None, Query(max_length=1024, description="Comma separated; any of them")] = None,
    requiredTags: Annotated[str | None, Query(max_length=1024, description="Comma separated; all of them")] = None,
    limit: Limit = 20,
    next: NextCursor = None,
    previous: PreviousCursor = None,
    page: PageNumber = 1,
) -> dict[str, Any]:
    cursor = cursor_from(next, previous, (str,))
    rows, user_tags, total = await runtime.accounts.list_users(
        query=query, any_tags=split_list(tags), all_tags=split_list(requiredTags), limit=limit, cursor=cursor
    )
    result = page_from_rows(rows, limit, cursor, lambda r: (r.username,))
    results = [_list_item(r, user_tags[r.id]) for r in result.rows]
    return cursor_page(result, total=total, page=page, results=results, query=query or "")


@router.post("/users", summary="Add a new user", responses=responses(Created, 409))
async def create_user(body: UserCreate, runtime: RuntimeDep) -> dict[str, Any]:
    user_id = await runtime.accounts.create_user(
        NewUser(
            username=body.username,
            password=body.password or None,
            password_hashed=body.hashedPassword,
            address=body.address,
            empty_address=body.emptyAddress,
            name=body.name,
            quota=body.quota,
            retention_ms=body.retention or None,
            language=body.language,
            recipients=body.recipients,
            forwards=body.forwards,
            tags=_tags(body.tags),
            pub_key=body.pubKey or "",
            encrypt_messages=body.encryptMessages,
            encrypt_forwarded=body.encryptForwarded,
            premium=body.premium,
        )
    )
    return {"success": True, "id": user_id}


@router.get("/users/{user}", summary="Get one user", responses=responses(UserDetails))
async def get_user(user: UserId, runtime: RuntimeDep) -> dict[str, Any]:
    row, tags, enabled_2fa = await runtime.accounts.user_details(user)
    return {
        "success": True,
        "id": row.id,
        "username": row.username,
        "name": row.name,
        "address": row.address,
        "language": row.language,
        "retention": row.retention_ms or False,
        "enabled2fa": enabled_2fa,
        "encryptMessages": row.encrypt_messages,
        "encryptForwarded": row.encrypt_forwarded,
        "pubKey": row.pub_key,
        "keyInfo": False,
        "limits": {
            "quota": _quota(row),
            "recipients": {"allowed": row.recipients_limit, "used": 0, "ttl": False},
            "forwards": {"allowed": row.forwards_limit, "used": 0, "ttl": False},
        },
        "tags": tags,
        "hasPasswordSet": row.password_hash is not None,
        "activated": row.activated,
        "disabled": row.disabled,
        "requirePasswordChange": row.require_password_change,
        "premium": row.premium,
    }


@router.put("/users/{user}", summary="Update user details", responses=responses(Success))
async def update_user(user: UserId, body: UserUpdate, runtime: RuntimeDep) -> dict[str, Any]:
    given = body.model_fields_set
    changes: dict[str, Any] = {}
    simple = {
        "name": "name",
        "language": "language",
        "quota": "quota",
        "recipients": "recipients",
        "forwards": "forwards",
        "encryptMessages": "encrypt_messages",
        "encryptForwarded": "encrypt_forwarded",
        "disabled": "disabled",
        "premium": "premium",
    }
    for field, key in simple.items():
        if field in given:
            changes[key] = getattr(body, field)
    if "pubKey" in given:
        changes["pub_key"] = body.pubKey or ""
    if "retention" in given:
        changes["retention_ms"] = body.retention or None
    if "tags" in given:
        changes["tags"] = _tags(body.tags)
    if "password" in given and body.password is not None:
        changes["password"] = body.password or None
        changes["password_hashed"] = bool(body.hashedPassword)
    meta = AuthMeta(protocol="API", sess=body.sess, ip=body.ip)
    await runtime.accounts.update_user(user, changes, body.existingPassword if "existingPassword" in given else None, meta)
    return SUCCESS


@router.delete("/users/{user}", summary="Delete user", responses=responses(Success))
async def delete_user(user: UserId, runtime: RuntimeDep) -> dict[str, Any]:
    await runtime.accounts.delete_user(user)
    return SUCCESS


class LogoutRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    reason: Annotated[str | None, AfterValidator(no_nul)] = Field(
        default=None, max_length=1024, description="Told to the user's sessions as they close"
    )
    sess: Sess = None
    ip: Ip = None


class ResetRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    sess: Sess = None
    ip: Ip = None


class ResetAnswer(BaseModel):
    success: Literal[True]
    password: str = Field(description="The temporary password, shown only now")


@router.put("/users/{user}/logout", summary="Log out user from all IMAP sessions", responses=responses(Success))
async def logout_user(user: UserId, runtime: RuntimeDep, body: LogoutRequest | None = None) -> dict[str, Any]:
    body = body or LogoutRequest()
    await runtime.accounts.logout(user, body.reason or None, AuthMeta(protocol="API", sess=body.sess, ip=body.ip))
    return SUCCESS


@router.post("/users/{user}/password/reset", summary="Reset user password", responses=responses(ResetAnswer))
async def reset_password(user: UserId, runtime: RuntimeDep, body: ResetRequest | None = None) -> dict[str, Any]:
    """A new temporary password, shown once; the next logins answer
    ``requirePasswordChange: true`` until the password is changed, and 2FA is off."""
    body = body or ResetRequest()
    password = await runtime.accounts.reset_password(user, AuthMeta(protocol="API", sess=body.sess, ip=body.ip))
    return {"success": True, "password": password}
