"""SPF, DKIM and DMARC for mail that arrives by MX.

:func:`authenticate` runs the three checks on one message and returns an
:class:`AuthenticationResults`, which renders the ``Authentication-Results`` header
(RFC 8601) and a JSON form to keep with the message (the alias code reads it to
decide whether a reply really comes from a mailbox).

Every DNS question goes through the injected :class:`~postern.delivery.dns.Resolver`;
nothing here reaches the network by itself, and nothing raises on hostile input:
whatever goes wrong becomes ``permerror`` or ``temperror`` for that check.

* **SPF** (RFC 7208) is pyspf's evaluator.  pyspf does blocking DNS through a
  module-level function; instead of replacing that global (which every concurrent
  check would share), each check uses a subclass of ``spf.query`` whose ``dns``
  method asks our resolver.  The evaluation runs in a worker thread and every lookup
  is a coroutine scheduled back on the event loop
  (``asyncio.run_coroutine_threadsafe``), so the loop never blocks.  The whole
  evaluation has a time limit (RFC 7208 4.6.4) and stops when the caller is
  cancelled.  A null reverse-path is checked as ``postmaster@<HELO>``.
* **DKIM** (RFC 6376) is dkimpy.  The keys of all signatures (at most
  :data:`MAX_DKIM_SIGNATURES`) are resolved first through the resolver, then dkimpy
  verifies in a worker thread with a ``dnsfunc`` that answers from those keys.
* **DMARC** (RFC 7489) is evaluated here: policy discovery at the From domain and
  then at its organizational domain, relaxed or strict identifier alignment, ``pct``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import logging
import random
import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import dkim
import dns.exception
import dns.name
import dns.reversename
import idna
import spf

from postern.delivery.dns import DnsError, Resolver

__all__ = [
    "AuthenticationResults",
    "DkimSignatureResult",
    "DmarcResult",
    "SpfResult",
    "authenticate",
    "check_dkim",
    "check_dmarc",
    "check_spf",
    "organizational_domain",
    "parse_header_from",
]

log = logging.getLogger(__name__)

#: At most this many DKIM-Signature fields are verified per message; the rest are
#: ignored (a message with hundreds of signatures would otherwise cost a DNS lookup
#: and a body hash each).
MAX_DKIM_SIGNATURES = 5
#: Total time an SPF evaluation may take, all lookups included (RFC 7208 4.6.4
#: suggests at least 20 seconds).
SPF_TIME_LIMIT = 20.0
#: DNS questions one SPF evaluation may ask.  pyspf's own limits (10 mechanisms,
#: 10 MX/PTR names each, 2 void lookups) stay well below; this is a backstop.
MAX_SPF_DNS_QUERIES = 250
#: Worker threads for SPF evaluations (see :func:`_spf_executor`).
SPF_THREADS = 32
#: Smallest RSA key accepted for DKIM (RFC 8301).
DKIM_MIN_KEY_BITS = 1024
_EXPLANATION_LIMIT = 300

SPF_RESULTS = frozenset(
    {"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"}
)
DKIM_RESULTS = frozenset({"pass", "fail", "neutral", "temperror", "permerror", "none"})
DMARC_RESULTS = frozenset({"pass", "fail", "none", "temperror", "permerror"})
DMARC_POLICIES = frozenset({"none", "quarantine", "reject"})


# ---------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class SpfResult:
    """``result`` is one of :data:`SPF_RESULTS`; ``domain`` the domain checked (the
    MAIL FROM domain, or the HELO name for a null sender).  ``scope`` is
    ``"mailfrom"`` or ``"helo"`` and ``identity`` the address checked
    (``postmaster@<helo>`` for a null sender)."""

    result: str
    domain: str
    explanation: str = ""
    scope: str = "mailfrom"
    identity: str = ""


@dataclass(frozen=True)
class DkimSignatureResult:
    """One DKIM-Signature field: ``result`` in :data:`DKIM_RESULTS`, its ``d=``
    (lowercased) and ``s=``; ``explanation`` says why it did not pass."""

    result: str
    domain: str
    selector: str
    explanation: str = ""


@dataclass(frozen=True)
class DmarcResult:
    """``result`` in :data:`DMARC_RESULTS`; ``domain`` is the header From domain
    (empty when there is none or it is unusable); ``policy`` the domain's applicable
    ``p=`` or ``sp=`` (after ``pct`` sampling, which only ever applies to failing
    messages; ``none`` when no record).  The alignment flags are computed even when
    the domain publishes no record (with relaxed alignment then), because the alias
    code uses them to spot a forged From."""

    result: str
    domain: str
    policy: str
    spf_aligned: bool
    dkim_aligned: bool
    explanation: str = ""


@dataclass(frozen=True)
class AuthenticationResults:
    spf: SpfResult
    dkim: tuple[DkimSignatureResult, ...]
    dmarc: DmarcResult
    header_from_domain: str | None = None

    def header(self, authserv_id: str) -> str:
        """The complete ``Authentication-Results`` field (RFC 8601), CRLF-terminated,
        folded between results when longer than 78 characters."""
        results: list[list[str]] = [_spf_resinfo(self.spf)]
        if self.dkim:
            results.extend(_dkim_resinfo(sig) for sig in self.dkim)
        else:
            results.append(["dkim=none"])
        results.append(_dmarc_resinfo(self.dmarc))
        return _render_header(_token_value(authserv_id) or "localhost", results)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict to store with the message (:meth:`from_json` reads it)."""
        return {
            "spf": {
                "result": self.spf.result,
                "domain": self.spf.domain,
                "explanation": self.spf.explanation,
                "scope": self.spf.scope,
                "identity": self.spf.identity,
            },
            "dkim": [
                {
                    "result": sig.result,
                    "domain": sig.domain,
                    "selector": sig.selector,
                    "explanation": sig.explanation,
                }
                for sig in self.dkim
            ],
            "dmarc": {
                "result": self.dmarc.result,
                "domain": self.dmarc.domain,
                "policy": self.dmarc.policy,
                "spf_aligned": self.dmarc.spf_aligned,
                "dkim_aligned": self.dmarc.dkim_aligned,
                "explanation": self.dmarc.explanation,
            },
            "header_from_domain": self.header_from_domain,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AuthenticationResults:
        s, m = data["spf"], data["dmarc"]
        return cls(
            spf=SpfResult(
                result=s["result"],
                domain=s["domain"],
                explanation=s.get("explanation", ""),
                scope=s.get("scope", "mailfrom"),
                identity=s.get("identity", ""),
            ),
            dkim=tuple(
                DkimSignatureResult(
                    result=d["result"],
                    domain=d["domain"],
                    selector=d["selector"],
                    explanation=d.get("explanation", ""),
                )
                for d in data.get("dkim", [])
            ),
            dmarc=DmarcResult(
                result=m["result"],
                domain=m["domain"],
                policy=m["policy"],
                spf_aligned=bool(m["spf_aligned"]),
                dkim_aligned=bool(m["dkim_aligned"]),
                explanation=m.get("explanation", ""),
            ),
            header_from_domain=data.get("header_from_domain"),
        )


# ---------------------------------------------------------------------------
# Small helpers

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")


def _clean(text: object, limit: int = _EXPLANATION_LIMIT) -> str:
    cleaned = _CONTROL.sub(" ", str(text)).strip()
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def _dns_domain(text: str, *, min_labels: int = 2) -> str | None:
    """``text`` as a lowercase ASCII (A-label) domain name, or None when it is not
    one (an address literal, an empty label, a bad IDN, a numeric top label...)."""
    name = text.strip().removesuffix(".")
    if not name or name.startswith("[") or len(name) > 253:
        return None
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError):
            return None
    name = name.lower()
    labels = name.split(".")
    if len(labels) < min_labels or len(name) > 253:
        return None
    if not all(_LABEL.match(label) for label in labels):
        return None
    if labels[-1].isdigit():
        return None
    return name


