"""DNS lookups behind one small interface.

Everything in postern that needs DNS (SPF, DKIM and DMARC on incoming mail, MX
lookups for the outbound queue) asks a :class:`Resolver`.  Production uses
:class:`DnsPythonResolver` (dnspython's asyncio stub resolver); tests and operators'
overrides use :class:`StaticResolver`, a table in memory.  No test ever reaches the
network.

The answers are plain Python values:

* ``txt(name)``: one string per TXT record, its character-strings joined (a TXT
  record's bytes are decoded as UTF-8; bytes that are not UTF-8 become U+FFFD, which
  every consumer — SPF, DKIM, DMARC — then treats as a broken record).
* ``mx(name)``: ``(preference, host)`` sorted by preference, hosts lowercased without
  the trailing dot; a null MX (RFC 7505, ``0 .``) is ``(0, "")``.
* ``a``/``aaaa``: address strings; ``ptr(ip)``: host names without the trailing dot.

A name that does not exist (NXDOMAIN) or has no record of the type (NODATA) is
``[]``.  Anything else raises :class:`DnsError`: ``temporary=True`` for a server
failure, a timeout or no usable name server (try again later), ``temporary=False``
for a question or an answer that can never work (a malformed name, a broken answer).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver
import dns.reversename

__all__ = ["DnsError", "DnsPythonResolver", "Resolver", "StaticResolver"]


class DnsError(Exception):
    """A lookup that gave no usable answer.

    ``temporary`` is true for SERVFAIL, timeouts and unreachable servers, false for
    a malformed question or answer.
    """

    def __init__(self, message: str = "DNS lookup failed", temporary: bool = True) -> None:
        super().__init__(message)
        self.temporary = temporary

    def __repr__(self) -> str:
        return f"DnsError({str(self)!r}, temporary={self.temporary})"


@runtime_checkable
class Resolver(Protocol):
    """The lookups postern needs.  NXDOMAIN and NODATA are ``[]``; failures raise
    :class:`DnsError`."""

    async def txt(self, name: str) -> list[str]: ...

    async def mx(self, name: str) -> list[tuple[int, str]]: ...

    async def a(self, name: str) -> list[str]: ...

    async def aaaa(self, name: str) -> list[str]: ...

    async def ptr(self, ip: str) -> list[str]: ...

    async def srv(self, name: str) -> list[tuple[int, int, int, str]]: ...


def _normalise_name(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _decode_txt(strings: Sequence[bytes]) -> str:
    return b"".join(strings).decode("utf-8", errors="replace")


def _host(name: dns.name.Name) -> str:
    if name == dns.name.root:
        return ""
    return name.to_text(omit_final_dot=True).lower()


def _sort_mx(records: Sequence[tuple[int, str]]) -> list[tuple[int, str]]:
    cleaned = [(int(pref), _normalise_name(host)) for pref, host in records]
    # Stable on equal preferences: the order of the answer is kept.
    return sorted(cleaned, key=lambda record: record[0])


class DnsPythonResolver:
    """dnspython's asyncio stub resolver.

    ``nameservers`` None reads the system configuration (``/etc/resolv.conf``);
    otherwise the given addresses are asked on ``port``.  ``timeout`` bounds each
    lookup as a whole (all servers and retries).  Answers are cached in memory for
    their TTL.
    """

    def __init__(self, nameservers: list[str] | None = None, port: int = 53, timeout: float = 5.0) -> None:
        self._config_error: str | None = None
        if nameservers is None:
            try:
                resolver = dns.asyncresolver.Resolver(configure=True)
            except (dns.resolver.NoResolverConfiguration, OSError) as exc:
                resolver = dns.asyncresolver.Resolver(configure=False)
                self._config_error = f"no DNS resolver configuration: {exc}"
        else:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = list(nameservers)
            if not nameservers:
                self._config_error = "no DNS name servers configured"
        resolver.port = port
        resolver.timeout = timeout
        resolver.lifetime = timeout
        resolver.cache = dns.resolver.LRUCache(50_000)
        self._resolver = resolver

    async def _query(self, name: str | dns.name.Name, rdtype: str) -> Any:
        """The answer's rrset, or None for NXDOMAIN/NODATA."""
        if self._config_error is not None:
            raise DnsError(self._config_error, temporary=True)
        try:
            qname = name if isinstance(name, dns.name.Name) else dns.name.from_text(name)
        except (dns.exception.DNSException, ValueError, UnicodeError) as exc:
            raise DnsError(f"invalid name {name!r}: {exc}", temporary=False) from exc
        try:
            answer = await self._resolver.resolve(qname, rdtype, raise_on_no_answer=False, search=False)
        except dns.resolver.NXDOMAIN:
            return None
        except dns.resolver.NoAnswer:  # raise_on_no_answer=False, but be sure
            return None
        except dns.exception.Timeout as exc:
            raise DnsError(f"{rdtype} {qname}: timeout", temporary=True) from exc
        except dns.resolver.NoNameservers as exc:
            raise DnsError(f"{rdtype} {qname}: no server answered: {exc}", temporary=True) from exc
        except dns.resolver.NoResolverConfiguration as exc:
            raise DnsError(f"{rdtype} {qname}: {exc}", temporary=True) from exc
        except dns.resolver.YXDOMAIN as exc:
            raise DnsError(f"{rdtype} {qname}: {exc}", temporary=False) from exc
        except dns.exception.DNSException as exc:
            raise DnsError(f"{rdtype} {qname}: {exc}", temporary=False) from exc
        except (OSError, EOFError) as exc:
            raise DnsError(f"{rdtype} {qname}: {exc}", temporary=True) from exc
        return answer.rrset

    async def txt(self, name: str) -> list[str]:
        rrset = await self._query(name, "TXT")
        return [] if rrset is None else [_decode_txt(rdata.strings) for rdata in rrset]

    async def mx(self, name: str) -> list[tuple[int, str]]:
        rrset = await self._query(name, "MX")
        if rrset is None:
            return []
        return sorted(
            ((int(rdata.preference), _host(rdata.exchange)) for rdata in rrset),
            key=lambda record: record[0],
        )

    async def a(self, name: str) -> list[str]:
        rrset = await self._query(name, "A")
        return [] if rrset is None else [rdata.address for rdata in rrset]

    async def aaaa(self, name: str) -> list[str]:
        rrset = await self._query(name, "AAAA")
        return [] if rrset is None else [rdata.address for rdata in rrset]

    async def ptr(self, ip: str) -> list[str]:
        try:
            qname = dns.reversename.from_address(ip)
        except (ValueError, dns.exception.DNSException) as exc:
            raise DnsError(f"invalid address {ip!r}", temporary=False) from exc
        rrset = await self._query(qname, "PTR")
        return [] if rrset is None else [_host(rdata.target) for rdata in rrset]

    async def srv(self, name: str) -> list[tuple[int, int, int, str]]:
        """(priority, weight, port, target) of each SRV record, by priority."""
        rrset = await self._query(name, "SRV")
        if rrset is None:
            return []
        return sorted((int(r.priority), int(r.weight), int(r.port), _host(r.target)) for r in rrset)


