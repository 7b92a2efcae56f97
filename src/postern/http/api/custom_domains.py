"""/api/custom_domains: the user's own domains for aliases (SimpleLogin's custom domain
endpoints), plus what SimpleLogin's API lacks and its users ask for: adding a domain,
the DNS records to publish, checking them and deleting a domain."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from postern.aliases.dns_check import CheckResult, DnsRecord
from postern.aliases.domains import MAX_NAME, NOT_FOUND, CheckReport, CustomDomain, DomainChanges
from postern.http.api.common import ApiError, ApiRoute, KeyHolderDep, Text, api_date, api_timestamp, meta_of, responses, runtime_of

router = APIRouter(tags=["User API: custom domains"], route_class=ApiRoute)

DomainId = Annotated[str, Path(description="The custom domain's id (an integer)")]


class MailboxRef(BaseModel):
    id: int
    email: str


class CustomDomainAnswer(BaseModel):
    id: int
    domain_name: str = Field(description="ASCII (punycode) form")
    is_verified: bool = Field(description="Ownership proven (the TXT record): aliases may be made on it")
    nb_alias: int
    creation_date: str = Field(examples=["2021-03-10 21:36:08+00:00"])
    creation_timestamp: int
    catch_all: bool = Field(description="Mail to any address of the domain creates the alias on the fly")
    name: str | None = Field(description="Display name of the domain's aliases")
    random_prefix_generation: bool
    mailboxes: list[MailboxRef] = Field(description="Where new aliases of the domain forward to")


class DnsRecordAnswer(BaseModel):
    purpose: str = Field(description="ownership, mx, spf, dkim or dmarc")
    type: str = Field(description="TXT or MX")
    name: str
    value: str
    priority: int | None = Field(description="MX records only")


class CreatedAnswer(CustomDomainAnswer):
    dns_records: list[DnsRecordAnswer] = Field(description="The records to publish, then POST .../check")


class CheckAnswer(BaseModel):
    ok: bool
    expected: str = Field(description="The record we look for")
    found: list[str] = Field(description="What DNS answered (the relevant records)")
    error: str | None = Field(description="Why the check failed, if it did")
    temporary: bool = Field(description="The failure was a DNS failure that may go away: try again later")


class Checks(BaseModel):
    ownership: CheckAnswer
    mx: CheckAnswer
    spf: CheckAnswer
    dkim: CheckAnswer
    dmarc: CheckAnswer


class ReportAnswer(BaseModel):
    is_verified: bool
    checked_timestamp: int
    checks: Checks
    notes: list[str]


class CheckedAnswer(ReportAnswer):
    custom_domain: CustomDomainAnswer


class DnsAnswer(BaseModel):
    domain_name: str
    is_verified: bool
    dns_records: list[DnsRecordAnswer]
    last_check: ReportAnswer | None = Field(description="null until the first check")


class TrashItem(BaseModel):
    alias: str
    deletion_timestamp: int


class TrashAnswer(BaseModel):
    aliases: list[TrashItem]


class Deleted(BaseModel):
    deleted: bool


class NewDomainBody(BaseModel):
    domain: Annotated[Text, Field(min_length=1, max_length=300, examples=["example.org"])]


class DomainPatch(BaseModel):
    model_config = ConfigDict(extra="ignore")

    catch_all: StrictBool = Field(default=False, description="Omitted: unchanged")
    random_prefix_generation: StrictBool = Field(default=False, description="Omitted: unchanged")
    name: Text | None = Field(default=None, description=f"At most {MAX_NAME} characters, no line breaks; null or empty removes it")
    mailbox_ids: list[StrictInt] = Field(default=[], description="Non-empty: the user's verified mailboxes; omitted: unchanged")


def _domain_id(value: str) -> int:
    # Anything but a plain number names no domain: 404, like an unknown id.
    if not value.isascii() or not value.isdigit() or len(value) > 10:
        raise ApiError(404, NOT_FOUND)
    return int(value)


def domain_answer(domain: CustomDomain) -> dict[str, Any]:
    return {
        "id": domain.id,
        "domain_name": domain.domain,
        "is_verified": domain.verified,
        "nb_alias": domain.nb_alias,
        "creation_date": api_date(domain.created_ms),
        "creation_timestamp": api_timestamp(domain.created_ms),
        "catch_all": domain.catch_all,
        "name": domain.name,
        "random_prefix_generation": domain.random_prefix_generation,
        "mailboxes": [{"id": mailbox_id, "email": email} for mailbox_id, email in domain.mailboxes],
    }


def _record(record: DnsRecord) -> dict[str, Any]:
    return {"purpose": record.purpose, "type": record.type, "name": record.name, "value": record.value, "priority": record.priority}


def _check(result: CheckResult) -> dict[str, Any]:
    return {"ok": result.ok, "expected": result.expected, "found": result.found, "error": result.error, "temporary": result.temporary}


def _report(report: CheckReport) -> dict[str, Any]:
    return {
        "is_verified": report.verified,
        "checked_timestamp": api_timestamp(report.checked_ms),
        "checks": {name: _check(result) for name, result in report.checks.items()},
        "notes": report.notes,
    }


@router.get("/custom_domains", summary="The user's custom domains", response_model=list[CustomDomainAnswer], responses=responses(401))
async def list_domains(holder: KeyHolderDep, request: Request) -> list[dict[str, Any]]:
    """A bare JSON list, as the current API documents (the 2020 API wrapped it in
    ``{"custom_domains": [...]}``)."""
    return [domain_answer(d) for d in await runtime_of(request).custom_domains.for_user(holder.user.id)]


@router.post(
    "/custom_domains",
    summary="Add a custom domain (premium)",
    status_code=201,
    response_model=CreatedAnswer,
    responses=responses(401, 403, 409),
)
async def add_domain(body: NewDomainBody, holder: KeyHolderDep, request: Request) -> dict[str, Any]:
    """Not in SimpleLogin's API. The domain starts unverified: publish the records
    answered in ``dns_records`` (the TXT record ``postern-verification=...`` proves
    ownership; MX, SPF, DKIM and DMARC let mail flow and pass checks), then call
    ``POST /api/custom_domains/{id}/check``. 403 without premium; 409 when the domain
    is already someone's custom domain."""
    service = runtime_of(request).custom_domains
    domain = await service.add(holder.user, body.domain)
    _, records, _ = await service.dns(holder.user.id, domain.id)
    return {**domain_answer(domain), "dns_records": [_record(r) for r in records]}


