"""The hosted domains: what `postern domain add|list|remove|check` works with.

WildDuck's admin API stays domain-agnostic (it takes addresses on any domain); the
hosted domains are the domains of users' addresses, the alias domains of the
configuration and the users' custom domains, plus any the operator added ahead of its
first address. Adding a domain makes its DKIM key; its records are then printed for the
operator to publish, and ``check`` asks the resolver whether they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from postern.accounts.addressing import normalise_domain
from postern.aliases import dns_check
from postern.config import Settings
from postern.delivery.dkim_keys import create_key, published_record
from postern.delivery.dns import DnsError, Resolver
from postern.domains.records import Record, mta_sts_id, records
from postern.errors import Conflict, NotFound
from postern.storage import dkim_keys as dkim_store
from postern.storage import hosted_domains as store
from postern.storage.database import Database
from postern.storage.ids import now_ms


@dataclass(slots=True)
class HostedDomain:
    domain: str  # ASCII form
    display: str  # Unicode form
    sources: list[str] = field(default_factory=list)  # added, addresses, alias domain, custom domain
    addresses: int = 0
    dkim_selector: str | None = None


@dataclass(frozen=True, slots=True)
class RecordCheck:
    record: Record
    ok: bool
    found: list[str]
    error: str | None = None


class HostedDomains:
    def __init__(self, db: Database, settings: Settings, resolver: Resolver):
        self.db = db
        self.settings = settings
        self.resolver = resolver

    async def hosted(self) -> list[HostedDomain]:
        async with self.db.read() as conn:
            added = await store.added(conn)
            counts = await store.address_counts(conn)
            custom = await store.custom_domain_names(conn)
            keys = {row.domain: row.selector for row in await dkim_store.all_keys(conn)}
        found: dict[str, HostedDomain] = {}

        def note(domain: str, source: str) -> HostedDomain:
            try:
                ascii_domain, display = normalise_domain(domain)
            except Exception:  # a row written before today's rules: show it as it is
                ascii_domain, display = domain, domain
            entry = found.setdefault(ascii_domain, HostedDomain(ascii_domain, display))
            if source not in entry.sources:
                entry.sources.append(source)
            return entry

        for domain in added:
            note(domain, "added")
        for domain, count in counts.items():
            note(domain, "addresses").addresses = count
        for domain in self.settings.resolved_alias_domains:
            note(domain, "alias domain")
        for domain in custom:
            note(domain, "custom domain")
        for entry in found.values():
            entry.dkim_selector = keys.get(entry.domain)
        return sorted(found.values(), key=lambda d: d.domain)

    async def add(self, domain: str) -> tuple[HostedDomain, bool]:
        """Adds the domain (and makes its DKIM key when it has none); returns it and
        whether it was new."""
        ascii_domain = normalise_domain(domain)[0]
        async with self.db.write() as conn:
            new = await store.add(conn, ascii_domain, now_ms())
            has_key = await dkim_store.get_key(conn, ascii_domain) is not None
        if not has_key:
            await create_key(self.db, ascii_domain)
        return await self.get(ascii_domain), new

    async def get(self, domain: str) -> HostedDomain:
        ascii_domain = normalise_domain(domain)[0]
        for entry in await self.hosted():
            if entry.domain == ascii_domain:
                return entry
        raise NotFound(f"{domain} is not a hosted domain", code="DomainNotFound")

    async def remove(self, domain: str) -> None:
        """Forgets a domain the operator added. One that addresses still use stays
        hosted: their users must go first (removing mail silently is never right)."""
        entry = await self.get(domain)
        if "added" not in entry.sources:
            raise Conflict(f"{entry.domain} was not added by `domain add`; it is hosted because of its {', '.join(entry.sources)}")
        if entry.addresses:
            raise Conflict(f"{entry.domain} still has {entry.addresses} address(es); delete or move them first")
        async with self.db.write() as conn:
            await store.remove(conn, entry.domain)

    async def records(self, domain: str) -> list[Record]:
        entry = await self.get(domain)
        return records(self.settings, entry.domain, await published_record(self.db, entry.domain))

    async def check(self, domain: str) -> list[RecordCheck]:
        """Each record compared with what DNS answers."""
        return [await self._check(record) for record in await self.records(domain)]

    async def _check(self, record: Record) -> RecordCheck:
        try:
            if record.type == "MX":
                host = record.value.split()[1]
                found = [f"{p} {h}" for p, h in await self.resolver.mx(record.name)]
                return RecordCheck(record, any(f.split()[1] == host for f in found), found)
            if record.type == "SRV":
                port, host = record.value.split()[2:]
                found = [f"{p} {w} {po} {h}" for p, w, po, h in await self.resolver.srv(record.name)]
                return RecordCheck(record, any(f.split()[2:] == [port, host] for f in found), found)
            if record.type == "CNAME":
                # Any address for the name will do: a CNAME to our host or its addresses.
                found = await self.resolver.a(record.name) + await self.resolver.aaaa(record.name)
                return RecordCheck(record, bool(found), found, None if found else f"{record.name} has no address")
            txt = await self.resolver.txt(record.name)
            return self._check_txt(record, txt)
        except DnsError as error:
            return RecordCheck(record, False, [], f"DNS {'temporary failure' if error.temporary else 'error'}: {error}")

    def _check_txt(self, record: Record, txt: list[str]) -> RecordCheck:
        if record.purpose == "spf":
            found = [t for t in txt if t.lower().startswith("v=spf1")]
            ok = len(found) == 1 and dns_check.spf_authorises(found[0], self.settings.hostname)
            return RecordCheck(record, ok, found, None if ok else "one v=spf1 record that authorises this host (mx) is needed")
        if record.purpose == "dkim":
            wanted = dns_check.dkim_tags(record.value).get("p")
            ok = any(dns_check.dkim_tags(t).get("p") == wanted for t in txt)
            return RecordCheck(record, ok, txt, None if ok else "the record does not carry this server's public key (p=)")
        if record.purpose == "dmarc":
            found = [t for t in txt if t.replace(" ", "").upper().startswith("V=DMARC1")]
            return RecordCheck(record, len(found) == 1, found, None if len(found) == 1 else "one v=DMARC1 record is needed")
        if record.purpose == "mta-sts":
            found = [t for t in txt if t.replace(" ", "").startswith("v=STSv1")]
            ok = any(f"id={mta_sts_id(self.settings)}" in t.replace(" ", "") for t in found)
            return RecordCheck(record, ok, found, None if ok else "publish the policy id shown (it changes with the policy)")
        found = [t for t in txt if t.replace(" ", "").startswith("v=TLSRPTv1")]
        return RecordCheck(record, len(found) == 1, found, None if len(found) == 1 else "one v=TLSRPTv1 record is needed")
