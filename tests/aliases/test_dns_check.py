"""The DNS checks of custom domains, against a StaticResolver."""

from __future__ import annotations

import pytest

from postern.aliases import dns_check
from postern.aliases.dns_check import DomainDns, check_all, dkim_tags, records_to_publish, spf_authorises
from postern.delivery.dns import DnsError, StaticResolver

DNS = DomainDns(
    domain="example.org",
    ownership_token="t0ken",
    hostname="mx.example.com",
    dkim_name="postern202611._domainkey.example.org",
    dkim_value="v=DKIM1; k=rsa; p=QUJDREVGRw==",
)


def published() -> StaticResolver:
    return StaticResolver(
        {
            ("TXT", "example.org"): ["postern-verification=t0ken", "v=spf1 mx ~all", "google-site-verification=x"],
            ("MX", "example.org"): [(10, "MX.Example.com.")],
            ("TXT", "postern202611._domainkey.example.org"): ["v=DKIM1; k=rsa; p=QUJDREV GRw=="],
            ("TXT", "_dmarc.example.org"): ["v=DMARC1; p=none"],
        }
    )


def test_records_to_publish() -> None:
    records = {r.purpose: r for r in records_to_publish(DNS)}
    assert list(records) == ["ownership", "mx", "spf", "dkim", "dmarc"]
    assert (records["ownership"].type, records["ownership"].name, records["ownership"].value) == ("TXT", "example.org", "postern-verification=t0ken")
    assert (records["mx"].type, records["mx"].value, records["mx"].priority) == ("MX", "mx.example.com", 10)
    assert records["spf"].value == "v=spf1 mx ~all"
    assert (records["dkim"].name, records["dkim"].value) == (DNS.dkim_name, DNS.dkim_value)
    assert records["dmarc"].name == "_dmarc.example.org" and records["dmarc"].value.startswith("v=DMARC1")


@pytest.mark.parametrize(
    ("record", "ok"),
    [
        ("v=spf1 mx ~all", True),
        ("v=spf1 +mx -all", True),
        ("v=spf1 mx/24 -all", True),
        ("V=SPF1 a:MX.example.com. -all", True),
        ("v=spf1 include:mx.example.com ~all", True),
        ("v=spf1 include:_spf.google.com ~all", False),
        ("v=spf1 a:other.example.com -all", False),
        ("v=spf1 -mx ~all", False),
        ("v=spf1 -all", False),
        ('"v=spf1 mx ~all"', True),
    ],
)
def test_spf_authorises(record: str, ok: bool) -> None:
    assert spf_authorises(record, "mx.example.com") is ok


def test_dkim_tags() -> None:
    assert dkim_tags("v=DKIM1; K=rsa; p=AB CD\n EF;") == {"v": "DKIM1", "k": "rsa", "p": "ABCDEF"}


async def test_every_check_passes() -> None:
    resolver = published()
    results = await check_all(resolver, DNS)
    assert list(results) == list(dns_check.CHECKS)
    assert all(r.ok for r in results.values()), results
    assert all(r.error is None and not r.temporary for r in results.values())
    assert results["ownership"].found == ["postern-verification=t0ken"]
    assert results["mx"].found == ["10 mx.example.com"]
    assert results["spf"].found == ["v=spf1 mx ~all"]
    assert results["dmarc"].found == ["v=DMARC1; p=none"]


@pytest.mark.parametrize(
    ("rtype", "name", "value", "failing", "error"),
    [
        ("TXT", "example.org", ["v=spf1 mx ~all"], {"ownership"}, "no TXT record postern-verification"),
        ("TXT", "example.org", ["postern-verification=other", "v=spf1 mx ~all"], {"ownership"}, "does not match"),
        ("MX", "example.org", [], {"mx"}, "no MX record found"),
        ("MX", "example.org", [(10, "mx.elsewhere.net")], {"mx"}, "no MX record points to mx.example.com"),
        ("TXT", "example.org", ["postern-verification=t0ken"], {"spf"}, "no SPF record"),
        ("TXT", "example.org", ["postern-verification=t0ken", "v=spf1 include:_spf.google.com -all"], {"spf"}, "does not authorise"),
        ("TXT", "example.org", ["postern-verification=t0ken", "v=spf1 mx -all", "v=spf1 a -all"], {"spf"}, "more than one SPF record"),
        ("TXT", "postern202611._domainkey.example.org", [], {"dkim"}, "no TXT record at"),
        ("TXT", "postern202611._domainkey.example.org", ["v=DKIM1; k=rsa; p=OTHER"], {"dkim"}, "does not carry our public key"),
        ("TXT", "_dmarc.example.org", [], {"dmarc"}, "no DMARC record"),
        ("TXT", "_dmarc.example.org", ["v=spf1 mx"], {"dmarc"}, "no DMARC record"),
        ("TXT", "_dmarc.example.org", ["v=DMARC1; p=none", "v=DMARC1; p=reject"], {"dmarc"}, "more than one DMARC record"),
    ],
)
async def test_each_check_fails_alone(rtype: str, name: str, value: list, failing: set[str], error: str) -> None:
    resolver = published()
    resolver.set(rtype, name, value)
    results = await check_all(resolver, DNS)
    assert {n for n, r in results.items() if not r.ok} == failing
    for check in failing:
        assert error in (results[check].error or ""), results[check]
        assert results[check].temporary is False
        assert results[check].expected


async def test_dns_errors_are_reported_not_raised() -> None:
    resolver = published()
    resolver.set("TXT", "example.org", DnsError("SERVFAIL", temporary=True))
    resolver.set("MX", "example.org", DnsError("broken answer", temporary=False))
    results = await check_all(resolver, DNS)
    assert results["ownership"].ok is False and results["ownership"].temporary is True
    assert "temporary DNS failure" in (results["ownership"].error or "") and "SERVFAIL" in (results["ownership"].error or "")
    assert results["spf"].temporary is True
    assert results["mx"].ok is False and results["mx"].temporary is False
    assert "DNS error" in (results["mx"].error or "")
    assert results["dkim"].ok and results["dmarc"].ok
