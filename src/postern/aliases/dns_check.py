"""What a custom domain must publish in DNS, and whether it does.

Pure apart from the lookups, which go through the :class:`~postern.delivery.dns.Resolver`
given (``StaticResolver`` in tests). Five checks, each answered as a
:class:`CheckResult` ``{ok, expected, found, error}``:

- ownership: a TXT record ``postern-verification=<token>`` at the domain;
- MX: a record naming our host name (case and a trailing dot ignored);
- SPF: one ``v=spf1`` TXT record that authorises us (``mx``, ``a:<host>`` or
  ``include:<host>``);
- DKIM: the TXT record ``<selector>._domainkey.<domain>`` carries our public key ``p=``;
- DMARC: one TXT record at ``_dmarc.<domain>`` starting with ``v=DMARC1``.

A lookup that fails (:class:`~postern.delivery.dns.DnsError`) is reported in the
check's ``error``, with ``temporary`` telling whether trying later may help; it never
raises.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from postern.delivery.dns import DnsError, Resolver

OWNERSHIP_PREFIX = "postern-verification="
MX_PRIORITY = 10
SPF_VALUE = "v=spf1 mx ~all"
DMARC_VALUE = "v=DMARC1; p=quarantine; adkim=r; aspf=r"
CHECKS = ("ownership", "mx", "spf", "dkim", "dmarc")

_DMARC = re.compile(r"^v\s*=\s*DMARC1\s*(;|$)")
_SPF = re.compile(r"^v=spf1(\s|$)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class DnsRecord:
    """One record to publish."""

    purpose: str  # ownership, mx, spf, dkim, dmarc
    type: str  # TXT or MX
    name: str
    value: str
    priority: int | None = None  # MX only


@dataclass(slots=True)
class CheckResult:
    ok: bool
    expected: str
    found: list[str] = field(default_factory=list)
    error: str | None = None
    temporary: bool = False  # the error may go away: try again later

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class DomainDns:
    """What the checks compare against."""

    domain: str  # ASCII form
    ownership_token: str
    hostname: str  # our MX host
    dkim_name: str  # <selector>._domainkey.<domain>
    dkim_value: str  # v=DKIM1; k=...; p=...


def _host(name: str) -> str:
    return name.strip().rstrip(".").lower()


def ownership_value(token: str) -> str:
    return OWNERSHIP_PREFIX + token


def records_to_publish(dns: DomainDns) -> list[DnsRecord]:
    domain = dns.domain
    return [
        DnsRecord("ownership", "TXT", domain, ownership_value(dns.ownership_token)),
        DnsRecord("mx", "MX", domain, _host(dns.hostname), MX_PRIORITY),
        DnsRecord("spf", "TXT", domain, SPF_VALUE),
        DnsRecord("dkim", "TXT", dns.dkim_name, dns.dkim_value),
        DnsRecord("dmarc", "TXT", f"_dmarc.{domain}", DMARC_VALUE),
    ]


def _unquote(record: str) -> str:
    # Some DNS panels keep the quotes a user typed around the value.
    text = record.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1].strip()
    return text


def dkim_tags(record: str) -> dict[str, str]:
    """A DKIM key record's tags (RFC 6376 3.6.1): names lowercased, whitespace
    removed from values."""
    tags: dict[str, str] = {}
    for part in _unquote(record).split(";"):
        name, eq, value = part.partition("=")
        if eq:
            tags.setdefault(name.strip().lower(), re.sub(r"\s+", "", value))
    return tags


def spf_authorises(record: str, hostname: str) -> bool:
    """Whether an SPF record lets our host send: ``mx``, ``a:<host>`` or
    ``include:<host>`` (with a ``+`` qualifier or none)."""
    host = _host(hostname)
    for term in _unquote(record).lower().split()[1:]:
        term = term.removeprefix("+")
        if term == "mx" or term.startswith("mx/"):
            return True
        for mechanism in ("a:", "include:"):
            if term.startswith(mechanism):
                target = term[len(mechanism) :].split("/", 1)[0]
                if _host(target) == host:
                    return True
    return False


async def _lookup(kind: str, call: Callable[[], Awaitable[list[Any]]], expected: str) -> tuple[list[Any] | None, CheckResult | None]:
    try:
        return await call(), None
    except DnsError as error:
        what = "temporary DNS failure" if error.temporary else "DNS error"
        return None, CheckResult(False, expected, [], f"{kind} lookup: {what}: {error}", error.temporary)


async def check_ownership(resolver: Resolver, dns: DomainDns) -> CheckResult:
    expected = ownership_value(dns.ownership_token)
    records, failed = await _lookup(f"TXT {dns.domain}", lambda: resolver.txt(dns.domain), expected)
    if failed:
        return failed
    found = [_unquote(r) for r in records or [] if _unquote(r).lower().startswith(OWNERSHIP_PREFIX)]
    ok = expected in found
    error = None if ok else ("no TXT record postern-verification=... found" if not found else "the verification token does not match")
    return CheckResult(ok, expected, found, error)


async def check_mx(resolver: Resolver, dns: DomainDns) -> CheckResult:
    host = _host(dns.hostname)
    expected = f"{MX_PRIORITY} {host}"
    records, failed = await _lookup(f"MX {dns.domain}", lambda: resolver.mx(dns.domain), expected)
    if failed:
        return failed
    pairs = [(int(p), _host(h)) for p, h in records or []]
    found = [f"{p} {h}" if h else f"{p} ." for p, h in pairs]
    ok = any(h == host for _, h in pairs)
    error = None if ok else ("no MX record found" if not pairs else f"no MX record points to {host}")
    return CheckResult(ok, expected, found, error)


async def check_spf(resolver: Resolver, dns: DomainDns) -> CheckResult:
    records, failed = await _lookup(f"TXT {dns.domain}", lambda: resolver.txt(dns.domain), SPF_VALUE)
    if failed:
        return failed
    found = [_unquote(r) for r in records or [] if _SPF.match(_unquote(r))]
    if not found:
        return CheckResult(False, SPF_VALUE, found, "no SPF record (v=spf1) found")
    if len(found) > 1:
        return CheckResult(False, SPF_VALUE, found, "more than one SPF record: receivers ignore them all (keep one)")
    if not spf_authorises(found[0], dns.hostname):
        return CheckResult(False, SPF_VALUE, found, f"the SPF record does not authorise {_host(dns.hostname)} (add mx)")
    return CheckResult(True, SPF_VALUE, found)


async def check_dkim(resolver: Resolver, dns: DomainDns) -> CheckResult:
    records, failed = await _lookup(f"TXT {dns.dkim_name}", lambda: resolver.txt(dns.dkim_name), dns.dkim_value)
    if failed:
        return failed
    found = [_unquote(r) for r in records or []]
    wanted = dkim_tags(dns.dkim_value).get("p", "")
    ok = any(dkim_tags(r).get("p") == wanted for r in found)
    error = None if ok else (f"no TXT record at {dns.dkim_name}" if not found else "the DKIM record does not carry our public key (p=)")
    return CheckResult(ok, dns.dkim_value, found, error)


async def check_dmarc(resolver: Resolver, dns: DomainDns) -> CheckResult:
    name = f"_dmarc.{dns.domain}"
    records, failed = await _lookup(f"TXT {name}", lambda: resolver.txt(name), DMARC_VALUE)
    if failed:
        return failed
    found = [_unquote(r) for r in records or [] if _unquote(r).lower().startswith("v")]
    valid = [r for r in found if _DMARC.match(r)]
    if not valid:
        return CheckResult(False, DMARC_VALUE, found, f"no DMARC record (v=DMARC1) at {name}")
    if len(valid) > 1:
        return CheckResult(False, DMARC_VALUE, found, "more than one DMARC record: receivers ignore them all (keep one)")
    return CheckResult(True, DMARC_VALUE, found)


async def check_all(resolver: Resolver, dns: DomainDns) -> dict[str, CheckResult]:
    """Every check, in the order of :data:`CHECKS`."""
    return {
        "ownership": await check_ownership(resolver, dns),
        "mx": await check_mx(resolver, dns),
        "spf": await check_spf(resolver, dns),
        "dkim": await check_dkim(resolver, dns),
        "dmarc": await check_dmarc(resolver, dns),
    }
