"""/users/{user}/mailboxes/{mailbox}/messages: list, read, upload, update, delete."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy.engine import Row

from postern import mime
from postern.errors import InvalidInput, NotFound, TooLarge
from postern.http.admin.common import (
    SUCCESS,
    CursorPage,
    Flag,
    Limit,
    MailboxId,
    MessageUid,
    NextCursor,
    PageNumber,
    PreviousCursor,
    RuntimeDep,
    Success,
    UserId,
    cursor_from,
    cursor_page,
    iso,
    responses,
)
from postern.http.content_safety import attachment_disposition
from postern.http.errors import ErrorResponse
from postern.mailstore.service import UNSET
from postern.mailstore.uidset import parse_uid_set
from postern.storage.pagination import page_from_rows

router = APIRouter(tags=["Messages"])

# Parsing a large message for its HTML and text is CPU work; do it off the loop.
INLINE_CONTENT_LIMIT = 256 * 1024


class AddressJson(BaseModel):
    name: str
    address: str


class MessageListItem(BaseModel):
    id: int
    mailbox: str
    thread: str
    from_: AddressJson = Field(alias="from")
    subject: str
    date: str
    idate: str
    intro: str
    attachments: bool
    size: int
    messageId: str | None
    seen: bool
    deleted: bool
    flagged: bool
    draft: bool
    answered: bool


class MessageList(CursorPage):
    specialUse: str | None
    results: list[MessageListItem]


class AttachmentJson(BaseModel):
    id: str
    filename: str | None
    contentType: str
    size: int
    disposition: str
    cid: str | None
    part: str


class MessageDetails(BaseModel):
    success: Literal[True]
    id: int
    mailbox: str
    user: str
    thread: str
    from_: AddressJson = Field(alias="from")
    sender: AddressJson | None
    to: list[AddressJson]
    cc: list[AddressJson]
    bcc: list[AddressJson]
    replyTo: list[AddressJson]
    subject: str
    messageId: str | None
    inReplyTo: list[str]
    references: list[str]
    date: str
    idate: str
    size: int
    intro: str
    seen: bool
    deleted: bool
    flagged: bool
    draft: bool
    answered: bool
    keywords: list[str]
    expires: str | Literal[False]
    text: str
    html: list[str]
    attachments: list[AttachmentJson]


class UploadedMessage(BaseModel):
    id: int
    mailbox: str
    size: int


class UploadResponse(BaseModel):
    success: Literal[True]
    message: UploadedMessage


class MessageUpload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    raw: str = Field(min_length=1, description="The RFC 822 message")
    unseen: Flag = False
    flagged: Flag = False
    draft: Flag = False
    date: datetime | None = Field(default=None, description="Internal date; now when absent")

    @field_validator("date", mode="before")
    @classmethod
    def _date(cls, value: Any) -> Any:
        return _no_timestamp(value)


def _no_timestamp(value: Any) -> Any:
    """pydantic would read a number, or a string of digits, as seconds since 1970 (and
    0 as false): an `expires` of 0.0 would delete the message at the next sweep. The
    document says a date and time; only that is taken."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError("must be a date and time such as 2024-05-01T12:00:00Z")
    if isinstance(value, str) and value.strip().lstrip("+-").replace(".", "", 1).isdigit():
        raise ValueError("must be a date and time such as 2024-05-01T12:00:00Z")
    return value


class MessageUpdate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    moveTo: Annotated[str, Field(pattern=r"^[0-9a-f]{24}$")] | None = None
    seen: Flag | None = None
    flagged: Flag | None = None
    draft: Flag | None = None
    deleted: Flag | None = None
    expires: datetime | Literal[False] | None = Field(default=None, description="When to delete the message, or false to keep it")

    @field_validator("expires", mode="before")
    @classmethod
    def _expires(cls, value: Any) -> Any:
        return _no_timestamp(value)


class UpdateResponse(BaseModel):
    success: Literal[True]
    updated: int
    mailbox: str | None = None
    id: list[tuple[int, int]] | None = None


def _from(row: Row) -> dict[str, str]:
    return {"name": row.from_name, "address": row.from_address}


