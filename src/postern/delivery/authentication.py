"""SPF, DKIM and DMARC for mail that arrives by MX: the three checks together.

:func:`authenticate` runs the three checks on one message and returns an
:class:`AuthenticationResults`, which renders the ``Authentication-Results`` header
(RFC 8601) and a JSON form to keep with the message (the alias code reads it to
decide whether a reply really comes from a mailbox).

Every DNS question goes through the injected :class:`~postern.delivery.dns.Resolver`;
nothing here reaches the network by itself, and nothing raises on hostile input:
whatever goes wrong becomes ``permerror`` or ``temperror`` for that check.

Each check has its module (:mod:`.spf`, :mod:`.dkim`, :mod:`.dmarc`) and the results
theirs (:mod:`.authentication_results`); this one runs them and names them for callers.

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
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from postern.delivery.dns import Resolver

# The checks and their results live beside this module; callers import them from here.
from .authentication_results import AuthenticationResults, DkimSignatureResult, DmarcResult, SpfResult
from .dkim import MAX_DKIM_SIGNATURES, check_dkim
from .dmarc import check_dmarc, organizational_domain, parse_header_from
from .spf import check_spf

__all__ = [
    "MAX_DKIM_SIGNATURES",
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


# ---------------------------------------------------------------------------
# All three


async def authenticate(resolver: Resolver, raw: bytes, *, client_ip: str, helo: str, mail_from: str) -> AuthenticationResults:
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
        dmarc_result = DmarcResult("permerror", "", "none", False, False, "no single usable From address")
    else:
        dmarc_result = await _guard(
            check_dmarc(
                resolver,
                header_from_domain=from_domain,
                spf=spf_result,
                dkim=dkim_results,
            ),
            lambda: DmarcResult("temperror", from_domain or "", "none", False, False, "internal error"),
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
