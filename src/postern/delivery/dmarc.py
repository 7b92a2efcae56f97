"""DMARC (RFC 7489): the header From domain, policy discovery at that domain and then at
its organizational domain, relaxed or strict identifier alignment, ``pct``."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from postern.delivery.dns import DnsError, Resolver
from postern.mime import header_fields

from .authentication_results import DMARC_POLICIES, DkimSignatureResult, DmarcResult, SpfResult, _clean, _dns_domain

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
# Header From


def _header_fields(raw: bytes) -> list[tuple[str, bytes]]:
    """(lowercased name, unfolded value) for each field of the header section, as
    the whole program reads it (``mime.header_fields``: "From :", the obsolete
    syntax of RFC 5322 4.5, counts as a From field too)."""
    return header_fields.fields(raw)


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
    records = [text for text in await resolver.txt(f"_dmarc.{domain}") if _DMARC_VERSION.match(text)]
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
        return _dmarc_alignment(domain, spf, dkim, None, "temperror", "none", _clean(f"DNS: {exc}"))
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
        return _dmarc_alignment(domain, spf, dkim, None, "none", "none", "no DMARC record")
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
    dkim_aligned = any(sig.result == "pass" and _aligned(sig.domain, domain, adkim) for sig in dkim)
    if not result:
        if spf_aligned or dkim_aligned:
            result, explanation = "pass", ""
        elif (spf.result == "temperror" and _aligned(spf.domain, domain, aspf)) or any(
            sig.result == "temperror" and _aligned(sig.domain, domain, adkim) for sig in dkim
        ):
            result, explanation = "temperror", "an aligned check had a temporary error"
        else:
            result, explanation = "fail", "no aligned SPF or DKIM pass"
    return DmarcResult(result, domain, policy, spf_aligned, dkim_aligned, explanation)