def _valid_dns_name(name: str) -> bool:
    """A name we are willing to ask about (selector labels may be anything DNS-safe)."""
    if not name or len(name) > 253 or not name.isascii():
        return False
    return all(_LABEL.match(label) for label in name.lower().split("."))


# ---------------------------------------------------------------------------
# Organizational domain

# A compact stand-in for the Public Suffix List (https://publicsuffix.org/): the
# multi-label public suffixes most often seen in mail, plus a few shared hosting
# suffixes from the list's private section.  Any other domain's public suffix is
# taken to be its last label.  LIMITATION: a registrable domain under a suffix that
# is not listed here (e.g. ``example.nom.fr``, or the wildcard rules ``*.ck``) is
# given too short an organizational domain, so relaxed alignment may treat two
# unrelated registrants under that suffix as one organization, and DMARC policy
# discovery may consult the suffix's own ``_dmarc`` record.  Replace this with the
# full list if that matters for a deployment.
PUBLIC_SUFFIXES: frozenset[str] = frozenset(
    """
    ac.uk co.uk gov.uk ltd.uk me.uk net.uk nhs.uk org.uk plc.uk sch.uk police.uk
    asn.au com.au edu.au gov.au id.au net.au org.au
    ac.nz co.nz geek.nz govt.nz net.nz org.nz school.nz
    ac.jp ad.jp co.jp ed.jp go.jp gr.jp lg.jp ne.jp or.jp
    ac.kr co.kr go.kr ne.kr or.kr re.kr
    com.br edu.br gov.br net.br org.br
    ac.cn com.cn edu.cn gov.cn net.cn org.cn
    com.hk edu.hk gov.hk net.hk org.hk
    com.tw edu.tw gov.tw net.tw org.tw
    com.sg edu.sg gov.sg net.sg org.sg
    ac.in co.in edu.in firm.in gen.in gov.in ind.in net.in org.in res.in
    ac.za co.za gov.za net.za org.za web.za
    com.mx edu.mx gob.mx net.mx org.mx
    com.ar gob.ar net.ar org.ar
    ac.il co.il gov.il net.il org.il
    com.tr edu.tr gen.tr gov.tr net.tr org.tr
    ac.id co.id go.id or.id web.id
    com.my edu.my gov.my net.my org.my
    com.ph net.ph org.ph
    com.vn net.vn org.vn
    ac.th co.th go.th in.th or.th
    com.ua net.ua org.ua
    com.pl net.pl org.pl
    co.at or.at
    com.es nom.es org.es
    com.pt com.gr com.cy com.mt
    co.ke or.ke com.ng com.eg com.sa com.pk com.bd com.lk com.np
    com.co com.pe com.ve com.uy com.ec com.bo com.py
    github.io gitlab.io herokuapp.com blogspot.com appspot.com netlify.app
    vercel.app pages.dev workers.dev web.app firebaseapp.com azurewebsites.net
    cloudfront.net
    """.split()
)


