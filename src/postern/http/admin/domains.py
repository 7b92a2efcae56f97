"""/domains: the hosted domains and the DNS records each needs (beyond WildDuck's API,
like `postern domain`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from postern.domains.records import Record
from postern.domains.service import HostedDomain
from postern.http.admin.common import RuntimeDep, Success, responses

router = APIRouter(tags=["Domains"])

DomainName = Annotated[str, Path(min_length=1, max_length=253, description="The domain (Unicode or ASCII form)")]


class DnsRecordModel(BaseModel):
    purpose: str
    type: str
    name: str
    value: str
    ok: bool | None = None
    found: list[str] | None = None
    error: str | None = None


class DomainModel(BaseModel):
    domain: str
    name: str
    sources: list[str]
    addresses: int
    dkimSelector: str | None


class DomainList(BaseModel):
    success: bool = True
    results: list[DomainModel]


class DomainAnswer(DomainModel):
    success: bool = True
    records: list[DnsRecordModel]


class NewDomain(BaseModel):
    domain: str = Field(min_length=1, max_length=253)


def _domain(entry: HostedDomain) -> dict[str, Any]:
    return {
        "domain": entry.domain,
        "name": entry.display,
        "sources": entry.sources,
        "addresses": entry.addresses,
        "dkimSelector": entry.dkim_selector,
    }


def _record(record: Record) -> dict[str, Any]:
    return {"purpose": record.purpose, "type": record.type, "name": record.name, "value": record.value}


@router.get("/domains", summary="List the hosted domains", responses=responses(DomainList))
async def list_domains(runtime: RuntimeDep) -> dict[str, Any]:
    return {"success": True, "results": [_domain(d) for d in await runtime.hosted_domains.hosted()]}


@router.post("/domains", summary="Add a hosted domain (and make its DKIM key)", responses=responses(DomainAnswer))
async def add_domain(body: NewDomain, runtime: RuntimeDep) -> dict[str, Any]:
    entry, _new = await runtime.hosted_domains.add(body.domain)
    records = await runtime.hosted_domains.records(entry.domain)
    return {"success": True, **_domain(entry), "records": [_record(r) for r in records]}


@router.get("/domains/{domain}", summary="A hosted domain and the DNS records it needs", responses=responses(DomainAnswer))
async def get_domain(domain: DomainName, runtime: RuntimeDep) -> dict[str, Any]:
    entry = await runtime.hosted_domains.get(domain)
    records = await runtime.hosted_domains.records(entry.domain)
    return {"success": True, **_domain(entry), "records": [_record(r) for r in records]}


@router.get("/domains/{domain}/check", summary="Check the domain's DNS records", responses=responses(DomainAnswer))
async def check_domain(domain: DomainName, runtime: RuntimeDep) -> dict[str, Any]:
    entry = await runtime.hosted_domains.get(domain)
    checks = await runtime.hosted_domains.check(entry.domain)
    return {
        "success": True,
        **_domain(entry),
        "records": [{**_record(c.record), "ok": c.ok, "found": c.found, "error": c.error} for c in checks],
    }


@router.delete("/domains/{domain}", summary="Forget a domain added ahead of its addresses", responses=responses(Success))
async def remove_domain(domain: DomainName, runtime: RuntimeDep) -> dict[str, Any]:
    await runtime.hosted_domains.remove(domain)
    return {"success": True}
