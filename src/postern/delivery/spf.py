"""SPF (RFC 7208) with pyspf's evaluator. pyspf does blocking DNS through a module-level
function; instead of replacing that global (which every concurrent check would
share), each check uses a subclass of ``spf.query`` whose ``dns`` method asks our
resolver. The evaluation runs in a worker thread and every lookup is a coroutine
scheduled back on the event loop (``asyncio.run_coroutine_threadsafe``), so the loop
never blocks. The whole evaluation has a time limit (RFC 7208 4.6.4) and stops when
the caller is cancelled. A null reverse-path is checked as ``postmaster@<HELO>``."""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import logging
import threading
import time
from typing import Any

import dns.exception
import dns.name
import dns.reversename
import spf

from postern.delivery.dns import DnsError, Resolver

from .authentication_results import SPF_RESULTS, SpfResult, _clean, _dns_domain

log = logging.getLogger(__name__)


#: Total time an SPF evaluation may take, all lookups included (RFC 7208 4.6.4
#: suggests at least 20 seconds).
SPF_TIME_LIMIT = 20.0
#: DNS questions one SPF evaluation may ask.  pyspf's own limits (10 mechanisms,
#: 10 MX/PTR names each, 2 void lookups) stay well below; this is a backstop.
MAX_SPF_DNS_QUERIES = 250
#: Worker threads for SPF evaluations (see :func:`_spf_executor`).
SPF_THREADS = 32


# ---------------------------------------------------------------------------
# SPF


class _DnsBridge:
    """Lets pyspf, running in a worker thread, ask the async resolver: each lookup
    is scheduled on the event loop and waited for, within the overall deadline."""

    def __init__(self, resolver: Resolver, loop: asyncio.AbstractEventLoop, deadline: float):
        self.resolver = resolver
        self.loop = loop
        self.deadline = deadline
        self.queries = 0
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._current: concurrent.futures.Future[Any] | None = None

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            if self._current is not None:
                self._current.cancel()

    def lookup(self, name: str, qtype: str) -> list[Any]:
        remaining = self.deadline - time.monotonic()
        if self._stopped.is_set():
            raise spf.TempError("SPF evaluation abandoned")
        if remaining <= 0:
            raise spf.TempError("SPF evaluation time limit exceeded")
        self.queries += 1
        if self.queries > MAX_SPF_DNS_QUERIES:
            raise spf.PermError("too many DNS lookups")
        coro = _spf_answer(self.resolver, name, qtype)
        try:
            future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        except RuntimeError as exc:  # the loop is closed
            coro.close()
            raise spf.TempError(f"DNS {qtype} {name}: {exc}") from exc
        with self._lock:
            self._current = future
        if self._stopped.is_set():
            future.cancel()
        try:
            return future.result(timeout=remaining)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise spf.TempError(f"DNS {qtype} {name}: time limit exceeded") from exc
        except (concurrent.futures.CancelledError, asyncio.CancelledError) as exc:
            raise spf.TempError("SPF evaluation abandoned") from exc
        except DnsError as exc:
            if exc.temporary:
                raise spf.TempError(f"DNS {qtype} {name}: {exc}") from exc
            raise spf.PermError(f"DNS {qtype} {name}: {exc}") from exc
        except Exception as exc:  # a resolver bug must not crash the evaluation
            raise spf.TempError(f"DNS {qtype} {name}: {exc.__class__.__name__}") from exc
        finally:
            with self._lock:
                self._current = None


def _valid_addresses(values: list[str], version: int) -> list[str]:
    good = []
    for value in values:
        try:
            address = ipaddress.ip_address(str(value).strip())
        except ValueError:
            continue
        if address.version == version:
            good.append(address.compressed)
    return good


def _reverse_name_to_ip(name: str) -> str | None:
    try:
        return dns.reversename.to_address(dns.name.from_text(name))
    except (dns.exception.DNSException, ValueError, UnicodeError):
        return None


async def _spf_answer(resolver: Resolver, name: str, qtype: str) -> list[Any]:
    """One DNS answer in the shapes pyspf's ``dns`` method returns."""
    if qtype == "TXT":
        return [[text.encode("utf-8")] for text in await resolver.txt(name)]
    if qtype == "A":
        return _valid_addresses(await resolver.a(name), 4)
    if qtype == "AAAA":
        return _valid_addresses(await resolver.aaaa(name), 6)
    if qtype == "MX":
        return [(int(pref), str(host)) for pref, host in await resolver.mx(name)]
    if qtype == "PTR":
        ip = _reverse_name_to_ip(name)
        return [] if ip is None else [str(host) for host in await resolver.ptr(ip)]
    return []  # type SPF (99) and anything else: not asked