def organizational_domain(domain: str) -> str:
    """The organizational domain (RFC 7489 3.2): the public suffix plus one label.

    Uses :data:`PUBLIC_SUFFIXES` (see its LIMITATION note).  A domain that is
    itself a public suffix, or a single label, is returned as it is (lowercased,
    without the trailing dot)."""
    name = domain.strip().rstrip(".").lower()
    labels = name.split(".")
    if len(labels) < 2:
        return name
    for i in range(len(labels) - 1):
        if ".".join(labels[i:]) in PUBLIC_SUFFIXES:
            return name if i == 0 else ".".join(labels[i - 1 :])
    return ".".join(labels[-2:])


def _aligned(a: str, b: str, mode: str) -> bool:
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    if not a or not b:
        return False
    if mode == "s":
        return a == b
    return organizational_domain(a) == organizational_domain(b)


# ---------------------------------------------------------------------------
# SPF


class _DnsBridge:
    """Lets pyspf, running in a worker thread, ask the async resolver: each lookup
    is scheduled on the event loop and waited for, within the overall deadline."""

    def __init__(
        self, resolver: Resolver, loop: asyncio.AbstractEventLoop, deadline: float
    ):
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
            raise spf.TempError(
                f"DNS {qtype} {name}: {exc.__class__.__name__}"
            ) from exc
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

    def dns(
        self, name: Any, qtype: str, cnames: Any = None, ignore_void: bool = False
    ) -> list[Any]:
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
                raise spf.PermError(
                    f"Void lookup limit of {spf.MAX_VOID_LOOKUPS} exceeded"
                )
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
            _SPF_EXECUTOR = concurrent.futures.ThreadPoolExecutor(
                max_workers=SPF_THREADS, thread_name_prefix="postern-spf"
            )
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
        result, explanation = await loop.run_in_executor(
            _spf_executor(), _run_spf, bridge, ip, identity, helo
        )
    except asyncio.CancelledError:
        bridge.stop()
        raise
    except Exception as exc:  # pragma: no cover - _run_spf catches everything
        result, explanation = (
            "temperror",
            f"SPF evaluation failed: {exc.__class__.__name__}",
        )
    return SpfResult(result, domain, _clean(explanation), scope, _clean(identity, 320))