def _list_item(row: Any) -> dict[str, Any]:
    """A listed message from a row of storage.messages.LIST_FIELDS, by position: the
    FastAPI route and the fast listing below share it (booleans may be 0 and 1)."""
    (
        uid,
        folder_id,
        thread_id,
        from_name,
        from_address,
        subject,
        date_ms,
        internal_ms,
        intro,
        attachments,
        size,
        message_id,
        seen,
        deleted,
        flagged,
        draft,
        answered,
    ) = row
    return {
        "id": uid,
        "mailbox": folder_id,
        "thread": thread_id,
        "from": {"name": from_name, "address": from_address},
        "subject": subject,
        "date": iso(date_ms if date_ms is not None else internal_ms),
        "idate": iso(internal_ms),
        "intro": intro,
        "attachments": bool(attachments),
        "size": size,
        "messageId": message_id,
        "seen": bool(seen),
        "deleted": bool(deleted),
        "flagged": bool(flagged),
        "draft": bool(draft),
        "answered": bool(answered),
    }


@router.get(
    "/users/{user}/mailboxes/{mailbox}/messages",
    summary="List messages in a mailbox",
    responses=responses(MessageList),
)
async def list_messages(
    user: UserId,
    mailbox: MailboxId,
    runtime: RuntimeDep,
    order: Annotated[Literal["asc", "desc"], Query(description="By id (UID); newest first by default")] = "desc",
    limit: Limit = 20,
    next: NextCursor = None,
    previous: PreviousCursor = None,
    page: PageNumber = 1,
) -> Response:
    cursor = cursor_from(next, previous, (int,))
    folder, rows = await runtime.mailstore.list_messages(user, mailbox, descending=order == "desc", limit=limit, cursor=cursor)
    result = page_from_rows(rows, limit, cursor, lambda r: (r.uid,))
    body = cursor_page(
        result, total=folder.message_count, page=page, results=[_list_item(r) for r in result.rows], specialUse=folder.special_use
    )
    return Response(orjson.dumps(body), media_type="application/json")


UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "message/rfc822": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": MessageUpload.model_json_schema()},
        },
    }
}


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"Message is larger than the allowed {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"Message is larger than the allowed {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


# Instants the API can write back as ISO 8601 (years 1 to 9999 in UTC).
MIN_EPOCH_MS = int(datetime(1, 1, 1, tzinfo=UTC).timestamp() * 1000)
MAX_EPOCH_MS = int(datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC).timestamp() * 1000)


def _epoch_ms(when: datetime, field: str) -> int:
    """A date from the request as epoch milliseconds (UTC when it has no zone)."""
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    ms = int(when.timestamp() * 1000)
    if not MIN_EPOCH_MS <= ms <= MAX_EPOCH_MS:
        raise InvalidInput(f"{field} must be between the years 1 and 9999 in UTC", field=field)
    return ms


def _upload_from_json(body: bytes) -> MessageUpload:
    try:
        return MessageUpload.model_validate_json(body)
    except ValidationError as error:
        first = error.errors()[0] if error.errors() else {"loc": ("body",), "msg": "is invalid"}
        field = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise InvalidInput(f"{field}: {first.get('msg', 'is invalid')}", field=field) from None


@router.post(
    "/users/{user}/mailboxes/{mailbox}/messages",
    summary="Upload a message",
    description="Send the raw message as the body with Content-Type message/rfc822 (flags in the query), "
    "or JSON with the message in `raw`.",
    responses=responses(UploadResponse, 409, 413, 415),
    openapi_extra=UPLOAD_BODY,
)
async def upload_message(
    user: UserId,
    mailbox: MailboxId,
    request: Request,
    runtime: RuntimeDep,
    unseen: Annotated[bool, Query()] = False,
    flagged: Annotated[bool, Query()] = False,
    draft: Annotated[bool, Query()] = False,
) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    # JSON carries the message as text; allow for its escaping overhead.
    body = await _read_limited(request, runtime.settings.max_message_size * (2 if content_type == "application/json" else 1) + 65536)
    internal_ms = None
    if content_type == "application/json":
        upload = _upload_from_json(body)
        raw = upload.raw.encode("utf-8", errors="surrogateescape")
        unseen, flagged, draft = upload.unseen, upload.flagged, upload.draft
        if upload.date is not None:
            internal_ms = _epoch_ms(upload.date, "date")
    elif content_type in ("message/rfc822", "application/octet-stream", "text/plain"):
        raw = body
    else:
        return _unsupported()  # type: ignore[return-value]
    if not raw.strip():
        raise InvalidInput("The message is empty", field="raw")
    flags = [f for f, on in (("\\Seen", not unseen), ("\\Flagged", flagged), ("\\Draft", draft)) if on]
    result = await runtime.mailstore.append(user, mailbox, raw, flags, internal_ms)
    return {"success": True, "message": {"id": result.uid, "mailbox": result.folder_id, "size": result.size}}