@router.patch(
    "/custom_domains/{custom_domain_id}",
    summary="Change a custom domain's settings",
    response_model=CustomDomainAnswer,
    responses=responses(401, 404),
)
async def patch_domain(custom_domain_id: DomainId, body: DomainPatch, holder: KeyHolderDep, request: Request) -> dict[str, Any]:
    """Any of ``catch_all``, ``random_prefix_generation``, ``name`` and ``mailbox_ids``;
    answers the updated domain."""
    domain_id = _domain_id(custom_domain_id)
    given = body.model_fields_set
    changes = DomainChanges(
        catch_all=body.catch_all if "catch_all" in given else None,
        random_prefix_generation=body.random_prefix_generation if "random_prefix_generation" in given else None,
        name=body.name if "name" in given else None,
        clear_name="name" in given and not body.name,
        mailbox_ids=body.mailbox_ids if "mailbox_ids" in given else None,
    )
    return domain_answer(await runtime_of(request).custom_domains.update(holder.user.id, domain_id, changes))


@router.delete(
    "/custom_domains/{custom_domain_id}",
    summary="Delete a custom domain and its aliases",
    response_model=Deleted,
    responses=responses(401, 404),
)
async def delete_domain(custom_domain_id: DomainId, holder: KeyHolderDep, request: Request) -> dict[str, bool]:
    """Not in SimpleLogin's API. Deletes every alias of the domain, in one go: their
    addresses stay in the domain's trash and can never be created again. The domain
    may be added again later (by whoever proves its ownership)."""
    await runtime_of(request).custom_domains.delete(holder.user.id, _domain_id(custom_domain_id))
    return {"deleted": True}


@router.get(
    "/custom_domains/{custom_domain_id}/trash",
    summary="The deleted aliases of a custom domain",
    response_model=TrashAnswer,
    responses=responses(401, 404),
)
async def domain_trash(custom_domain_id: DomainId, holder: KeyHolderDep, request: Request) -> dict[str, Any]:
    items = await runtime_of(request).custom_domains.trash(holder.user.id, _domain_id(custom_domain_id))
    return {"aliases": [{"alias": email, "deletion_timestamp": api_timestamp(ms)} for email, ms in items]}


@router.get(
    "/custom_domains/{custom_domain_id}/dns",
    summary="The DNS records to publish, and the last check",
    response_model=DnsAnswer,
    responses=responses(401, 404),
)
async def domain_dns(custom_domain_id: DomainId, holder: KeyHolderDep, request: Request) -> dict[str, Any]:
    """Not in SimpleLogin's API. ``last_check`` is the report of the last
    ``POST .../check`` (null before the first)."""
    domain, records, report = await runtime_of(request).custom_domains.dns(holder.user.id, _domain_id(custom_domain_id))
    return {
        "domain_name": domain.domain,
        "is_verified": domain.verified,
        "dns_records": [_record(r) for r in records],
        "last_check": _report(report) if report is not None else None,
    }


@router.post(
    "/custom_domains/{custom_domain_id}/check",
    summary="Check the domain's DNS records now",
    response_model=CheckedAnswer,
    responses=responses(401, 404, 429),
)
async def check_domain(custom_domain_id: DomainId, holder: KeyHolderDep, request: Request) -> dict[str, Any]:
    """Not in SimpleLogin's API. Looks up the ownership TXT record (which verifies the
    domain), MX, SPF, DKIM and DMARC, and answers each check as ``{ok, expected, found,
    error, temporary}``. A DNS failure is reported, never an error status; a check
    that fails temporarily keeps its last result (a verified domain stays verified)."""
    domain, report = await runtime_of(request).custom_domains.check(holder.user.id, _domain_id(custom_domain_id), ip=meta_of(request).ip)
    return {**_report(report), "custom_domain": domain_answer(domain)}