# ---------------------------------------------------------------------------
# DKIM

# dkimpy logs every failed verification at ERROR; hostile mail would fill the log.
# Its messages go to a logger of our own that is silent unless reconfigured.
_DKIM_LOGGER = logging.getLogger("postern.delivery.dkimpy")
_DKIM_LOGGER.propagate = False
_DKIM_LOGGER.setLevel(logging.CRITICAL)
_DKIM_LOGGER.addHandler(logging.NullHandler())

_TAG_D = re.compile(rb"(?:^|;)\s*d\s*=\s*([^;]*)", re.IGNORECASE)
_TAG_S = re.compile(rb"(?:^|;)\s*s\s*=\s*([^;]*)", re.IGNORECASE)


def _tag(pattern: re.Pattern[bytes], value: bytes) -> str:
    match = pattern.search(value)
    if not match:
        return ""
    text = re.sub(rb"\s+", b"", match.group(1)).decode("ascii", errors="replace")
    return _clean(text, 255)


@dataclass
class _Signature:
    index: int
    domain: str
    selector: str
    result: str = ""  # set when decided before verification
    explanation: str = ""

    @property
    def key_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}".lower()


def _prepare_dkim(raw: bytes) -> tuple[Any, list[_Signature]]:
    """Parse the message and each signature field (in a worker thread)."""
    try:
        message = dkim.DKIM(raw, logger=_DKIM_LOGGER, minkey=DKIM_MIN_KEY_BITS)
    except Exception as exc:
        # A message dkimpy cannot parse: report its signatures, if any, as permerror.
        head = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0]
        count = len(re.findall(rb"(?im)^dkim-signature[ \t]*:", head))
        sigs = [
            _Signature(
                i, "", "", "permerror", f"unparseable message: {_clean(exc, 120)}"
            )
            for i in range(min(count, MAX_DKIM_SIGNATURES))
        ]
        return None, sigs
    fields = [
        value for name, value in message.headers if name.lower() == b"dkim-signature"
    ]
    sigs = []
    for index, value in enumerate(fields[:MAX_DKIM_SIGNATURES]):
        sig = _Signature(index, _tag(_TAG_D, value).lower(), _tag(_TAG_S, value))
        try:
            prep = message.verify_headerprep(idx=index)
            if not prep:
                raise dkim.ValidationError("signature not found")
            fields_ = prep[0]
            sig.domain = fields_[b"d"].decode("ascii").lower().rstrip(".")
            sig.selector = fields_[b"s"].decode("ascii")
            if not (_valid_dns_name(sig.domain) and _valid_dns_name(sig.selector)):
                raise dkim.ValidationError("d= or s= is not a valid domain name")
        except Exception as exc:
            sig.result = "permerror"
            sig.explanation = _clean(exc, 200)
        sigs.append(sig)
    return message, sigs