def _unsupported() -> Response:
    body = ErrorResponse(error="Send the message as message/rfc822 or application/json", code="UnsupportedMediaType")
    return Response(body.model_dump_json(exclude_none=True), status_code=415, media_type="application/json")


@router.get(
    "/users/{user}/mailboxes/{mailbox}/messages/{message}",
    summary="Get message details",
    responses=responses(MessageDetails),
)
async def get_message(user: UserId, mailbox: MailboxId, message: MessageUid, runtime: RuntimeDep) -> Response:
    row = await runtime.mailstore.get_message(user, mailbox, message)
    raw = await runtime.mailstore.message_bytes(row)
    if len(raw) > INLINE_CONTENT_LIMIT:
        content = await asyncio.to_thread(mime.extract_content, raw)
    else:
        content = mime.extract_content(raw)
    summary = orjson.loads(row.summary)
    empty = {"name": "", "address": ""}
    body = {
        "success": True,
        "id": row.uid,
        "mailbox": row.folder_id,
        "user": row.user_id,
        "thread": row.thread_id,
        "from": _from(row),
        "sender": summary.get("sender"),
        "to": [a or empty for a in summary.get("to", [])],
        "cc": [a or empty for a in summary.get("cc", [])],
        "bcc": [a or empty for a in summary.get("bcc", [])],
        "replyTo": [a or empty for a in summary.get("replyTo", [])],
        "subject": row.subject,
        "messageId": row.message_id,
        "inReplyTo": summary.get("inReplyTo", []),
        "references": summary.get("references", []),
        "date": iso(row.date_ms if row.date_ms is not None else row.internal_ms),
        "idate": iso(row.internal_ms),
        "size": row.size,
        "intro": row.intro,
        "seen": row.seen,
        "deleted": row.deleted,
        "flagged": row.flagged,
        "draft": row.draft,
        "answered": row.answered,
        "keywords": orjson.loads(row.keywords),
        "expires": iso(row.expires_ms) if row.expires_ms else False,
        "text": content.text,
        "html": list(content.html),
        "attachments": [{k: v for k, v in a.items()} for a in summary.get("attachments", [])],
    }
    return Response(orjson.dumps(body), media_type="application/json")