class _BridgedQuery(spf.query):  # type: ignore[misc]
    """pyspf's query whose every DNS question goes through a :class:`_DnsBridge`
    instead of pyspf's module-level ``DNSLookup`` (so it never touches the network
    by itself, and concurrent checks do not share anything)."""

    def __init__(self, i: str, s: str, h: str, *, bridge: _DnsBridge) -> None:
        self._bridge = bridge
        self._answers: dict[tuple[str, str], list[Any]] = {}
        super().__init__(i=i, s=s, h=h, strict=True)

    def dns(self, name: Any, qtype: str, cnames: Any = None, ignore_void: bool = False) -> list[Any]:
        # Mirrors spf.query.dns: invalid names have no data, answers are cached per
        # evaluation, and empty answers count towards the void lookup limit.  CNAMEs
        # are followed by the resolver.
        if not name:
            raise spf.PermError("empty DNS name")
        name = str(name).removesuffix(".").lower()
        if len(name) > 253 or not all(0 < len(label) < 64 for label in name.split(".")):
            return []
        key = (name, qtype)
        if key not in self._answers:
            self._answers[key] = self._bridge.lookup(name, qtype)
        result = list(self._answers[key])
        if not result and not ignore_void:
            self.void_lookups += 1
            if self.void_lookups > spf.MAX_VOID_LOOKUPS:
                raise spf.PermError(f"Void lookup limit of {spf.MAX_VOID_LOOKUPS} exceeded")
        return result


_SPF_EXECUTOR: concurrent.futures.ThreadPoolExecutor | None = None
_SPF_EXECUTOR_LOCK = threading.Lock()


def _spf_executor() -> concurrent.futures.ThreadPoolExecutor:
    """SPF evaluations spend most of their time waiting for DNS, so they get threads
    of their own: a burst of checks against slow name servers never takes the
    default executor's threads that blob writes and the like use (``to_thread``).
    Checks beyond :data:`SPF_THREADS` wait for a thread, within their time limit."""
    global _SPF_EXECUTOR
    with _SPF_EXECUTOR_LOCK:
        if _SPF_EXECUTOR is None:
            _SPF_EXECUTOR = concurrent.futures.ThreadPoolExecutor(max_workers=SPF_THREADS, thread_name_prefix="postern-spf")
        return _SPF_EXECUTOR


def _run_spf(bridge: _DnsBridge, ip: str, sender: str, helo: str) -> tuple[str, str]:
    try:
        query = _BridgedQuery(ip, sender, helo, bridge=bridge)
        result, _code, explanation = query.check()
    except spf.TempError as exc:
        return "temperror", f"SPF Temporary Error: {exc}"
    except spf.PermError as exc:
        return "permerror", f"SPF Permanent Error: {exc}"
    except Exception as exc:  # pyspf on input it did not expect
        log.debug("SPF evaluation failed", exc_info=True)
        return "permerror", f"SPF evaluation failed: {exc.__class__.__name__}"
    if result not in SPF_RESULTS:  # "ambiguous" exists only in pyspf's harsh mode
        return "permerror", f"unexpected SPF result {result!r}"
    return result, str(explanation)


def _strip_path(address: str) -> str:
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1].strip()
    return address


async def check_spf(
    resolver: Resolver,
    *,
    client_ip: str,
    helo: str,
    mail_from: str,
    time_limit: float = SPF_TIME_LIMIT,
) -> SpfResult:
    """SPF ``check_host()`` for the MAIL FROM identity (RFC 7208), or for
    ``postmaster@<helo>`` when the reverse-path is null.  Never raises (except
    cancellation)."""
    helo = _clean(helo, 255)
    mail_from = _strip_path(mail_from)
    if mail_from:
        scope = "mailfrom"
        local, at, domain_text = mail_from.rpartition("@")
        if not at:  # no local part: RFC 7208 4.3 uses "postmaster"
            local, domain_text = "postmaster", mail_from
        local = local or "postmaster"
    else:
        scope = "helo"
        local, domain_text = "postmaster", helo
    domain = _dns_domain(domain_text)
    if domain is None:
        return SpfResult(
            "none",
            _clean(domain_text.lower(), 255),
            "no valid domain to check",
            scope,
            _clean(f"{local}@{domain_text}", 320),
        )
    identity = f"{local}@{domain}"
    try:
        ip = ipaddress.ip_address(client_ip.strip().strip("[]")).compressed
    except ValueError:
        return SpfResult("permerror", domain, "invalid client address", scope, identity)

    loop = asyncio.get_running_loop()
    bridge = _DnsBridge(resolver, loop, time.monotonic() + time_limit)
    try:
        result, explanation = await loop.run_in_executor(_spf_executor(), _run_spf, bridge, ip, identity, helo)
    except asyncio.CancelledError:
        bridge.stop()
        raise
    except Exception as exc:  # pragma: no cover - _run_spf catches everything
        result, explanation = (
            "temperror",
            f"SPF evaluation failed: {exc.__class__.__name__}",
        )
    return SpfResult(result, domain, _clean(explanation), scope, _clean(identity, 320))