def _verify_dkim(message: Any, sigs: list[_Signature], keys: dict[str, bytes]) -> None:
    """Verify the signatures whose key was found (in a worker thread)."""

    def dnsfunc(name: bytes | str, timeout: float = 5) -> bytes | None:
        text = (
            name.decode("ascii", errors="replace") if isinstance(name, bytes) else name
        )
        return keys.get(text.rstrip(".").lower())

    for sig in sigs:
        if sig.result:
            continue
        key = keys[sig.key_name]
        try:
            dkim.evaluate_pk(sig.key_name.encode("ascii"), key)
        except Exception as exc:
            sig.result, sig.explanation = (
                "permerror",
                f"unusable key: {_clean(exc, 160)}",
            )
            continue
        try:
            ok = message.verify(idx=sig.index, dnsfunc=dnsfunc)
        except dkim.ValidationError as exc:
            text = str(exc)
            if text.startswith("body hash mismatch"):
                sig.result, sig.explanation = "fail", "body hash mismatch"
            else:
                sig.result, sig.explanation = "permerror", _clean(text, 200)
            continue
        except Exception as exc:
            sig.result, sig.explanation = (
                "permerror",
                _clean(exc, 200) or exc.__class__.__name__,
            )
            continue
        if ok:
            sig.result, sig.explanation = "pass", ""
        else:
            sig.result, sig.explanation = "fail", "signature did not verify"


async def _fetch_key(resolver: Resolver, name: str) -> tuple[str, bytes | None, str]:
    """(result-if-failed, key record, explanation)."""
    try:
        records = await resolver.txt(name)
    except DnsError as exc:
        kind = "temperror" if exc.temporary else "permerror"
        return kind, None, _clean(f"key lookup failed: {exc}", 200)
    except Exception as exc:
        return "temperror", None, f"key lookup failed: {exc.__class__.__name__}"
    if not records:
        return "permerror", None, f"no key at {name}"
    # RFC 6376 3.6.2.2: several TXT records for one selector give undefined results;
    # the first one is used, as dkimpy does.
    return "", records[0].encode("utf-8"), ""


async def check_dkim(resolver: Resolver, raw: bytes) -> tuple[DkimSignatureResult, ...]:
    """Verify every DKIM-Signature field (at most :data:`MAX_DKIM_SIGNATURES`, top
    first).  No signature gives ``()``.  Never raises (except cancellation)."""
    try:
        message, sigs = await asyncio.to_thread(_prepare_dkim, bytes(raw))
        names = sorted({sig.key_name for sig in sigs if not sig.result})
        fetched = await asyncio.gather(*(_fetch_key(resolver, name) for name in names))
        keys: dict[str, bytes] = {}
        for name, (failure, key, explanation) in zip(names, fetched, strict=True):
            if key is None:
                for sig in sigs:
                    if not sig.result and sig.key_name == name:
                        sig.result, sig.explanation = failure, explanation
            else:
                keys[name] = key
        if any(not sig.result for sig in sigs):
            await asyncio.to_thread(_verify_dkim, message, sigs, keys)
    except asyncio.CancelledError:
        raise
    except Exception:  # pragma: no cover - every step above catches its own errors
        log.exception("DKIM verification failed")
        return (DkimSignatureResult("temperror", "", "", "internal error"),)
    return tuple(
        DkimSignatureResult(
            sig.result or "permerror", sig.domain, sig.selector, sig.explanation
        )
        for sig in sigs
    )


# ---------------------------------------------------------------------------
# Header From


def _header_fields(raw: bytes) -> list[tuple[str, bytes]]:
    """(lowercased name, unfolded value) for each field of the header section,
    split on CRLF or bare LF as dkimpy does."""
    if raw.startswith((b"\r\n", b"\n")):
        return []
    head = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0]
    fields: list[tuple[str, bytes]] = []
    for line in re.split(rb"\r?\n", head):
        if line[:1] in (b" ", b"\t"):
            if fields:
                fields[-1] = (fields[-1][0], fields[-1][1] + b" " + line.strip())
            continue
        name, colon, value = line.partition(b":")
        if not colon:
            continue
        # "From :" (obsolete syntax, RFC 5322 4.5) counts as a From field too.
        fields.append((name.rstrip(b" \t").decode("latin-1").lower(), value.strip()))
    return fields


