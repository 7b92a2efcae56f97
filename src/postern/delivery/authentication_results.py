"""What SPF, DKIM and DMARC found for one message (:class:`AuthenticationResults`), and
its ``Authentication-Results`` header field (RFC 8601); the small text and DNS-name
helpers the three checks share."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import idna

_EXPLANATION_LIMIT = 300

SPF_RESULTS = frozenset({"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"})
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