@router.put(
    "/users/{user}/mailboxes/{mailbox}/messages/{message}",
    summary="Update messages",
    description="`message` is one id, a comma separated list (444,445) or a range (444:446, 1:*).",
    responses=responses(UpdateResponse),
)
async def update_messages(
    user: UserId,
    mailbox: MailboxId,
    message: Annotated[str, Path(max_length=8192, pattern=r"^[0-9]+(:([0-9]+|\*))?(,[0-9]+(:([0-9]+|\*))?)*$")],
    body: MessageUpdate,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    uids = parse_uid_set(message)
    given = body.model_fields_set
    flags: dict[str, Any] = {
        name: getattr(body, name) for name in ("seen", "flagged", "draft", "deleted") if name in given and getattr(body, name) is not None
    }
    expires: Any = UNSET
    if "expires" in given and body.expires is not None:
        if body.expires is False:
            expires = None
        else:
            expires = _epoch_ms(body.expires, "expires")
    updated, moved = await runtime.mailstore.update_messages(user, mailbox, uids, flags=flags, expires_ms=expires, move_to=body.moveTo)
    if moved is not None:
        return {"success": True, "updated": updated, "mailbox": body.moveTo, "id": moved}
    return {"success": True, "updated": updated}


@router.delete(
    "/users/{user}/mailboxes/{mailbox}/messages/{message}",
    summary="Delete a message",
    responses=responses(Success),
)
async def delete_message(user: UserId, mailbox: MailboxId, message: MessageUid, runtime: RuntimeDep) -> dict[str, Any]:
    await runtime.mailstore.delete_messages(user, mailbox, [message])
    return SUCCESS


async def _prefetched(stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Start the stream before answering, so that a missing blob is a clean error
    rather than a response cut off after its headers."""
    first = await anext(stream, b"")

    async def rest() -> AsyncIterator[bytes]:
        yield first
        async for chunk in stream:
            yield chunk

    return rest()


@router.get(
    "/users/{user}/mailboxes/{mailbox}/messages/{message}/message.eml",
    summary="Get message source",
    response_class=StreamingResponse,
    responses={
        **responses(Success),
        200: {"content": {"message/rfc822": {"schema": {"type": "string", "format": "binary"}}}, "description": "The raw message"},
    },
)
async def message_source(user: UserId, mailbox: MailboxId, message: MessageUid, runtime: RuntimeDep) -> StreamingResponse:
    row = await runtime.mailstore.get_message(user, mailbox, message)
    stream = await _prefetched(runtime.mailstore.message_stream(row))
    return StreamingResponse(stream, media_type="message/rfc822", headers={"Content-Length": str(row.size)})


@router.get(
    "/users/{user}/mailboxes/{mailbox}/messages/{message}/attachments/{attachment}",
    summary="Get a message attachment",
    responses={
        **responses(Success),
        200: {
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
            "description": "The decoded attachment, with its own content type; served inline only if it is a PNG, JPEG, GIF or WebP image, for download otherwise",
        },
    },
)
async def get_attachment(
    user: UserId,
    mailbox: MailboxId,
    message: MessageUid,
    attachment: Annotated[str, Path(pattern=r"^ATT[0-9]{5}$", description="Attachment id, e.g. ATT00001")],
    runtime: RuntimeDep,
) -> Response:
    row = await runtime.mailstore.get_message(user, mailbox, message)
    raw = await runtime.mailstore.message_bytes(row)
    found = await asyncio.to_thread(mime.get_attachment, raw, attachment)
    if found is None:
        raise NotFound("This attachment does not exist", code="AttachmentNotFound")
    info, content = found
    headers = {"Content-Disposition": attachment_disposition(info.content_type, info.disposition, info.filename)}
    return Response(content, media_type=info.content_type or "application/octet-stream", headers=headers)


class MessageEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    action: str
    time: str


class MessageEvents(BaseModel):
    success: Literal[True]
    id: str
    events: list[MessageEvent]


@router.get(
    "/users/{user}/mailboxes/{mailbox}/messages/{message}/events",
    summary="Get message events",
    description="The message's timeline: how it was stored and, for mail sent, each recipient's delivery attempts.",
    responses=responses(MessageEvents),
)
async def message_events(user: UserId, mailbox: MailboxId, message: MessageUid, runtime: RuntimeDep) -> Response:
    row, events = await runtime.mailstore.message_events(user, mailbox, message)
    body = {
        "success": True,
        "id": row.mid,
        "events": [{**orjson.loads(e.data), "id": e.id, "action": e.action, "time": iso(e.created_ms)} for e in events],
    }
    return Response(orjson.dumps(body), media_type="application/json")


class FastMessageListing:
    """The folder listing without FastAPI's per-request machinery.

    Listing a folder is the request clients repeat most. This layer answers it when
    the request is plainly valid and the folder is the user's, with the same body the
    route above gives; anything else (a bad parameter, a missing or wrong token, an
    unknown folder) goes on to that route, which owns every error answer.
    """

    PATH = re.compile(r"^/users/([0-9a-f]{24})/mailboxes/([0-9a-f]{24})/messages$")

    def __init__(self, app: Any, runtime: Any):
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            match = self.PATH.match(scope["path"])
            if match:
                body = await self._answer(scope, match.group(1), match.group(2))
                if body is not None:
                    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                    await send({"type": "http.response.start", "status": 200, "headers": headers})
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Any, user: str, mailbox: str) -> bytes | None:
        params: dict[str, str] = {}
        for name, value in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True):
            if name in params or "\x00" in value:
                return None
            params[name] = value
        if not await self._authorised(scope, params.get("accessToken")):
            return None
        order = params.get("order", "desc")
        limit_text, page_text = params.get("limit", "20"), params.get("page", "1")
        next_cursor, previous_cursor = params.get("next"), params.get("previous")
        if (
            order not in ("asc", "desc")
            or not (limit_text.isascii() and limit_text.isdigit() and 1 <= int(limit_text) <= 250)
            or not (page_text.isascii() and page_text.isdigit() and 1 <= int(page_text) <= 1_000_000)
            or any(c is not None and (not c or len(c) > 512) for c in (next_cursor, previous_cursor))
        ):
            return None
        limit, page = int(limit_text), int(page_text)
        try:
            cursor = cursor_from(next_cursor, previous_cursor, (int,))
        except InvalidInput:
            return None
        found = await self.runtime.mailstore.message_page(user, mailbox, descending=order == "desc", limit=limit, cursor=cursor)
        if found is None:
            return None
        head, rows = found
        result = page_from_rows(rows, limit, cursor, lambda r: (r[0],))
        return orjson.dumps(
            cursor_page(
                result, total=head.message_count, page=page, results=[_list_item(r) for r in result.rows], specialUse=head.special_use
            )
        )

    async def _authorised(self, scope: Any, query_token: str | None) -> bool:
        token_check = self.runtime.admin_token
        if not token_check.required:
            return True
        token = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-access-token"), None) or query_token
        return bool(token) and await token_check.check(token)