def _split_mailboxes(value: str) -> list[str] | None:
    """The From value cut into mailboxes at top-level commas, comments removed.
    None when it cannot be read unambiguously (unbalanced quotes, brackets or
    comments, or group syntax)."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0  # comment nesting
    in_quote = in_angle = in_literal = False
    i = 0
    while i < len(value):
        c = value[i]
        if in_quote:
            current.append(c)
            if c == "\\" and i + 1 < len(value):
                current.append(value[i + 1])
                i += 1
            elif c == '"':
                in_quote = False
        elif depth:
            if c == "\\":
                i += 1
            elif c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
        elif c == "(":
            depth = 1
            current.append(" ")
        elif c == '"':
            in_quote = True
            current.append(c)
        elif in_literal:
            current.append(c)
            if c == "]":
                in_literal = False
        elif c == "[":
            in_literal = True
            current.append(c)
        elif c == "<":
            if in_angle:
                return None
            in_angle = True
            current.append(c)
        elif c == ">":
            if not in_angle:
                return None
            in_angle = False
            current.append(c)
        elif c == "," and not in_angle:
            parts.append("".join(current))
            current = []
        elif c in ":;" and not in_angle:
            return None  # group syntax: not a plain mailbox-list
        else:
            current.append(c)
        i += 1
    if in_quote or in_angle or in_literal or depth:
        return None
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def _mailbox_domain(mailbox: str) -> str | None:
    if "<" in mailbox:
        if mailbox.count("<") != 1 or not mailbox.endswith(">"):
            return None
        address = mailbox[mailbox.index("<") + 1 : -1].strip()
        if ":" in address:  # obsolete source route "@a,@b:user@domain"
            address = address.rsplit(":", 1)[1].strip()
    else:
        address = mailbox
    # The domain follows the last "@" outside a quoted local part.
    in_quote = False
    at = -1
    i = 0
    while i < len(address):
        c = address[i]
        if c == "\\" and in_quote:
            i += 2
            continue
        if c == '"':
            in_quote = not in_quote
        elif c == "@" and not in_quote:
            at = i
        i += 1
    if at <= 0:
        return None
    return _dns_domain(address[at + 1 :])


def parse_header_from(raw: bytes) -> tuple[str, str | None]:
    """The RFC5322.From domain as ``(status, domain)``: ``("ok", domain)``;
    ``("none", None)`` when the message has no From field; ``("permerror", None)``
    when it has several From fields, several authors in different domains, or a
    From that cannot be read unambiguously (RFC 7489 6.6.1)."""
    values = [value for name, value in _header_fields(raw) if name == "from"]
    if not values:
        return "none", None
    if len(values) > 1:
        return "permerror", None
    mailboxes = _split_mailboxes(values[0].decode("utf-8", errors="replace"))
    if not mailboxes:
        return "permerror", None
    domains = {_mailbox_domain(mailbox) for mailbox in mailboxes}
    if None in domains or len(domains) != 1:
        return "permerror", None
    return "ok", domains.pop()


# ---------------------------------------------------------------------------
# DMARC

_DMARC_VERSION = re.compile(r"^\s*v\s*=\s*DMARC1\s*(?:;|$)")


@dataclass(frozen=True)
class _DmarcRecord:
    p: str
    sp: str | None
    adkim: str
    aspf: str
    pct: int


def _parse_dmarc(text: str) -> _DmarcRecord | None:
    """A DMARC record, or None when it must be ignored (RFC 7489 6.6.3)."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        name, eq, value = part.partition("=")
        if eq:
            tags.setdefault(name.strip().lower(), value.strip())
    p = tags.get("p", "").lower()
    if p not in DMARC_POLICIES:
        # An invalid or missing p= with a reporting address counts as p=none.
        if "rua" not in tags:
            return None
        p = "none"
    sp = tags.get("sp", "").lower() or None
    if sp is not None and sp not in DMARC_POLICIES:
        sp = None
    adkim = tags.get("adkim", "r").lower()
    aspf = tags.get("aspf", "r").lower()
    try:
        pct = int(tags.get("pct", "100"))
    except ValueError:
        pct = 100
    if not 0 <= pct <= 100:
        pct = 100
    return _DmarcRecord(
        p=p,
        sp=sp,
        adkim=adkim if adkim in ("r", "s") else "r",
        aspf=aspf if aspf in ("r", "s") else "r",
        pct=pct,
    )


