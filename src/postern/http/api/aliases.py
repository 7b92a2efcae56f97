"""Aliases: their options (signed suffixes), making them (custom or random), listing,
searching, changing, toggling and deleting them, their activities, the stats, and the
CSV export and import. Older paths that the browser extension calls are served too."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Any, Literal, TypeVar

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from postern.aliases import transfer
from postern.aliases.service import MAX_NAME, MAX_NOTE, MAX_QUERY, Activity, AliasView, Options
from postern.aliases.suffixes import MAX_SIGNED_LENGTH, SuffixRejected
from postern.http.api.common import ApiError, ApiRoute, KeyHolderDep, Ok, Text, api_date, api_timestamp, page_id_of, responses, runtime_of

router = APIRouter(tags=["User API: aliases"], route_class=ApiRoute)

T = TypeVar("T")

Note = Annotated[Text, Field(max_length=MAX_NOTE)]
Name = Annotated[Text, Field(max_length=MAX_NAME)]
MailboxId = StrictInt
HostnameQuery = Annotated[str | None, Query(max_length=1024, description="The website's hostname, e.g. www.example.com")]


# Answers ---------------------------------------------------------------------------------


class MailboxRef(BaseModel):
    id: int
    email: str


class ActivityContact(BaseModel):
    email: str
    name: str | None
    reverse_alias: str = Field(description='As displayed: "Name | john at example.com" <ra+…@domain>')


class LatestActivityAnswer(BaseModel):
    action: Literal["forward", "reply", "block", "bounced"] | str
    timestamp: int
    contact: ActivityContact


class AliasAnswer(BaseModel):
    id: int
    email: str
    name: str | None
    enabled: bool
    note: str | None
    pinned: bool
    creation_date: str = Field(description="2020-04-06 17:57:14+00:00")
    creation_timestamp: int
    nb_forward: int
    nb_block: int
    nb_reply: int
    mailbox: MailboxRef = Field(description="Obsolete: the first of mailboxes")
    mailboxes: list[MailboxRef]
    support_pgp: bool
    disable_pgp: bool
    latest_activity: LatestActivityAnswer | None


class CreatedAlias(AliasAnswer):
    alias: str = Field(description="The new alias's address (what password managers read)")


class AliasList(BaseModel):
    aliases: list[AliasAnswer]


class SuffixAnswer(BaseModel):
    suffix: str
    signed_suffix: str = Field(description="Give it back to alias/custom/new within 10 minutes")
    is_custom: bool
    is_premium: bool


class Recommendation(BaseModel):
    alias: str
    hostname: str


class OptionsAnswer(BaseModel):
    can_create: bool
    prefix_suggestion: str
    suffixes: list[SuffixAnswer]
    recommendation: Recommendation | None = Field(default=None, description="Only when an alias was made for this hostname")


class OptionsV4Answer(BaseModel):
    can_create: bool
    prefix_suggestion: str
    suffixes: list[list[str]] = Field(description="[suffix, signed_suffix] pairs")
    recommendation: Recommendation | None = Field(default=None, description="Only when an alias was made for this hostname")


class Enabled(BaseModel):
    enabled: bool


class Deleted(BaseModel):
    deleted: bool


class ActivityAnswer(BaseModel):
    action: str
    from_: str = Field(alias="from")
    to: str
    timestamp: int
    reverse_alias: str
    reverse_alias_address: str


class ActivityList(BaseModel):
    activities: list[ActivityAnswer]


class StatsAnswer(BaseModel):
    nb_alias: int
    nb_forward: int
    nb_reply: int
    nb_block: int


class SkippedRow(BaseModel):
    alias: str
    reason: str


class ImportAnswer(BaseModel):
    imported: int
    skipped: list[SkippedRow]


def alias_answer(view: AliasView) -> dict[str, Any]:
    boxes = [{"id": i, "email": e} for i, e in view.mailboxes]
    latest = view.latest_activity
    return {
        "id": view.id,
        "email": view.email,
        "name": view.name,
        "enabled": view.enabled,
        "note": view.note,
        "pinned": view.pinned,
        "creation_date": api_date(view.created_ms),
        "creation_timestamp": api_timestamp(view.created_ms),
        "nb_forward": view.nb_forward,
        "nb_block": view.nb_block,
        "nb_reply": view.nb_reply,
        "mailbox": boxes[0],
        "mailboxes": boxes,
        "support_pgp": False,
        "disable_pgp": view.disable_pgp,
        "latest_activity": None
        if latest is None
        else {
            "action": latest.action,
            "timestamp": api_timestamp(latest.ms),
            "contact": {"email": latest.contact_email, "name": latest.contact_name, "reverse_alias": latest.reverse_alias},
        },
    }


def created_answer(view: AliasView) -> dict[str, Any]:
    return {**alias_answer(view), "alias": view.email}


def _activity(item: Activity) -> dict[str, Any]:
    return {
        "action": item.action,
        "from": item.from_,
        "to": item.to,
        "timestamp": api_timestamp(item.ms),
        "reverse_alias": item.reverse_alias,
        "reverse_alias_address": item.reverse_alias_address,
    }


async def _suffix_checked(work: Awaitable[T]) -> T:
    """412 for an expired or tampered signed suffix (the clients fetch new options)."""
    try:
        return await work
    except SuffixRejected as error:
        raise ApiError(412, error.message) from None


# Options ---------------------------------------------------------------------------------


def _recommendation(options: Options) -> dict[str, str] | None:
    if options.recommendation is None:
        return None
    return {"alias": options.recommendation[0], "hostname": options.recommendation[1]}


def _without_none_recommendation(answer: dict[str, Any]) -> dict[str, Any]:
    if answer.get("recommendation") is None:
        answer.pop("recommendation", None)
    return answer


@router.get(
    "/v5/alias/options",
    summary="Suffixes and a prefix suggestion for a new alias",
    response_model=OptionsAnswer,
    response_model_exclude_none=True,
    responses=responses(401),
)
async def options_v5(holder: KeyHolderDep, request: Request, hostname: HostnameQuery = None) -> dict[str, Any]:
    """One suffix per domain the user may use (premium ones are offered with
    ``is_premium``); each signed suffix is valid for 10 minutes, for this user."""
    options = await runtime_of(request).aliases.options(holder.user, hostname)
    return _without_none_recommendation(
        {
            "can_create": options.can_create,
            "prefix_suggestion": options.prefix_suggestion,
            "suffixes": [
                {"suffix": s.suffix, "signed_suffix": s.signed_suffix, "is_custom": s.is_custom, "is_premium": s.is_premium}
                for s in options.suffixes
            ],
            "recommendation": _recommendation(options),
        }
    )


@router.get(
    "/v4/alias/options",
    summary="Alias options, the browser extension's form ([suffix, signed_suffix] pairs)",
    response_model=OptionsV4Answer,
    response_model_exclude_none=True,
    responses=responses(401),
)
async def options_v4(holder: KeyHolderDep, request: Request, hostname: HostnameQuery = None) -> dict[str, Any]:
    """Only the domains the user may use now: pairs cannot flag a premium offer."""
    options = await runtime_of(request).aliases.options(holder.user, hostname, premium_offers=False)
    return _without_none_recommendation(
        {
            "can_create": options.can_create,
            "prefix_suggestion": options.prefix_suggestion,
            "suffixes": [[s.suffix, s.signed_suffix] for s in options.suffixes],
            "recommendation": _recommendation(options),
        }
    )


# Creation --------------------------------------------------------------------------------


class CustomAliasBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    alias_prefix: Annotated[Text, Field(min_length=1, max_length=100)]
    signed_suffix: Annotated[Text, Field(min_length=1, max_length=MAX_SIGNED_LENGTH)]
    mailbox_ids: Annotated[list[MailboxId], Field(min_length=1, max_length=50)]
    note: Note | None = None
    name: Name | None = None


class CustomAliasV2Body(BaseModel):
    model_config = ConfigDict(extra="ignore")

    alias_prefix: Annotated[Text, Field(min_length=1, max_length=100)]
    signed_suffix: Annotated[Text, Field(min_length=1, max_length=MAX_SIGNED_LENGTH)]
    mailbox_ids: Annotated[list[MailboxId], Field(min_length=1, max_length=50)] | None = None
    mailbox_id: MailboxId | None = Field(default=None, description="Older clients: one mailbox (default: the default mailbox)")
    note: Note | None = None
    name: Name | None = None


class RandomAliasBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    note: Note | None = None


_CREATED = responses(401, 403, 409, _412="The signed suffix expired or was tampered with: fetch the options again")


@router.post(
    "/v3/alias/custom/new",
    summary="Create an alias: a prefix and a signed suffix",
    status_code=201,
    response_model=CreatedAlias,
    responses=_CREATED,
)
async def custom_new_v3(body: CustomAliasBody, holder: KeyHolderDep, request: Request, hostname: HostnameQuery = None) -> dict[str, Any]:
    """409 when the address exists or was ever deleted; 400 beyond the free plan's
    limit or for an unverified or unknown mailbox."""
    view = await _suffix_checked(
        runtime_of(request).aliases.create_custom(
            holder.user,
            prefix=body.alias_prefix,
            signed_suffix=body.signed_suffix,
            mailbox_ids=body.mailbox_ids,
            note=body.note,
            name=body.name,
            hostname=hostname,
        )
    )
    return created_answer(view)


@router.post(
    "/v2/alias/custom/new",
    summary="Create an alias (older clients: mailbox_id or mailbox_ids)",
    status_code=201,
    response_model=CreatedAlias,
    responses=_CREATED,
)
async def custom_new_v2(body: CustomAliasV2Body, holder: KeyHolderDep, request: Request, hostname: HostnameQuery = None) -> dict[str, Any]:
    boxes = body.mailbox_ids if body.mailbox_ids is not None else ([body.mailbox_id] if body.mailbox_id is not None else None)
    view = await _suffix_checked(
        runtime_of(request).aliases.create_custom(
            holder.user,
            prefix=body.alias_prefix,
            signed_suffix=body.signed_suffix,
            mailbox_ids=boxes,
            note=body.note,
            name=body.name,
            hostname=hostname,
        )
    )
    return created_answer(view)


@router.post(
    "/alias/random/new",
    summary="Create a random alias",
    status_code=201,
    response_model=CreatedAlias,
    responses=responses(401, 409),
)
async def random_new(
    holder: KeyHolderDep,
    request: Request,
    body: RandomAliasBody | None = None,
    hostname: HostnameQuery = None,
    mode: Annotated[Literal["word", "uuid"] | None, Query(description="Default: the user's alias_generator setting")] = None,
) -> dict[str, Any]:
    """``two_words123@domain`` (word) or a uuid4 (uuid), on the user's default domain
    for random aliases; the body may be empty."""
    view = await runtime_of(request).aliases.create_random(holder.user, hostname=hostname, mode=mode, note=body.note if body else None)
    return created_answer(view)


# Listing ---------------------------------------------------------------------------------


class SearchBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    query: Annotated[Text, Field(max_length=MAX_QUERY)] | None = None


def _flag(value: str | None) -> bool:
    """``?pinned``, ``?pinned=true``, ``?pinned=1`` set a flag; absent, ``false`` or ``0`` do not."""
    return value is not None and value.strip().lower() not in ("false", "0", "no", "off")


async def _listing(
    request: Request, holder: Any, page_id: str | None, pinned: str | None, enabled: str | None, disabled: str | None, query: str | None
) -> dict[str, Any]:
    page = page_id_of(page_id)
    want_enabled, want_disabled = _flag(enabled), _flag(disabled)
    if want_enabled and want_disabled:
        raise ApiError(400, "enabled and disabled cannot be asked for together")
    state = True if want_enabled else (False if want_disabled else None)
    views = await runtime_of(request).aliases.page(holder.user.id, page, pinned=_flag(pinned), enabled=state, query=query)
    return {"aliases": [alias_answer(v) for v in views]}


FlagQuery = Annotated[str | None, Query(max_length=16)]
PageQuery = Annotated[str | None, Query(max_length=16, description="The page, from 0 (20 aliases a page); required")]


@router.get("/v2/aliases", summary="The user's aliases, 20 a page", response_model=AliasList, responses=responses(401))
async def list_aliases(
    holder: KeyHolderDep,
    request: Request,
    page_id: PageQuery = None,
    pinned: FlagQuery = None,
    enabled: FlagQuery = None,
    disabled: FlagQuery = None,
) -> dict[str, Any]:
    """Pinned first, then by latest activity. ``pinned``, ``enabled`` or ``disabled``
    (present in the query) keep only those."""
    return await _listing(request, holder, page_id, pinned, enabled, disabled, None)


@router.post("/v2/aliases", summary="Search the user's aliases (email, note, name)", response_model=AliasList, responses=responses(401))
async def search_aliases(
    holder: KeyHolderDep,
    request: Request,
    body: SearchBody | None = None,
    page_id: PageQuery = None,
    pinned: FlagQuery = None,
    enabled: FlagQuery = None,
    disabled: FlagQuery = None,
) -> dict[str, Any]:
    """The listing, with ``{"query": …}`` in the body: aliases whose address, note or
    name contains it (case-insensitive)."""
    return await _listing(request, holder, page_id, pinned, enabled, disabled, body.query if body else None)


# One alias -------------------------------------------------------------------------------


class AliasPatch(BaseModel):
    model_config = ConfigDict(extra="ignore")

    note: Note | None = None
    name: Name | None = None
    mailbox_id: MailboxId | None = None
    mailbox_ids: Annotated[list[MailboxId], Field(min_length=1, max_length=50)] | None = None
    disable_pgp: StrictBool | None = None
    pinned: StrictBool | None = None


@router.get("/aliases/{alias_id}", summary="One alias", response_model=AliasAnswer, responses=responses(401, 404))
async def get_alias(alias_id: int, holder: KeyHolderDep, request: Request) -> dict[str, Any]:
    return alias_answer(await runtime_of(request).aliases.get(holder.user.id, alias_id))


@router.delete(
    "/aliases/{alias_id}",
    summary="Delete an alias (its address can never be made again)",
    response_model=Deleted,
    responses=responses(401, 404),
)
async def delete_alias(alias_id: int, holder: KeyHolderDep, request: Request) -> dict[str, bool]:
    await runtime_of(request).aliases.delete(holder.user.id, alias_id)
    return {"deleted": True}


@router.post("/aliases/{alias_id}/toggle", summary="Enable or disable an alias", response_model=Enabled, responses=responses(401, 404))
async def toggle_alias(alias_id: int, holder: KeyHolderDep, request: Request) -> dict[str, bool]:
    return {"enabled": await runtime_of(request).aliases.toggle(holder.user.id, alias_id)}


async def _patch(alias_id: int, body: AliasPatch, holder: Any, request: Request) -> dict[str, bool]:
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    await runtime_of(request).aliases.update(holder.user.id, alias_id, changes)
    return {"ok": True}


@router.patch("/aliases/{alias_id}", summary="Change an alias", response_model=Ok, responses=responses(401, 404))
async def patch_alias(alias_id: int, body: AliasPatch, holder: KeyHolderDep, request: Request) -> dict[str, bool]:
    """Any of note, name (null clears them), mailbox_id or mailbox_ids (verified
    mailboxes of the user), disable_pgp, pinned."""
    return await _patch(alias_id, body, holder, request)


@router.put("/aliases/{alias_id}", summary="Change an alias (older clients; as PATCH)", response_model=Ok, responses=responses(401, 404))
async def put_alias(alias_id: int, body: AliasPatch, holder: KeyHolderDep, request: Request) -> dict[str, bool]:
    return await _patch(alias_id, body, holder, request)


@router.get(
    "/aliases/{alias_id}/activities", summary="An alias's activities, 20 a page", response_model=ActivityList, responses=responses(401, 404)
)
async def alias_activities(alias_id: int, holder: KeyHolderDep, request: Request, page_id: PageQuery = None) -> dict[str, Any]:
    """Newest first. A forward (or block, bounce) goes from the contact to the alias;
    a reply from the alias to the contact."""
    page = page_id_of(page_id)
    items = await runtime_of(request).aliases.activities(holder.user.id, alias_id, page)
    return {"activities": [_activity(i) for i in items]}


# Stats, export and import ----------------------------------------------------------------


@router.get("/stats", summary="Counts over the user's aliases", response_model=StatsAnswer, responses=responses(401))
async def stats(holder: KeyHolderDep, request: Request) -> dict[str, int]:
    found = await runtime_of(request).aliases.stats(holder.user.id)
    return {"nb_alias": found.nb_alias, "nb_forward": found.nb_forward, "nb_reply": found.nb_reply, "nb_block": found.nb_block}


@router.get(
    "/export/aliases",
    summary="The user's aliases as CSV (alias,note,enabled,mailboxes)",
    response_class=Response,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "The CSV"}, **responses(401)},
)
async def export_aliases(holder: KeyHolderDep, request: Request) -> Response:
    text = await transfer.export_csv(runtime_of(request).aliases, holder.user.id)
    return Response(
        text.encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="aliases.csv"'},
    )


@router.post(
    "/import/aliases",
    summary="Import aliases from CSV (alias,note,enabled,mailboxes)",
    response_model=ImportAnswer,
    responses=responses(401, 413),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "object", "properties": {"csv": {"type": "string"}}, "required": ["csv"]}},
            },
        }
    },
)
async def import_aliases(holder: KeyHolderDep, request: Request) -> dict[str, Any]:
    """The body is the CSV (``text/csv``) or ``{"csv": "…"}``, as the export writes it.
    Each row becomes an alias when its domain is one the user may use and its address
    is free; each row is made whole or skipped (with its reason). Mailboxes are
    matched by email among the user's verified mailboxes, else the default one."""
    raw = await _bounded_body(request)
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind == "application/json" or (not kind and raw.lstrip()[:1] == b"{"):
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ApiError(400, "Request body is not valid JSON") from None
        if not isinstance(document, dict) or not isinstance(document.get("csv"), str):
            raise ApiError(400, "csv is required: the CSV as a string")
        text = document["csv"]
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "The CSV must be UTF-8 text") from None
    if not text.strip():
        raise ApiError(400, "Request body cannot be empty")
    result = await transfer.import_csv(runtime_of(request).aliases, holder.user, text)
    return {"imported": result.imported, "skipped": [{"alias": a, "reason": r} for a, r in result.skipped]}


async def _bounded_body(request: Request) -> bytes:
    limit = transfer.MAX_CSV_BYTES * 2
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"The CSV must be at most {transfer.MAX_CSV_BYTES // (1024 * 1024)} MB")
        chunks.append(chunk)
    return b"".join(chunks)
