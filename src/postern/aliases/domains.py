"""Users' own domains for aliases (a premium feature): adding one, proving its
ownership and checking its mail records in DNS, its settings, its trash, deleting it.

A domain is stored in ASCII form, once in the whole system. Its owner proves it by
publishing ``postern-verification=<token>`` in a TXT record; only then
(``verified``) may aliases be made on it (``aliases/usable_domains.py``). The other
checks (MX, SPF, DKIM, DMARC) are reported and stored as flags; they tell the user what
is missing. Each domain gets a DKIM key at creation (``delivery/dkim_signing.py``), so
that mail sent from its aliases is signed.

Deleting a domain deletes its aliases, in one transaction; their addresses stay in
``deleted_aliases`` (its trash) and can never be created again. The domain itself is
free again, for anyone who proves it.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.accounts.addressing import normalise_domain
from postern.accounts.rate_limit import Policy, RateLimiter
from postern.aliases import dns_check
from postern.aliases.dns_check import CheckResult, DnsRecord, DomainDns
from postern.config import Settings
from postern.delivery.dkim_keys import key_from_row
from postern.delivery.dkim_signing import DkimKey, dns_record_name, dns_record_value, generate_key
from postern.delivery.dns import Resolver
from postern.errors import Conflict, Forbidden, InvalidInput, NotFound
from postern.storage import custom_domains as store
from postern.storage import dkim_keys as dkim_store
from postern.storage.database import Database
from postern.storage.ids import now_ms

MAX_NAME = 128
MAX_MAILBOXES = 100
MAX_DB_INT = 2**31 - 1
# An unverified claim on a domain this old, without aliases, no longer blocks another
# user from adding the domain (so nobody can squat a domain they do not own).
UNVERIFIED_CLAIM_MS = 72 * 3600 * 1000
NOT_FOUND = "Custom domain not found"
PREMIUM_ONLY = "Custom domains are a premium feature"
_LABELS = {"ownership": "ownership", "mx": "MX", "spf": "SPF", "dkim": "DKIM", "dmarc": "DMARC"}
_FLAGS = {"mx": "mx_ok", "spf": "spf_ok", "dkim": "dkim_ok", "dmarc": "dmarc_ok", "ownership": "verified"}


@dataclass(frozen=True, slots=True)
class CustomDomain:
    id: int
    domain: str  # ASCII form
    name: str | None
    verified: bool
    catch_all: bool
    random_prefix_generation: bool
    created_ms: int
    nb_alias: int
    mailboxes: list[tuple[int, str]]  # (id, email)
    mx_ok: bool
    spf_ok: bool
    dkim_ok: bool
    dmarc_ok: bool
    checked_ms: int | None


@dataclass(slots=True)
class CheckReport:
    """The result of one DNS check of a domain."""

    verified: bool  # the domain's flag after this check
    checked_ms: int
    checks: dict[str, CheckResult]
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "verified": self.verified,
            "checked_ms": self.checked_ms,
            "checks": {name: result.as_dict() for name, result in self.checks.items()},
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, text: str | None) -> CheckReport | None:
        try:
            data = json.loads(text or "{}")
            checks = {name: CheckResult(**data["checks"][name]) for name in dns_check.CHECKS}
            return cls(bool(data["verified"]), int(data["checked_ms"]), checks, [str(n) for n in data.get("notes", [])])
        except (ValueError, TypeError, KeyError):
            return None


@dataclass(frozen=True, slots=True)
class DomainChanges:
    """A PATCH: None leaves a setting as it is (``name`` is cleared with ``clear_name``)."""

    catch_all: bool | None = None
    random_prefix_generation: bool | None = None
    name: str | None = None
    clear_name: bool = False
    mailbox_ids: Sequence[int] | None = None


def clean_name(value: str | None) -> str | None:
    """A display name: at most 128 characters, no line breaks or control characters;
    empty means none."""
    if value is None:
        return None
    text = value.strip()
    if any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") for c in text):
        raise InvalidInput("name must not contain line breaks or control characters", field="name")
    if len(text) > MAX_NAME:
        raise InvalidInput(f"name must be at most {MAX_NAME} characters", field="name")
    return text or None


def _ascii_or_none(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return normalise_domain(value)[0]
    except InvalidInput:
        return value.strip().rstrip(".").lower() or None


# DNS checks a user may ask for (each is five lookups through our resolver).
CHECK_ACTION = "custom_domain_check"
CHECK_POLICY = Policy(per_ip=120, per_account=60, window_s=3600)
# Custom domains per user: enough for anyone's own domains, not a way to hoard names.
MAX_DOMAINS_PER_USER = 50


class CustomDomains:
    def __init__(self, db: Database, settings: Settings, resolver: Resolver, limiter: RateLimiter | None = None):
        self.db = db
        self.settings = settings
        self.resolver = resolver
        self.limiter = limiter
        if limiter is not None:
            limiter.policies.setdefault(CHECK_ACTION, CHECK_POLICY)

    # Reading ---------------------------------------------------------------------------

    async def _views(self, conn: AsyncConnection, rows: Sequence[Row]) -> list[CustomDomain]:
        ids = [int(r.id) for r in rows]
        counts = await store.alias_counts(conn, ids)
        boxes = await store.mailboxes_of(conn, ids)
        return [
            CustomDomain(
                id=int(r.id),
                domain=r.domain,
                name=r.name,
                verified=bool(r.verified),
                catch_all=bool(r.catch_all),
                random_prefix_generation=bool(r.random_prefix_generation),
                created_ms=int(r.created_ms),
                nb_alias=counts.get(int(r.id), 0),
                mailboxes=boxes.get(int(r.id), []),
                mx_ok=bool(r.mx_ok),
                spf_ok=bool(r.spf_ok),
                dkim_ok=bool(r.dkim_ok),
                dmarc_ok=bool(r.dmarc_ok),
                checked_ms=r.checked_ms,
            )
            for r in rows
        ]

    async def _row(self, conn: AsyncConnection, user_id: str, domain_id: int) -> Row:
        row = await store.get(conn, user_id, domain_id) if 0 < domain_id <= MAX_DB_INT else None
        if row is None:
            raise NotFound(NOT_FOUND)
        return row

    async def for_user(self, user_id: str) -> list[CustomDomain]:
        async with self.db.read() as conn:
            return await self._views(conn, await store.list_for_user(conn, user_id))

    async def get(self, user_id: str, domain_id: int) -> CustomDomain:
        async with self.db.read() as conn:
            return (await self._views(conn, [await self._row(conn, user_id, domain_id)]))[0]

    async def trash(self, user_id: str, domain_id: int) -> list[tuple[str, int]]:
        """The domain's deleted aliases as (address, deletion time in ms), newest first."""
        async with self.db.read() as conn:
            row = await self._row(conn, user_id, domain_id)
            return [(r.email, int(r.deleted_ms)) for r in await store.trash(conn, user_id, row.id, row.domain)]

    # Adding ------------------------------------------------------------------------------

    def _reserved(self) -> set[str]:
        s = self.settings
        names = [s.domain, s.hostname, s.resolved_reverse_alias_domain, *s.resolved_alias_domains, *s.premium_alias_domains]
        return {d for d in (_ascii_or_none(n) for n in names) if d}

    def _check_domain(self, value: str) -> str:
        ascii_domain = normalise_domain(value)[0]
        labels = ascii_domain.split(".")
        if len(labels) < 2 or labels[-1].isdigit():
            raise InvalidInput("domain must be a domain name such as example.org", field="domain")
        for reserved in self._reserved():
            if ascii_domain == reserved or ascii_domain.endswith("." + reserved):
                raise InvalidInput(f"{ascii_domain} belongs to this server and cannot be a custom domain", field="domain")
        return ascii_domain

    async def _dkim_key(self, domain: str) -> DkimKey:
        """The domain's DKIM key, made now if it has none."""
        async with self.db.read() as conn:
            row = await dkim_store.get_key(conn, domain)
        if row is None:
            key = await asyncio.to_thread(generate_key, domain)
            async with self.db.write() as conn:
                row = await dkim_store.get_key(conn, domain)
                if row is None:
                    await dkim_store.put_key(conn, key.domain, key.selector, key.algorithm, key.private_key_pem.decode(), now_ms())
                    return key
        return key_from_row(row)

    async def add(self, user: Row, value: str) -> CustomDomain:
        """A new unverified domain for ``user``: 403 without premium, 400 for a bad or
        reserved domain, 409 when someone has it already."""
        if not user.premium:
            raise Forbidden(PREMIUM_ONLY)
        domain = self._check_domain(value)
        async with self.db.read() as conn:
            if await store.hosted_address_uses(conn, domain):
                raise InvalidInput(f"{domain} belongs to this server and cannot be a custom domain", field="domain")
            if len(await store.list_for_user(conn, user.id)) >= MAX_DOMAINS_PER_USER:
                raise Forbidden(f"You can have at most {MAX_DOMAINS_PER_USER} custom domains")
            await self._check_free(conn, user.id, domain)
        await self._dkim_key(domain)  # slow (an RSA key): outside the write transaction
        now = now_ms()
        try:
            async with self.db.write() as conn:
                await self._check_free(conn, user.id, domain, release=True)
                domain_id = await store.insert(
                    conn,
                    {"user_id": user.id, "domain": domain, "ownership_token": secrets.token_hex(16), "created_ms": now},
                )
                mailbox_id = await store.default_mailbox_id(conn, user.id)
                if mailbox_id is not None:
                    await store.set_mailboxes(conn, user.id, domain_id, [mailbox_id])
                await store.adopt_trash(conn, user.id, domain_id, domain)
        except IntegrityError:
            raise Conflict(f"{domain} is already in use") from None
        return await self.get(user.id, domain_id)

    async def _check_free(self, conn: AsyncConnection, user_id: str, domain: str, *, release: bool = False) -> None:
        row = await store.get_by_domain(conn, domain)
        if row is None:
            return
        if row.user_id == user_id:
            raise Conflict(f"You have already added {domain}")
        stale = not row.verified and now_ms() - int(row.created_ms) > UNVERIFIED_CLAIM_MS
        if stale and not (await store.alias_counts(conn, [int(row.id)])):
            if release:
                await store.delete_domain(conn, row.user_id, int(row.id), now_ms())
            return
        raise Conflict(f"{domain} is already in use")

    # Changing ----------------------------------------------------------------------------

    async def update(self, user_id: str, domain_id: int, changes: DomainChanges) -> CustomDomain:
        values: dict[str, Any] = {}
        if changes.catch_all is not None:
            values["catch_all"] = changes.catch_all
        if changes.random_prefix_generation is not None:
            values["random_prefix_generation"] = changes.random_prefix_generation
        if changes.clear_name:
            values["name"] = None
        elif changes.name is not None:
            values["name"] = clean_name(changes.name)
        mailbox_ids: list[int] | None = None
        if changes.mailbox_ids is not None:
            mailbox_ids = list(dict.fromkeys(changes.mailbox_ids))
            if not mailbox_ids:
                raise InvalidInput("mailbox_ids must name at least one mailbox", field="mailbox_ids")
            if len(mailbox_ids) > MAX_MAILBOXES:
                raise InvalidInput(f"mailbox_ids may name at most {MAX_MAILBOXES} mailboxes", field="mailbox_ids")
        async with self.db.write() as conn:
            row = await self._row(conn, user_id, domain_id)
            if mailbox_ids is not None:
                in_range = [m for m in mailbox_ids if 0 < m <= MAX_DB_INT]
                usable = await store.verified_mailbox_ids(conn, user_id, in_range) if in_range else set()
                if len(usable) != len(mailbox_ids):
                    raise InvalidInput("mailbox_ids must name your verified mailboxes", field="mailbox_ids")
                await store.set_mailboxes(conn, user_id, row.id, mailbox_ids)
            await store.update_domain(conn, row.id, values)
            return (await self._views(conn, [await self._row(conn, user_id, domain_id)]))[0]

    async def delete(self, user_id: str, domain_id: int) -> int:
        """Deletes the domain and its aliases (their addresses stay reserved, in the
        domain's trash); returns how many aliases went."""
        async with self.db.write() as conn:
            row = await self._row(conn, user_id, domain_id)
            return await store.delete_domain(conn, user_id, row.id, now_ms())

    # DNS ---------------------------------------------------------------------------------

    async def _dns_of(self, row: Row) -> DomainDns:
        key = await self._dkim_key(row.domain)
        return DomainDns(
            domain=row.domain,
            ownership_token=row.ownership_token,
            hostname=self.settings.hostname,
            dkim_name=dns_record_name(key),
            dkim_value=dns_record_value(key),
        )

    async def dns(self, user_id: str, domain_id: int) -> tuple[CustomDomain, list[DnsRecord], CheckReport | None]:
        """The domain, the records to publish and the last check's report (None before
        the first check)."""
        async with self.db.read() as conn:
            row = await self._row(conn, user_id, domain_id)
            view = (await self._views(conn, [row]))[0]
        records = dns_check.records_to_publish(await self._dns_of(row))
        return view, records, CheckReport.from_json(row.check_report) if row.checked_ms is not None else None

    async def check(self, user_id: str, domain_id: int, ip: str | None = None) -> tuple[CustomDomain, CheckReport]:
        """Runs every DNS check now and stores the flags and the report. A check that
        fails temporarily (a DNS server failure) keeps its last result: a verified
        domain stays verified. Rate limited per user and per ``ip``."""
        async with self.db.read() as conn:
            row = await self._row(conn, user_id, domain_id)
        if self.limiter is not None:
            await self.limiter.attempt(CHECK_ACTION, ip=ip, account=user_id)
        results = await dns_check.check_all(self.resolver, await self._dns_of(row))
        values: dict[str, Any] = {}
        notes: list[str] = []
        for name, result in results.items():
            flag = _FLAGS[name]
            before = bool(getattr(row, flag))
            if result.ok:
                values[flag] = True
            elif result.temporary:
                values[flag] = before
                if before:
                    kept = "the domain stays verified" if name == "ownership" else "its last result (passed) is kept"
                    notes.append(f"The {_LABELS[name]} check failed temporarily: {kept}")
            else:
                values[flag] = False
        if not values["verified"]:
            notes.append("Publish the ownership TXT record to verify the domain: aliases can be made on it once it is verified")
        report = CheckReport(verified=values["verified"], checked_ms=now_ms(), checks=results, notes=notes)
        values["check_report"] = json.dumps(report.as_dict())
        values["checked_ms"] = report.checked_ms
        async with self.db.write() as conn:
            current = await self._row(conn, user_id, domain_id)  # still there?
            await store.update_domain(conn, current.id, values)
            view = (await self._views(conn, [await self._row(conn, user_id, domain_id)]))[0]
        return view, report