async def _dmarc_record(resolver: Resolver, domain: str) -> _DmarcRecord | None:
    """The record at ``_dmarc.<domain>``; DnsError propagates."""
    records = [
        text
        for text in await resolver.txt(f"_dmarc.{domain}")
        if _DMARC_VERSION.match(text)
    ]
    if len(records) != 1:  # none, or several: no DMARC (RFC 7489 6.6.3 step 5)
        return None
    return _parse_dmarc(records[0])


_DOWNGRADE = {"reject": "quarantine", "quarantine": "none", "none": "none"}


async def check_dmarc(
    resolver: Resolver,
    *,
    header_from_domain: str | None,
    spf: SpfResult,
    dkim: tuple[DkimSignatureResult, ...],
    sample: Callable[[], int] | None = None,
) -> DmarcResult:
    """DMARC (RFC 7489) for the header From domain given the SPF and DKIM results.

    ``sample`` returns a number in 0..99 for ``pct`` sampling (random by default).
    When nothing aligned passed but an SPF or DKIM check that would have aligned
    ended in ``temperror``, the result is ``temperror`` rather than ``fail``, so
    that a DNS hiccup never gets a domain's ``p=reject`` applied.  Never raises."""
    if not header_from_domain:
        return DmarcResult("none", "", "none", False, False, "no From domain")
    domain = _dns_domain(header_from_domain)
    if domain is None:
        return DmarcResult(
            "permerror",
            _clean(header_from_domain, 255),
            "none",
            False,
            False,
            "invalid From domain",
        )
    org = organizational_domain(domain)
    try:
        record = await _dmarc_record(resolver, domain)
        from_org = False
        if record is None and org != domain:
            record = await _dmarc_record(resolver, org)
            from_org = True
    except DnsError as exc:
        return _dmarc_alignment(
            domain, spf, dkim, None, "temperror", "none", _clean(f"DNS: {exc}")
        )
    except Exception as exc:
        return _dmarc_alignment(
            domain,
            spf,
            dkim,
            None,
            "temperror",
            "none",
            f"policy lookup failed: {exc.__class__.__name__}",
        )
    if record is None:
        return _dmarc_alignment(
            domain, spf, dkim, None, "none", "none", "no DMARC record"
        )
    policy = record.sp if from_org and record.sp else record.p
    result = _dmarc_alignment(domain, spf, dkim, record, "", policy, "")
    if result.result == "fail" and record.pct < 100:
        draw = sample() if sample is not None else random.randrange(100)
        if draw >= record.pct:
            return DmarcResult(
                result.result,
                result.domain,
                _DOWNGRADE[policy],
                result.spf_aligned,
                result.dkim_aligned,
                f"not sampled (pct={record.pct})",
            )
    return result


def _dmarc_alignment(
    domain: str,
    spf: SpfResult,
    dkim: tuple[DkimSignatureResult, ...],
    record: _DmarcRecord | None,
    result: str,
    policy: str,
    explanation: str,
) -> DmarcResult:
    aspf = record.aspf if record else "r"
    adkim = record.adkim if record else "r"
    spf_aligned = spf.result == "pass" and _aligned(spf.domain, domain, aspf)
    dkim_aligned = any(
        sig.result == "pass" and _aligned(sig.domain, domain, adkim) for sig in dkim
    )
    if not result:
        if spf_aligned or dkim_aligned:
            result, explanation = "pass", ""
        elif (spf.result == "temperror" and _aligned(spf.domain, domain, aspf)) or any(
            sig.result == "temperror" and _aligned(sig.domain, domain, adkim)
            for sig in dkim
        ):
            result, explanation = "temperror", "an aligned check had a temporary error"
        else:
            result, explanation = "fail", "no aligned SPF or DKIM pass"
    return DmarcResult(result, domain, policy, spf_aligned, dkim_aligned, explanation)


# ---------------------------------------------------------------------------
# All three


