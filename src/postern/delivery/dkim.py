"""DKIM verification (RFC 6376) with dkimpy. The keys of all signatures (at most
:data:`MAX_DKIM_SIGNATURES`) are resolved first through the resolver, then dkimpy
verifies in a worker thread with a ``dnsfunc`` that answers from those keys."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any

import dkim

from postern.delivery.dns import DnsError, Resolver

from .authentication_results import DkimSignatureResult, _clean, _valid_dns_name

log = logging.getLogger(__name__)


#: At most this many DKIM-Signature fields are verified per message; the rest are
#: ignored (a message with hundreds of signatures would otherwise cost a DNS lookup
#: and a body hash each).
MAX_DKIM_SIGNATURES = 5


#: Smallest RSA key accepted for DKIM (RFC 8301).
DKIM_MIN_KEY_BITS = 1024


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
            _Signature(i, "", "", "permerror", f"unparseable message: {_clean(exc, 120)}") for i in range(min(count, MAX_DKIM_SIGNATURES))
        ]
        return None, sigs
    fields = [value for name, value in message.headers if name.lower() == b"dkim-signature"]
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
        text = name.decode("ascii", errors="replace") if isinstance(name, bytes) else name
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
    return tuple(DkimSignatureResult(sig.result or "permerror", sig.domain, sig.selector, sig.explanation) for sig in sigs)