class StaticResolver:
    """Answers from a table: ``{(rtype, name): [values]}``.

    ``rtype`` is ``TXT``, ``MX``, ``A``, ``AAAA``, ``SRV`` or ``PTR`` (any case); ``name`` is
    matched without case and without a trailing dot.  PTR entries are keyed by the
    IP address (``("PTR", "192.0.2.1")``) or by the reverse name
    (``("PTR", "1.2.0.192.in-addr.arpa")``).  A missing entry is NXDOMAIN (``[]``);
    a :class:`DnsError` instance as the value is raised.  ``queries`` records every
    question asked, as ``(rtype, name)``, for tests.
    """

    def __init__(self, records: Mapping[tuple[str, str], Any] | None = None) -> None:
        self._records: dict[tuple[str, str], Any] = {}
        for (rtype, name), value in (records or {}).items():
            self._records[(rtype.upper(), _normalise_name(name))] = value
        self.queries: list[tuple[str, str]] = []

    def set(self, rtype: str, name: str, value: Any) -> None:
        """Add or replace an answer (tests publish records as they go)."""
        self._records[(rtype.upper(), _normalise_name(name))] = value

    def _lookup(self, rtype: str, name: str) -> list[Any]:
        key = (rtype, _normalise_name(name))
        self.queries.append(key)
        value = self._records.get(key, [])
        if isinstance(value, DnsError):
            raise value
        return list(value)

    async def txt(self, name: str) -> list[str]:
        return [str(value) for value in self._lookup("TXT", name)]

    async def mx(self, name: str) -> list[tuple[int, str]]:
        return _sort_mx(self._lookup("MX", name))

    async def a(self, name: str) -> list[str]:
        return [str(value) for value in self._lookup("A", name)]

    async def aaaa(self, name: str) -> list[str]:
        return [str(value) for value in self._lookup("AAAA", name)]

    async def srv(self, name: str) -> list[tuple[int, int, int, str]]:
        return sorted((int(p), int(w), int(port), _normalise_name(str(t))) for p, w, port, t in self._lookup("SRV", name))

    async def ptr(self, ip: str) -> list[str]:
        try:
            address = ipaddress.ip_address(ip.strip())
        except ValueError as exc:
            raise DnsError(f"invalid address {ip!r}", temporary=False) from exc
        by_address = ("PTR", address.compressed)
        by_name = ("PTR", address.reverse_pointer)
        key = by_address if by_address in self._records else by_name
        return [_normalise_name(str(value)) for value in self._lookup(*key)]