async def authenticate(
    resolver: Resolver, raw: bytes, *, client_ip: str, helo: str, mail_from: str
) -> AuthenticationResults:
    """SPF and DKIM (concurrently), then DMARC, for a message received by MX.
    Never raises (except cancellation)."""
    spf_result, dkim_results = await asyncio.gather(
        _guard(
            check_spf(resolver, client_ip=client_ip, helo=helo, mail_from=mail_from),
            lambda: SpfResult("temperror", "", "internal error"),
        ),
        _guard(
            check_dkim(resolver, raw),
            lambda: (DkimSignatureResult("temperror", "", "", "internal error"),),
        ),
    )
    try:
        status, from_domain = parse_header_from(raw)
    except Exception:  # pragma: no cover - the parser is total
        log.exception("reading the From field failed")
        status, from_domain = "permerror", None
    if status == "permerror":
        dmarc_result = DmarcResult(
            "permerror", "", "none", False, False, "no single usable From address"
        )
    else:
        dmarc_result = await _guard(
            check_dmarc(
                resolver,
                header_from_domain=from_domain,
                spf=spf_result,
                dkim=dkim_results,
            ),
            lambda: DmarcResult(
                "temperror", from_domain or "", "none", False, False, "internal error"
            ),
        )
    return AuthenticationResults(spf_result, dkim_results, dmarc_result, from_domain)


async def _guard(coro: Awaitable[Any], fallback: Callable[[], Any]) -> Any:
    try:
        return await coro
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("authentication check failed")
        return fallback()


# ---------------------------------------------------------------------------
# Authentication-Results rendering (RFC 8601)

_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`{|}~]+$")
_ATEXT = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+"
_DOT_ATOM = re.compile(rf"^{_ATEXT}(?:\.{_ATEXT})*$")
_DOMAIN_VALUE = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$")


def _quoted(text: str) -> str:
    text = _CONTROL.sub("", text)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _token_value(text: str) -> str:
    """A ``value`` (RFC 2045 token or quoted-string)."""
    text = _CONTROL.sub("", text).strip()
    if not text:
        return ""
    return text if _TOKEN.match(text) else _quoted(text)


def _pvalue(text: str) -> str:
    """A property value: ``[local-part "@"] domain`` when it is one, else quoted."""
    text = _CONTROL.sub("", text).strip()
    if not text:
        return '""'
    local, at, domain = text.rpartition("@")
    if not at and _DOMAIN_VALUE.match(text):
        return text
    if at and _DOMAIN_VALUE.match(domain) and (not local or _DOT_ATOM.match(local)):
        return text
    return _quoted(text)


def _spf_resinfo(result: SpfResult) -> list[str]:
    parts = [f"spf={result.result}"]
    if result.scope == "helo":
        if result.domain:
            parts.append(f"smtp.helo={_pvalue(result.domain)}")
    elif result.identity or result.domain:
        parts.append(f"smtp.mailfrom={_pvalue(result.identity or result.domain)}")
    return parts


def _dkim_resinfo(result: DkimSignatureResult) -> list[str]:
    parts = [f"dkim={result.result}"]
    if result.domain:
        parts.append(f"header.d={_pvalue(result.domain)}")
    if result.selector:
        parts.append(f"header.s={_pvalue(result.selector)}")
    return parts


def _dmarc_resinfo(result: DmarcResult) -> list[str]:
    parts = [f"dmarc={result.result}"]
    if result.result in ("pass", "fail"):
        parts.append(f"(p={result.policy})")
    if result.domain:
        parts.append(f"header.from={_pvalue(result.domain)}")
    return parts


_LINE_LIMIT = 78


def _render_header(authserv_id: str, results: list[list[str]]) -> str:
    name = "Authentication-Results: "
    single = name + authserv_id + "; " + "; ".join(" ".join(parts) for parts in results)
    if len(single) <= _LINE_LIMIT:
        return single + "\r\n"
    lines = [name + authserv_id + ";"]
    for n, parts in enumerate(results):
        last = n == len(results) - 1
        line = "\t" + parts[0]
        for part in parts[1:]:
            if len(line.expandtabs(8)) + 1 + len(part) > _LINE_LIMIT:
                lines.append(line)
                line = "\t" + part
            else:
                line += " " + part
        lines.append(line + ("" if last else ";"))
    return "\r\n".join(lines) + "\r\n"
