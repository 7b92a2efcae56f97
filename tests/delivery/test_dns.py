"""The resolvers: StaticResolver from a table, DnsPythonResolver against a small DNS
server on 127.0.0.1 written here with dnspython's message API (no internet)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from postern.delivery.dns import DnsError, DnsPythonResolver, Resolver, StaticResolver

# ---------------------------------------------------------------------------
# StaticResolver


async def test_static_resolver_answers_and_normalises_names() -> None:
    resolver = StaticResolver(
        {
            ("txt", "Example.COM."): ["v=spf1 -all", "other"],
            ("MX", "example.com"): [(20, "mx2.example.com."), (10, "MX1.example.com")],
            ("A", "mx1.example.com"): ["192.0.2.1"],
            ("AAAA", "mx1.example.com"): ["2001:db8::1"],
            ("PTR", "192.0.2.1"): ["mx1.example.com."],
            (
                "PTR",
                "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
            ): ["v6.example.com"],
        }
    )
    assert isinstance(resolver, Resolver)
    assert await resolver.txt("EXAMPLE.com.") == ["v=spf1 -all", "other"]
    assert await resolver.mx("example.com") == [
        (10, "mx1.example.com"),
        (20, "mx2.example.com"),
    ]
    assert await resolver.a("mx1.example.com") == ["192.0.2.1"]
    assert await resolver.aaaa("mx1.example.com.") == ["2001:db8::1"]
    assert await resolver.ptr("192.0.2.1") == ["mx1.example.com"]
    assert await resolver.ptr("2001:db8::1") == ["v6.example.com"]
    assert ("TXT", "example.com") in resolver.queries


async def test_static_resolver_missing_is_empty_and_errors_are_raised() -> None:
    resolver = StaticResolver(
        {
            ("TXT", "broken.example"): DnsError("SERVFAIL", temporary=True),
            ("A", "bad.example"): DnsError("malformed answer", temporary=False),
        }
    )
    assert await resolver.txt("nothing.example") == []
    assert await resolver.mx("nothing.example") == []
    assert await resolver.a("nothing.example") == []
    assert await resolver.ptr("198.51.100.7") == []
    with pytest.raises(DnsError) as temporary:
        await resolver.txt("broken.example")
    assert temporary.value.temporary is True
    with pytest.raises(DnsError) as permanent:
        await resolver.a("bad.example")
    assert permanent.value.temporary is False
    with pytest.raises(DnsError) as invalid:
        await resolver.ptr("not an address")
    assert invalid.value.temporary is False


def test_dns_error_defaults_to_temporary() -> None:
    assert DnsError("timeout").temporary is True
    assert DnsError("x", False).temporary is False
    assert "temporary=False" in repr(DnsError("x", temporary=False))


# ---------------------------------------------------------------------------
# DnsPythonResolver against a local stub server

ZONE: dict[tuple[str, str], list[str]] = {
    ("example.test", "TXT"): [
        '"v=spf1 ip4:192.0.2.0/24 -all"',
        '"part one " "part two"',
    ],
    ("example.test", "MX"): ["20 mx2.example.test.", "10 MX1.example.test."],
    ("mx1.example.test", "A"): ["192.0.2.1", "192.0.2.2"],
    ("mx1.example.test", "AAAA"): ["2001:db8::1"],
    ("1.2.0.192.in-addr.arpa", "PTR"): ["mx1.example.test."],
    ("nullmx.test", "MX"): ["0 ."],
    ("binary.test", "TXT"): ['"ok\\255"'],
}
SERVFAIL = "servfail.test"
SILENT = "silent.test"


class StubServer(asyncio.DatagramProtocol):
    """Answers from ZONE; NXDOMAIN for unknown names, NODATA for known names
    without the type, SERVFAIL for SERVFAIL, nothing at all for SILENT."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.questions: list[tuple[str, str]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        rtype = dns.rdatatype.to_text(question.rdtype)
        self.questions.append((name, rtype))
        if name == SILENT:
            return
        response = dns.message.make_response(query)
        if name == SERVFAIL:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif (name, rtype) in ZONE:
            response.answer.append(
                dns.rrset.from_text(
                    question.name, 300, "IN", rtype, *ZONE[(name, rtype)]
                )
            )
        elif not any(zone_name == name for zone_name, _ in ZONE):
            response.set_rcode(dns.rcode.NXDOMAIN)
        self.transport.sendto(response.to_wire(), addr)


@pytest.fixture
async def stub() -> AsyncIterator[tuple[StubServer, int]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        StubServer, local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    try:
        yield protocol, port
    finally:
        transport.close()


async def test_dnspython_resolver_answers(stub: tuple[StubServer, int]) -> None:
    server, port = stub
    resolver = DnsPythonResolver(["127.0.0.1"], port=port, timeout=2.0)
    assert isinstance(resolver, Resolver)
    assert sorted(await resolver.txt("example.test")) == [
        "part one part two",
        "v=spf1 ip4:192.0.2.0/24 -all",
    ]
    assert await resolver.mx("example.test.") == [
        (10, "mx1.example.test"),
        (20, "mx2.example.test"),
    ]
    assert sorted(await resolver.a("mx1.example.test")) == ["192.0.2.1", "192.0.2.2"]
    assert await resolver.aaaa("mx1.example.test") == ["2001:db8::1"]
    assert await resolver.ptr("192.0.2.1") == ["mx1.example.test"]
    assert await resolver.mx("nullmx.test") == [(0, "")]
    assert await resolver.txt("binary.test") == ["ok\ufffd"]
    assert ("1.2.0.192.in-addr.arpa", "PTR") in server.questions


async def test_dnspython_resolver_nxdomain_and_nodata_are_empty(
    stub: tuple[StubServer, int],
) -> None:
    _, port = stub
    resolver = DnsPythonResolver(["127.0.0.1"], port=port, timeout=2.0)
    assert await resolver.txt("nowhere.test") == []  # NXDOMAIN
    assert await resolver.a("example.test") == []  # NODATA
    assert await resolver.mx("mx1.example.test") == []  # NODATA
    assert await resolver.ptr("198.51.100.1") == []


async def test_dnspython_resolver_servfail_is_temporary(
    stub: tuple[StubServer, int],
) -> None:
    _, port = stub
    resolver = DnsPythonResolver(["127.0.0.1"], port=port, timeout=2.0)
    with pytest.raises(DnsError) as error:
        await resolver.txt(SERVFAIL)
    assert error.value.temporary is True


async def test_dnspython_resolver_timeout_is_temporary(
    stub: tuple[StubServer, int],
) -> None:
    _, port = stub
    resolver = DnsPythonResolver(["127.0.0.1"], port=port, timeout=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(DnsError) as error:
        await resolver.a(SILENT)
    assert error.value.temporary is True
    assert loop.time() - started < 3


async def test_dnspython_resolver_bad_questions() -> None:
    resolver = DnsPythonResolver([], port=9, timeout=0.5)
    with pytest.raises(DnsError) as no_servers:
        await resolver.txt("example.test")
    assert no_servers.value.temporary is True
    resolver = DnsPythonResolver(["127.0.0.1"], port=9, timeout=0.5)
    with pytest.raises(DnsError) as bad_name:
        await resolver.txt("a" * 64 + ".example.test")
    assert bad_name.value.temporary is False
    with pytest.raises(DnsError) as bad_ip:
        await resolver.ptr("999.1.1.1")
    assert bad_ip.value.temporary is False
