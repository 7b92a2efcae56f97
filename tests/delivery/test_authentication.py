"""SPF, DKIM and DMARC on mail received by MX, with DNS from a StaticResolver only."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from typing import Any

import dkim
import pytest
import spf
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from postern.delivery import authentication
from postern.delivery.authentication import (
    AuthenticationResults,
    DkimSignatureResult,
    DmarcResult,
    SpfResult,
    authenticate,
    check_dkim,
    check_dmarc,
    check_spf,
    organizational_domain,
    parse_header_from,
)
from postern.delivery.dns import DnsError, StaticResolver

TEMPFAIL = DnsError("SERVFAIL", temporary=True)
BROKEN = DnsError("malformed answer", temporary=False)


@pytest.fixture(autouse=True)
def _no_library_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """pyspf's and dkimpy's own DNS functions must never be called."""

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"library DNS used: {args!r}")

    monkeypatch.setattr(spf, "DNSLookup", forbidden)
    monkeypatch.setattr(dkim, "get_txt", forbidden)
    monkeypatch.setattr(dkim.dnsplug, "get_txt", forbidden)


# ---------------------------------------------------------------------------
# Keys and messages


def _new_key(bits: int = 2048) -> tuple[bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, "v=DKIM1; k=rsa; p=" + base64.b64encode(public).decode()


@pytest.fixture(scope="module")
def key() -> tuple[bytes, str]:
    return _new_key()


@pytest.fixture(scope="module")
def other_key() -> tuple[bytes, str]:
    return _new_key()


MESSAGE = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.org\r\n"
    b"Subject: Hello\r\n"
    b"Date: Mon, 06 Jan 2025 10:00:00 +0000\r\n"
    b"Message-ID: <1@example.com>\r\n"
    b"\r\n"
    b"Hello Bob,\r\nthis is a test.\r\n"
)


def sign(
    message: bytes, private: bytes, domain: str = "example.com", selector: str = "sel"
) -> bytes:
    return dkim.sign(message, selector.encode(), domain.encode(), private) + message


# ---------------------------------------------------------------------------
# SPF


async def spf_of(
    records: dict[tuple[str, str], Any],
    ip: str,
    mail_from: str = "alice@example.com",
    helo: str = "mail.example.com",
) -> SpfResult:
    return await check_spf(
        StaticResolver(records), client_ip=ip, helo=helo, mail_from=mail_from
    )


@pytest.mark.parametrize(
    ("record", "ip", "expected"),
    [
        ("v=spf1 ip4:192.0.2.0/24 -all", "192.0.2.10", "pass"),
        ("v=spf1 ip4:192.0.2.0/24 -all", "198.51.100.1", "fail"),
        ("v=spf1 ip4:192.0.2.0/24 ~all", "198.51.100.1", "softfail"),
        ("v=spf1 ip4:192.0.2.0/24 ?all", "198.51.100.1", "neutral"),
        ("v=spf1 ip4:192.0.2.0/24", "198.51.100.1", "neutral"),
        ("v=spf1 ip6:2001:db8::/32 -all", "2001:db8::25", "pass"),
        ("v=spf1 ip6:2001:db8::/32 -all", "2001:db9::25", "fail"),
        ("v=spf1 ip4:192.0.2.0/24 -all", "::ffff:192.0.2.10", "pass"),
        ("v=spf1 ip4:192.0.2.0/24 moo -all", "192.0.2.10", "permerror"),
        ("v=spf1 ip4:192.0.2.300 -all", "192.0.2.10", "permerror"),
    ],
)
async def test_spf_record_results(record: str, ip: str, expected: str) -> None:
    result = await spf_of({("TXT", "example.com"): ["some other text", record]}, ip)
    assert result.result == expected
    assert result.domain == "example.com"
    assert result.scope == "mailfrom"
    assert result.identity == "alice@example.com"


async def test_spf_include_and_redirect() -> None:
    records = {
        ("TXT", "example.com"): ["v=spf1 include:_spf.provider.test -all"],
        ("TXT", "_spf.provider.test"): ["v=spf1 ip4:198.51.100.0/24 -all"],
        ("TXT", "example.net"): ["v=spf1 redirect=_spf.example.com"],
        ("TXT", "_spf.example.com"): ["v=spf1 ip4:203.0.113.0/24 -all"],
    }
    assert (await spf_of(records, "198.51.100.7")).result == "pass"
    assert (await spf_of(records, "203.0.113.7")).result == "fail"
    assert (await spf_of(records, "203.0.113.7", "bob@example.net")).result == "pass"
    assert (await spf_of(records, "198.51.100.7", "bob@example.net")).result == "fail"


async def test_spf_include_or_redirect_without_record_is_permerror() -> None:
    records = {
        ("TXT", "example.com"): ["v=spf1 include:missing.test -all"],
        ("TXT", "example.net"): ["v=spf1 redirect=missing.test"],
    }
    assert (await spf_of(records, "192.0.2.1")).result == "permerror"
    assert (await spf_of(records, "192.0.2.1", "a@example.net")).result == "permerror"


async def test_spf_a_and_mx_mechanisms() -> None:
    records = {
        ("TXT", "example.com"): ["v=spf1 a mx a:relay.example.net/28 -all"],
        ("A", "example.com"): ["192.0.2.80"],
        ("AAAA", "example.com"): ["2001:db8::80"],
        ("MX", "example.com"): [(20, "mx2.example.com."), (10, "mx1.example.com")],
        ("A", "mx1.example.com"): ["198.51.100.25"],
        ("A", "mx2.example.com"): ["198.51.100.26"],
        ("A", "relay.example.net"): ["203.0.113.16"],
    }
    assert (await spf_of(records, "192.0.2.80")).result == "pass"
    assert (await spf_of(records, "2001:db8::80")).result == "pass"
    assert (await spf_of(records, "198.51.100.26")).result == "pass"
    assert (await spf_of(records, "203.0.113.30")).result == "pass"  # inside the /28
    assert (await spf_of(records, "203.0.113.40")).result == "fail"


async def test_spf_exists_macro_and_explanation() -> None:
    records = {
        ("TXT", "example.com"): [
            "v=spf1 exists:%{l}.allowed.example.com -all exp=why.example.com"
        ],
        ("A", "alice.allowed.example.com"): ["127.0.0.2"],
        ("TXT", "why.example.com"): ["%{i} is not one of %{d}'s servers"],
    }
    assert (await spf_of(records, "198.51.100.9")).result == "pass"
    denied = await spf_of(records, "198.51.100.9", "mallory@example.com")
    assert denied.result == "fail"
    assert denied.explanation == "198.51.100.9 is not one of example.com's servers"


async def test_spf_ptr_mechanism_goes_through_the_resolver() -> None:
    records = {
        ("TXT", "example.com"): ["v=spf1 ptr -all"],
        ("PTR", "192.0.2.44"): ["host.example.com"],
        ("A", "host.example.com"): ["192.0.2.44"],
    }
    assert (await spf_of(records, "192.0.2.44")).result == "pass"
    assert (await spf_of(records, "192.0.2.45")).result == "fail"


async def test_spf_none_when_no_record() -> None:
    assert (await spf_of({}, "192.0.2.1")).result == "none"
    only_text = {("TXT", "example.com"): ["google-site-verification=abc"]}
    assert (await spf_of(only_text, "192.0.2.1")).result == "none"


async def test_spf_two_records_is_permerror() -> None:
    records = {("TXT", "example.com"): ["v=spf1 -all", "v=spf1 +all"]}
    assert (await spf_of(records, "192.0.2.1")).result == "permerror"


async def test_spf_temperror_on_temporary_dns_failure() -> None:
    assert (
        await spf_of({("TXT", "example.com"): TEMPFAIL}, "192.0.2.1")
    ).result == "temperror"
    records = {
        ("TXT", "example.com"): ["v=spf1 include:_spf.provider.test -all"],
        ("TXT", "_spf.provider.test"): TEMPFAIL,
    }
    result = await spf_of(records, "192.0.2.1")
    assert result.result == "temperror"
    assert "SERVFAIL" in result.explanation
    broken = await spf_of({("TXT", "example.com"): BROKEN}, "192.0.2.1")
    assert broken.result == "permerror"


async def test_spf_void_lookup_limit() -> None:
    records = {("TXT", "example.com"): ["v=spf1 a:n1.test a:n2.test a:n3.test -all"]}
    assert (await spf_of(records, "192.0.2.1")).result == "permerror"


async def test_spf_null_sender_uses_helo() -> None:
    records = {
        ("TXT", "mail.example.com"): ["v=spf1 ip4:192.0.2.25 -all"],
        ("TXT", "example.com"): ["v=spf1 -all"],
    }
    result = await spf_of(records, "192.0.2.25", mail_from="", helo="mail.example.com")
    assert result == SpfResult(
        "pass",
        "mail.example.com",
        result.explanation,
        "helo",
        "postmaster@mail.example.com",
    )
    result = await spf_of(
        records, "192.0.2.26", mail_from="<>", helo="mail.example.com"
    )
    assert result.result == "fail"
    literal = await spf_of(records, "192.0.2.25", mail_from="", helo="[192.0.2.25]")
    assert literal.result == "none"


async def test_spf_odd_senders() -> None:
    records = {
        ("TXT", "example.com"): ["v=spf1 ip4:192.0.2.0/24 -all"],
        ("TXT", "xn--bcher-kva.example"): ["v=spf1 ip4:192.0.2.0/24 -all"],
    }
    assert (await spf_of(records, "192.0.2.1", "<alice@Example.COM>")).result == "pass"
    idn = await spf_of(records, "192.0.2.1", "jörg@bücher.example")
    assert (idn.result, idn.domain) == ("pass", "xn--bcher-kva.example")
    assert (await spf_of(records, "192.0.2.1", "alice@[192.0.2.1]")).result == "none"
    assert (await spf_of(records, "192.0.2.1", "alice@localhost")).result == "none"
    assert (await spf_of(records, "not an ip")).result == "permerror"


async def test_spf_checks_run_concurrently() -> None:
    records = {
        ("TXT", "example.com"): ["v=spf1 include:a.test include:b.test -all"],
        ("TXT", "a.test"): ["v=spf1 ip4:192.0.2.0/25 -all"],
        ("TXT", "b.test"): ["v=spf1 mx:b.test -all"],
        ("MX", "b.test"): [(10, "mx.b.test")],
        ("A", "mx.b.test"): ["192.0.2.200"],
    }
    resolver = StaticResolver(records)
    ips = [f"192.0.2.{n}" for n in range(0, 250, 10)]
    results = await asyncio.gather(
        *(
            check_spf(resolver, client_ip=ip, helo="h.test", mail_from="a@example.com")
            for ip in ips
        )
    )
    expected = [
        "pass" if int(ip.rsplit(".", 1)[1]) < 128 or ip == "192.0.2.200" else "fail"
        for ip in ips
    ]
    assert [r.result for r in results] == expected


class SlowResolver(StaticResolver):
    """TXT lookups never finish; notes when one is cancelled."""

    def __init__(self) -> None:
        super().__init__({})
        self.cancelled = asyncio.Event()

    async def txt(self, name: str) -> list[str]:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return []


async def test_spf_time_limit_gives_temperror() -> None:
    resolver = SlowResolver()
    started = time.monotonic()
    result = await check_spf(
        resolver,
        client_ip="192.0.2.1",
        helo="h.test",
        mail_from="a@example.com",
        time_limit=0.3,
    )
    assert result.result == "temperror"
    assert time.monotonic() - started < 5
    await asyncio.wait_for(resolver.cancelled.wait(), 5)


async def test_spf_cancellation_stops_the_worker() -> None:
    resolver = SlowResolver()
    task = asyncio.create_task(
        check_spf(
            resolver, client_ip="192.0.2.1", helo="h.test", mail_from="a@example.com"
        )
    )
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(resolver.cancelled.wait(), 5)


# ---------------------------------------------------------------------------
# DKIM


async def test_dkim_pass(key: tuple[bytes, str]) -> None:
    private, record = key
    resolver = StaticResolver({("TXT", "sel._domainkey.example.com"): [record]})
    results = await check_dkim(resolver, sign(MESSAGE, private))
    assert results == (DkimSignatureResult("pass", "example.com", "sel", ""),)


async def test_dkim_pass_with_bare_lf_and_split_key_record(
    key: tuple[bytes, str],
) -> None:
    private, record = key
    lf_message = MESSAGE.replace(b"\r\n", b"\n")
    signed = (
        dkim.sign(lf_message, b"sel", b"example.com", private, linesep=b"\n")
        + lf_message
    )
    resolver = StaticResolver({("TXT", "sel._domainkey.example.com"): [record]})
    assert [r.result for r in await check_dkim(resolver, signed)] == ["pass"]


async def test_dkim_tampered_body_and_header_fail(key: tuple[bytes, str]) -> None:
    private, record = key
    resolver = StaticResolver({("TXT", "sel._domainkey.example.com"): [record]})
    signed = sign(MESSAGE, private)
    body = await check_dkim(
        resolver, signed.replace(b"this is a test", b"this is a trap")
    )
    assert [(r.result, r.explanation) for r in body] == [("fail", "body hash mismatch")]
    header = await check_dkim(
        resolver, signed.replace(b"Subject: Hello", b"Subject: Hellx")
    )
    assert [r.result for r in header] == ["fail"]


async def test_dkim_wrong_key_fails(
    key: tuple[bytes, str], other_key: tuple[bytes, str]
) -> None:
    resolver = StaticResolver({("TXT", "sel._domainkey.example.com"): [other_key[1]]})
    assert [r.result for r in await check_dkim(resolver, sign(MESSAGE, key[0]))] == [
        "fail"
    ]


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (None, "permerror"),  # no key published
        (TEMPFAIL, "temperror"),
        (BROKEN, "permerror"),
        (["v=DKIM1; k=rsa; p="], "permerror"),  # revoked
        (["v=DKIM1; k=rsa; p=bm90IGEga2V5"], "permerror"),  # garbage
        (["v=DKIM2; p=AAAA"], "permerror"),
    ],
)
async def test_dkim_key_problems(
    key: tuple[bytes, str], record: Any, expected: str
) -> None:
    records = {} if record is None else {("TXT", "sel._domainkey.example.com"): record}
    results = await check_dkim(StaticResolver(records), sign(MESSAGE, key[0]))
    assert [(r.result, r.domain, r.selector) for r in results] == [
        (expected, "example.com", "sel")
    ]
    assert results[0].explanation


async def test_dkim_ed25519_without_pynacl_is_permerror_or_verified() -> None:
    signature = (
        b"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/simple; d=example.com;"
        b" s=ed; h=from:to:subject; bh=AAAA; b=AAAA\r\n"
    )
    resolver = StaticResolver(
        {("TXT", "ed._domainkey.example.com"): ["v=DKIM1; k=ed25519; p=" + "A" * 44]}
    )
    results = await check_dkim(resolver, signature + MESSAGE)
    assert [(r.result, r.selector) for r in results] in (
        [("permerror", "ed")],  # pynacl not installed
        [("fail", "ed")],
    )


async def test_dkim_no_signature() -> None:
    assert await check_dkim(StaticResolver({}), MESSAGE) == ()


async def test_dkim_several_signatures(
    key: tuple[bytes, str], other_key: tuple[bytes, str]
) -> None:
    inner = sign(MESSAGE, key[0])
    outer = sign(inner, other_key[0], domain="esp.test", selector="s2024")
    resolver = StaticResolver(
        {
            ("TXT", "sel._domainkey.example.com"): [key[1]],
            ("TXT", "s2024._domainkey.esp.test"): [other_key[1]],
        }
    )
    results = await check_dkim(resolver, outer)
    assert [(r.result, r.domain, r.selector) for r in results] == [
        ("pass", "esp.test", "s2024"),
        ("pass", "example.com", "sel"),
    ]


async def test_dkim_at_most_five_signatures(key: tuple[bytes, str]) -> None:
    message = MESSAGE
    for n in range(8):
        message = sign(message, key[0], selector=f"s{n}")
    resolver = StaticResolver(
        {("TXT", f"s{n}._domainkey.example.com"): [key[1]] for n in range(8)}
    )
    results = await check_dkim(resolver, message)
    assert len(results) == authentication.MAX_DKIM_SIGNATURES
    assert [r.selector for r in results] == ["s7", "s6", "s5", "s4", "s3"]


@pytest.mark.parametrize(
    "signature",
    [
        b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=sel; h=from; bh=AAAA\r\n",
        b"DKIM-Signature: garbage without tags\r\n",
        b"DKIM-Signature: v=1; a=rsa-md5; d=example.com; s=sel; h=from; bh=AAAA; b=AAAA\r\n",
        b"DKIM-Signature: v=1; a=rsa-sha256; d=ex(a)mple.com; s=sel; h=from; bh=AAAA; b=AAAA\r\n",
        b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=s/x; h=from; bh=AAAA; b=AAAA\r\n",
        (
            b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=sel; h=from; bh=AAAA;"
            b" b=AAAA; x=1000\r\n"
        ),
        b"DKIM-Signature: v=1; a=rsa-sha256; d=\xff\xfe.com; s=sel; h=from; bh=AAAA; b=AAAA\r\n",
    ],
)
async def test_dkim_malformed_signatures_are_permerror(signature: bytes) -> None:
    resolver = StaticResolver({})
    results = await check_dkim(resolver, signature + MESSAGE)
    assert [r.result for r in results] == ["permerror"]
    assert resolver.queries == []  # nothing was looked up for a broken signature


async def test_dkim_unparseable_message_never_raises() -> None:
    raw = b" continuation first\r\nDKIM-Signature: v=1; d=example.com\r\n\r\nbody\r\n"
    results = await check_dkim(StaticResolver({}), raw)
    assert [r.result for r in results] == ["permerror"]
    assert await check_dkim(StaticResolver({}), b"") == ()
    assert await check_dkim(StaticResolver({}), b"\x00\xff" * 100) == ()


# ---------------------------------------------------------------------------
# DMARC

SPF_PASS = SpfResult("pass", "example.com", "", "mailfrom", "alice@example.com")
SPF_FAIL = SpfResult("fail", "example.com", "", "mailfrom", "alice@example.com")


def dkim_pass(domain: str) -> tuple[DkimSignatureResult, ...]:
    return (DkimSignatureResult("pass", domain, "sel"),)


async def dmarc_of(
    records: dict[tuple[str, str], Any],
    from_domain: str | None = "example.com",
    spf_result: SpfResult = SPF_FAIL,
    dkim_results: tuple[DkimSignatureResult, ...] = (),
    **kwargs: Any,
) -> DmarcResult:
    return await check_dmarc(
        StaticResolver(records),
        header_from_domain=from_domain,
        spf=spf_result,
        dkim=dkim_results,
        **kwargs,
    )


REJECT = {
    ("TXT", "_dmarc.example.com"): ["v=DMARC1; p=reject; rua=mailto:d@example.com"]
}


async def test_dmarc_pass_via_spf_alignment() -> None:
    result = await dmarc_of(REJECT, spf_result=SPF_PASS)
    assert result == DmarcResult("pass", "example.com", "reject", True, False, "")


async def test_dmarc_pass_via_dkim_alignment() -> None:
    result = await dmarc_of(REJECT, dkim_results=dkim_pass("example.com"))
    assert (result.result, result.spf_aligned, result.dkim_aligned) == (
        "pass",
        False,
        True,
    )


async def test_dmarc_fail_with_p_reject() -> None:
    failed_dkim = (DkimSignatureResult("fail", "example.com", "sel"),)
    result = await dmarc_of(REJECT, dkim_results=failed_dkim)
    assert (result.result, result.policy) == ("fail", "reject")
    unaligned = await dmarc_of(
        REJECT,
        spf_result=SpfResult("pass", "esp.test", "", "mailfrom", "bounce@esp.test"),
        dkim_results=dkim_pass("esp.test"),
    )
    assert (unaligned.result, unaligned.spf_aligned, unaligned.dkim_aligned) == (
        "fail",
        False,
        False,
    )


async def test_dmarc_relaxed_and_strict_alignment() -> None:
    sub_spf = SpfResult(
        "pass", "bounces.example.com", "", "mailfrom", "b@bounces.example.com"
    )
    relaxed = {("TXT", "_dmarc.example.com"): ["v=DMARC1; p=reject"]}
    strict = {("TXT", "_dmarc.example.com"): ["v=DMARC1; p=reject; aspf=s; adkim=s"]}
    assert (await dmarc_of(relaxed, spf_result=sub_spf)).result == "pass"
    assert (await dmarc_of(strict, spf_result=sub_spf)).result == "fail"
    sub_dkim = dkim_pass("mail.example.com")
    assert (await dmarc_of(relaxed, dkim_results=sub_dkim)).result == "pass"
    assert (await dmarc_of(strict, dkim_results=sub_dkim)).result == "fail"
    assert (
        await dmarc_of(strict, dkim_results=dkim_pass("example.com"))
    ).result == "pass"
    # Relaxed alignment still needs the same organizational domain.
    assert (
        await dmarc_of(relaxed, dkim_results=dkim_pass("example.co.uk"))
    ).result == "fail"


async def test_dmarc_subdomain_policy() -> None:
    records = {("TXT", "_dmarc.example.com"): ["v=DMARC1; p=none; sp=reject"]}
    sub = await dmarc_of(records, from_domain="news.example.com")
    assert (sub.result, sub.policy, sub.domain) == (
        "fail",
        "reject",
        "news.example.com",
    )
    top = await dmarc_of(records, from_domain="example.com")
    assert (top.result, top.policy) == ("fail", "none")
    # A record at the subdomain itself wins, and its p= applies.
    own = {**records, ("TXT", "_dmarc.news.example.com"): ["v=DMARC1; p=quarantine"]}
    assert (await dmarc_of(own, from_domain="news.example.com")).policy == "quarantine"
    # Without sp=, a subdomain gets the organizational domain's p=.
    plain = {("TXT", "_dmarc.example.com"): ["v=DMARC1; p=quarantine"]}
    assert (await dmarc_of(plain, from_domain="a.b.example.com")).policy == "quarantine"


async def test_dmarc_no_record_is_none() -> None:
    result = await dmarc_of({}, spf_result=SPF_PASS)
    assert result == DmarcResult(
        "none", "example.com", "none", True, False, "no DMARC record"
    )
    not_dmarc = {("TXT", "_dmarc.example.com"): ["v=spf1 -all", "hello"]}
    assert (await dmarc_of(not_dmarc)).result == "none"
    two = {("TXT", "_dmarc.example.com"): ["v=DMARC1; p=reject", "v=DMARC1; p=none"]}
    assert (await dmarc_of(two)).result == "none"


async def test_dmarc_no_from_domain_is_none() -> None:
    result = await dmarc_of(REJECT, from_domain=None, spf_result=SPF_PASS)
    assert (result.result, result.domain, result.policy) == ("none", "", "none")


async def test_dmarc_record_parsing() -> None:
    no_policy = {("TXT", "_dmarc.example.com"): ["v=DMARC1; p=bogus"]}
    assert (await dmarc_of(no_policy)).result == "none"
    with_rua = {
        ("TXT", "_dmarc.example.com"): ["v=DMARC1; p=bogus; rua=mailto:r@example.com"]
    }
    assert ((r := await dmarc_of(with_rua)).result, r.policy) == ("fail", "none")
    spaced = {("TXT", "_dmarc.example.com"): ["v = DMARC1 ;P=Reject;  adkim = s ;"]}
    result = await dmarc_of(spaced, dkim_results=dkim_pass("mail.example.com"))
    assert (result.result, result.policy) == ("fail", "reject")
    lowercase_version = {("TXT", "_dmarc.example.com"): ["v=dmarc1; p=reject"]}
    assert (await dmarc_of(lowercase_version)).result == "none"


async def test_dmarc_pct_sampling() -> None:
    half = {("TXT", "_dmarc.example.com"): ["v=DMARC1; p=reject; pct=50"]}
    assert (await dmarc_of(half, sample=lambda: 10)).policy == "reject"
    assert (await dmarc_of(half, sample=lambda: 70)).policy == "quarantine"
    zero = {("TXT", "_dmarc.example.com"): ["v=DMARC1; p=quarantine; pct=0"]}
    assert (await dmarc_of(zero)).policy == "none"
    # Sampling applies to failing mail only.
    assert (
        await dmarc_of(half, spf_result=SPF_PASS, sample=lambda: 99)
    ).policy == "reject"


async def test_dmarc_dns_errors_are_temperror() -> None:
    result = await dmarc_of(
        {("TXT", "_dmarc.example.com"): TEMPFAIL}, spf_result=SPF_PASS
    )
    assert (result.result, result.policy, result.spf_aligned) == (
        "temperror",
        "none",
        True,
    )
    sub = {
        ("TXT", "_dmarc.news.example.com"): [],
        ("TXT", "_dmarc.example.com"): TEMPFAIL,
    }
    assert (await dmarc_of(sub, from_domain="news.example.com")).result == "temperror"


async def test_dmarc_aligned_temperror_is_not_fail() -> None:
    spf_temp = SpfResult("temperror", "example.com", "", "mailfrom", "a@example.com")
    assert (await dmarc_of(REJECT, spf_result=spf_temp)).result == "temperror"
    dkim_temp = (DkimSignatureResult("temperror", "example.com", "sel"),)
    assert (await dmarc_of(REJECT, dkim_results=dkim_temp)).result == "temperror"
    other_temp = (DkimSignatureResult("temperror", "esp.test", "sel"),)
    assert (await dmarc_of(REJECT, dkim_results=other_temp)).result == "fail"


async def test_dmarc_looks_up_the_organizational_domain() -> None:
    resolver = StaticResolver(
        {("TXT", "_dmarc.example.co.uk"): ["v=DMARC1; p=reject; sp=quarantine"]}
    )
    result = await check_dmarc(
        resolver,
        header_from_domain="Mail.Example.CO.UK.",
        spf=SpfResult("pass", "example.co.uk", "", "mailfrom", "a@example.co.uk"),
        dkim=(),
    )
    assert (result.result, result.domain, result.policy) == (
        "pass",
        "mail.example.co.uk",
        "quarantine",
    )
    assert resolver.queries == [
        ("TXT", "_dmarc.mail.example.co.uk"),
        ("TXT", "_dmarc.example.co.uk"),
    ]


@pytest.mark.parametrize(
    ("domain", "organizational"),
    [
        ("example.com", "example.com"),
        ("a.b.example.com", "example.com"),
        ("mail.example.co.uk", "example.co.uk"),
        ("example.co.uk", "example.co.uk"),
        ("co.uk", "co.uk"),
        ("www.example.com.au.", "example.com.au"),
        ("Deep.Sub.Example.CO.JP", "example.co.jp"),
        ("alice.github.io", "alice.github.io"),
        ("localhost", "localhost"),
        ("com", "com"),
    ],
)
def test_organizational_domain(domain: str, organizational: str) -> None:
    assert organizational_domain(domain) == organizational


# ---------------------------------------------------------------------------
# The header From


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"From: alice@example.com\r\n", ("ok", "example.com")),
        (b"From: Alice <alice@Example.COM.>\r\n", ("ok", "example.com")),
        (b'From: "bob@bank.example" <alice@example.com>\r\n', ("ok", "example.com")),
        (
            b"From: alice@example.com (Bob <bob@bank.example>)\r\n",
            ("ok", "example.com"),
        ),
        (b'From: "odd@local"@example.com\r\n', ("ok", "example.com")),
        (b"From: Alice\r\n  <alice@example.com>\r\n", ("ok", "example.com")),
        (b"From : alice@example.com\r\n", ("ok", "example.com")),
        (
            b"From: =?utf-8?q?J=C3=B6rg?= <j@b\xc3\xbccher.example>\r\n",
            ("ok", "xn--bcher-kva.example"),
        ),
        (b"From: a@example.com, b@example.com\r\n", ("ok", "example.com")),
        (b"From: a@example.com, b@bank.example\r\n", ("permerror", None)),
        (b"From: a@example.com\r\nFrom: a@example.com\r\n", ("permerror", None)),
        (b"From: Undisclosed:;\r\n", ("permerror", None)),
        (b"From: alice\r\n", ("permerror", None)),
        (b"From: alice@[192.0.2.1]\r\n", ("permerror", None)),
        (b'From: "unterminated <a@example.com>\r\n', ("permerror", None)),
        (b"From: <a@example.com> <b@bank.example>\r\n", ("permerror", None)),
        (b"From: \r\n", ("permerror", None)),
        (b"Sender: a@example.com\r\n", ("none", None)),
    ],
)
def test_parse_header_from(header: bytes, expected: tuple[str, str | None]) -> None:
    raw = (
        b"To: x@example.org\r\n"
        + header
        + b"Subject: s\r\n\r\nFrom: body@not.header\r\n"
    )
    assert parse_header_from(raw) == expected


def test_parse_header_from_without_headers() -> None:
    assert parse_header_from(b"\r\nFrom: a@example.com\r\n") == ("none", None)
    assert parse_header_from(b"") == ("none", None)


# ---------------------------------------------------------------------------
# authenticate() and the Authentication-Results header


def _world(key: tuple[bytes, str]) -> StaticResolver:
    return StaticResolver(
        {
            ("TXT", "example.com"): ["v=spf1 ip4:192.0.2.0/24 -all"],
            ("TXT", "sel._domainkey.example.com"): [key[1]],
            ("TXT", "_dmarc.example.com"): ["v=DMARC1; p=reject"],
        }
    )


def parse_header(text: str) -> tuple[str, list[tuple[str, str, dict[str, str]]]]:
    """Loosely parse an Authentication-Results field: (authserv-id, [(method,
    result, properties)])."""
    assert text.endswith("\r\n")
    assert "\r\n" not in text[:-2].replace("\r\n\t", "").replace("\r\n ", "")
    for line in text[:-2].split("\r\n"):
        # Folded at every space it can be: a longer line is one unbreakable value.
        assert len(line) <= 78 or " " not in line.strip()
    name, _, value = text[:-2].replace("\r\n", "").partition(":")
    assert name == "Authentication-Results"
    # Split on ';' outside quoted strings and comments.
    pieces, current, quoted, escaped, depth = [], "", False, False, 0
    for c in value:
        if escaped:
            escaped = False
        elif c == "\\" and quoted:
            escaped = True
        elif c == '"' and not depth:
            quoted = not quoted
        elif c == "(" and not quoted:
            depth += 1
        elif c == ")" and not quoted:
            depth -= 1
        if c == ";" and not quoted and not depth:
            pieces.append(current)
            current = ""
        else:
            current += c
    assert not quoted and not depth
    pieces.append(current)
    authserv_id = pieces[0].strip()
    results = []
    for piece in pieces[1:]:
        piece = re.sub(r"^([^\"]*?)\([^)]*\)", r"\1 ", piece.strip()).strip()
        tokens = re.findall(r'[^\s=]+=(?:"(?:[^"\\]|\\.)*"|[^\s"]+)', piece)
        assert " ".join(tokens) == " ".join(piece.split()), piece
        method, _, result = tokens[0].partition("=")
        props = dict(token.split("=", 1) for token in tokens[1:])
        results.append((method, result, props))
    return authserv_id, results


async def test_authenticate_all_pass(key: tuple[bytes, str]) -> None:
    raw = sign(MESSAGE, key[0])
    results = await authenticate(
        _world(key),
        raw,
        client_ip="192.0.2.7",
        helo="mail.example.com",
        mail_from="alice@example.com",
    )
    assert results.spf.result == "pass"
    assert [r.result for r in results.dkim] == ["pass"]
    assert results.dmarc == DmarcResult("pass", "example.com", "reject", True, True, "")
    assert results.header_from_domain == "example.com"
    header = results.header("mx.postern.test")
    assert parse_header(header) == (
        "mx.postern.test",
        [
            ("spf", "pass", {"smtp.mailfrom": "alice@example.com"}),
            ("dkim", "pass", {"header.d": "example.com", "header.s": "sel"}),
            ("dmarc", "pass", {"header.from": "example.com"}),
        ],
    )
    assert "dmarc=pass (p=reject) header.from=example.com" in header


async def test_authenticate_forged_mail(
    key: tuple[bytes, str], other_key: tuple[bytes, str]
) -> None:
    forged = sign(
        MESSAGE, other_key[0]
    )  # signed with a key example.com did not publish
    results = await authenticate(
        _world(key),
        forged,
        client_ip="203.0.113.66",
        helo="evil.test",
        mail_from="alice@example.com",
    )
    assert (results.spf.result, results.dkim[0].result, results.dmarc.result) == (
        "fail",
        "fail",
        "fail",
    )
    assert results.dmarc.policy == "reject"
    _, parsed = parse_header(results.header("mx.postern.test"))
    assert [(method, result) for method, result, _ in parsed] == [
        ("spf", "fail"),
        ("dkim", "fail"),
        ("dmarc", "fail"),
    ]


async def test_authenticate_unsigned_null_sender_without_from() -> None:
    raw = b"To: x@example.org\r\nSubject: bounce\r\n\r\nbody\r\n"
    results = await authenticate(
        StaticResolver({}), raw, client_ip="192.0.2.1", helo="h.test", mail_from=""
    )
    assert results.header_from_domain is None
    assert (results.spf.result, results.dkim, results.dmarc.result) == (
        "none",
        (),
        "none",
    )
    # Short enough for one line.
    assert results.header("mx") == (
        "Authentication-Results: mx; spf=none smtp.helo=h.test; dkim=none; dmarc=none\r\n"
    )
    # Longer: one result per line.
    header = results.header("mx.postern.test")
    assert header == (
        "Authentication-Results: mx.postern.test;\r\n"
        "\tspf=none smtp.helo=h.test;\r\n"
        "\tdkim=none;\r\n"
        "\tdmarc=none\r\n"
    )
    assert parse_header(header) == (
        "mx.postern.test",
        [
            ("spf", "none", {"smtp.helo": "h.test"}),
            ("dkim", "none", {}),
            ("dmarc", "none", {}),
        ],
    )


async def test_authenticate_multiple_from_is_permerror(key: tuple[bytes, str]) -> None:
    raw = b"From: a@example.com\r\nFrom: b@bank.example\r\n" + MESSAGE
    results = await authenticate(
        _world(key),
        raw,
        client_ip="192.0.2.7",
        helo="h.test",
        mail_from="alice@example.com",
    )
    assert results.spf.result == "pass"
    assert (results.dmarc.result, results.header_from_domain) == ("permerror", None)
    assert ("dmarc", "permerror", {}) in parse_header(
        results.header("mx.postern.test")
    )[1]


async def test_authenticate_never_raises_on_hostile_input() -> None:
    resolver = StaticResolver({})
    for raw in (
        b"",
        b"\x00" * 50,
        b"DKIM-Signature:\r\n\r\n",
        b"From: <<<@@@>>>\r\n\r\n",
        b"\n\n\n",
    ):
        results = await authenticate(
            resolver, raw, client_ip="192.0.2.1", helo="", mail_from=""
        )
        parse_header(results.header("mx.postern.test"))
        json.dumps(results.to_json())


async def test_header_values_are_quoted_and_cannot_inject() -> None:
    results = AuthenticationResults(
        spf=SpfResult(
            "fail", "example.com", "", "mailfrom", '"a;b dkim=pass"@example.com'
        ),
        dkim=(DkimSignatureResult("permerror", "example.com", "x\r\nX-Evil: 1"),),
        dmarc=DmarcResult("fail", "example.com", "reject", False, False),
        header_from_domain="example.com",
    )
    header = results.header("mx\r\n.postern.test")
    assert "\r\nX-Evil" not in header
    authserv_id, parsed = parse_header(header)
    assert authserv_id == "mx.postern.test"
    assert [(method, result) for method, result, _ in parsed] == [
        ("spf", "fail"),
        ("dkim", "permerror"),
        ("dmarc", "fail"),
    ]
    assert parsed[0][2]["smtp.mailfrom"].startswith('"')


async def test_long_header_is_folded(
    key: tuple[bytes, str], other_key: tuple[bytes, str]
) -> None:
    long_domain = "a-rather-long-subdomain-name-for-folding.mail.example.com"
    results = AuthenticationResults(
        spf=SpfResult(
            "pass", long_domain, "", "mailfrom", f"bounces+1234567890@{long_domain}"
        ),
        dkim=tuple(
            DkimSignatureResult("pass", long_domain, f"selector{n}") for n in range(3)
        ),
        dmarc=DmarcResult("pass", long_domain, "quarantine", True, True),
        header_from_domain=long_domain,
    )
    header = results.header("mx.postern.test")
    assert header.count("\r\n") > 4
    _, parsed = parse_header(header)
    assert len(parsed) == 5
    assert parsed[0][2]["smtp.mailfrom"] == f"bounces+1234567890@{long_domain}"


async def test_json_round_trip(key: tuple[bytes, str]) -> None:
    results = await authenticate(
        _world(key),
        sign(MESSAGE, key[0]),
        client_ip="192.0.2.7",
        helo="h.test",
        mail_from="alice@example.com",
    )
    data = json.loads(json.dumps(results.to_json()))
    assert data["dmarc"]["result"] == "pass"
    assert data["dkim"][0]["domain"] == "example.com"
    assert AuthenticationResults.from_json(data) == results
