"""Where and when to deliver outgoing mail (pure functions; DNS answers are given).

* :func:`order_mx` / :func:`mx_targets`: the hosts to try for a domain, RFC 5321 5.1
  (preference order, random among equal preferences, implicit MX) and RFC 7505 (null MX).
* :func:`parse_relay`: the ``POSTERN_OUTBOUND_RELAY`` setting.
* :func:`retry_delay` and :data:`MAX_QUEUE_LIFETIME_S`: the retry schedule.
* :func:`classify_smtp_reply` and :func:`enhanced_status`: what a reply means.
"""

from __future__ import annotations

import ipaddress
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from postern.accounts.addressing import normalise_domain
from postern.errors import DomainError

__all__ = [
    "DEFAULT_RELAY_PORT",
    "MAX_QUEUE_LIFETIME_S",
    "RETRY_SCHEDULE_S",
    "SMTP_PORT",
    "DeliveryTarget",
    "classify_smtp_reply",
    "enhanced_status",
    "is_null_mx",
    "mx_targets",
    "order_mx",
    "parse_relay",
    "retry_delay",
]

SMTP_PORT = 25
DEFAULT_RELAY_PORT = 587  # a relay (smarthost) is normally reached by submission
MAX_QUEUE_LIFETIME_S = 5 * 24 * 3600
# Seconds to wait after the 1st, 2nd, ... failed attempt; the last value repeats.
RETRY_SCHEDULE_S: tuple[int, ...] = (5 * 60, 10 * 60, 20 * 60, 40 * 60, 3600, 2 * 3600, 4 * 3600)
RETRY_JITTER = 0.10


@dataclass(frozen=True)
class DeliveryTarget:
    host: str
    port: int
    preference: int


def _mx_host(host: str) -> str:
    return host.strip().rstrip(".").lower()


def is_null_mx(mx_records: Sequence[tuple[int, str]]) -> bool:
    """True when the domain publishes a null MX (RFC 7505: one MX whose exchange is
    ``.``; ``""`` as :mod:`postern.delivery.dns` reports it): it accepts no mail."""
    records = list(mx_records)
    return len(records) == 1 and _mx_host(records[0][1]) == ""


def order_mx(mx_records: Sequence[tuple[int, str]], domain: str, *, rng: random.Random | None = None) -> list[str]:
    """The hosts to try, in order (RFC 5321 5.1).

    Lowest preference first, in random order among equal preferences (``rng`` makes
    the order repeatable).  A host listed twice keeps its best preference.  A null MX
    gives ``[]``: the domain accepts no mail (bounce with 5.1.10).  No MX records at
    all gives ``[domain]`` (the implicit MX: its A/AAAA records).  ``.`` entries mixed
    with real ones (a broken null MX) are ignored.  Host names are lowercased, without
    the trailing dot; the implicit MX is the domain's A-label form.
    """
    records = list(mx_records)
    if not records:
        return [_implicit_mx(domain)]
    best: dict[str, int] = {}
    for preference, host in records:
        name = _mx_host(host)
        if not name:
            continue
        pref = int(preference)
        if name not in best or pref < best[name]:
            best[name] = pref
    if not best:  # only null MX entries
        return []
    rng = rng if rng is not None else random.Random()
    by_preference: dict[int, list[str]] = {}
    for name, pref in best.items():
        by_preference.setdefault(pref, []).append(name)
    ordered: list[str] = []
    for pref in sorted(by_preference):
        group = sorted(by_preference[pref])  # a fixed start, so a seeded rng repeats
        rng.shuffle(group)
        ordered.extend(group)
    return ordered


def mx_targets(
    mx_records: Sequence[tuple[int, str]],
    domain: str,
    *,
    port: int = SMTP_PORT,
    rng: random.Random | None = None,
) -> list[DeliveryTarget]:
    """:func:`order_mx` as :class:`DeliveryTarget` values (the implicit MX has
    preference 0); ``[]`` for a null MX."""
    records = list(mx_records)
    best: dict[str, int] = {}
    for preference, host in records:
        name = _mx_host(host)
        if name and (name not in best or int(preference) < best[name]):
            best[name] = int(preference)
    return [DeliveryTarget(host, port, best.get(host, 0)) for host in order_mx(records, domain, rng=rng)]


def _implicit_mx(domain: str) -> str:
    try:
        return normalise_domain(domain)[0]
    except DomainError:
        raise ValueError(f"invalid domain {domain[:100]!r}") from None


_HOST_PORT = re.compile(r"^(?P<host>[^\[\]:]+)(?::(?P<port>[^:]*))?$")
_BRACKETED = re.compile(r"^\[(?P<host>[^\[\]]*)\](?::(?P<port>.*))?$")


def parse_relay(value: str) -> tuple[str, int]:
    """``host``, ``host:port``, ``[host]:port``, ``[2001:db8::1]:port`` or a bare IPv6
    address -> ``(host, port)``.  The port defaults to 587 (submission); brackets are
    removed; host names are returned in A-label form, lowercased.  Raises ValueError
    with a readable message for anything else."""
    if not isinstance(value, str):
        raise ValueError("the relay must be given as host:port")
    text = value.strip()
    if not text:
        raise ValueError("the relay is empty; give host:port")
    if "://" in text or "/" in text or "@" in text or any(c.isspace() for c in text):
        raise ValueError(f"the relay must be host:port, not {text[:100]!r}")
    port_text: str | None
    if (match := _BRACKETED.match(text)) or (match := _HOST_PORT.match(text)):
        host, port_text = match.group("host"), match.group("port")
    else:
        try:  # a bare IPv6 address, without a port
            host, port_text = str(ipaddress.IPv6Address(text)), None
        except ValueError:
            raise ValueError(f"the relay must be host:port (an IPv6 address in brackets: [2001:db8::1]:587), not {text[:100]!r}") from None
    return _relay_host(host, text), _relay_port(port_text, text)


def _relay_host(host: str, text: str) -> str:
    if not host:
        raise ValueError(f"the relay has no host: {text[:100]!r}")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if re.fullmatch(r"[0-9.]+", host):
        raise ValueError(f"the relay's address {host[:100]!r} is not a valid IP address")
    try:
        return normalise_domain(host, "relay")[0]
    except DomainError:
        raise ValueError(f"the relay's host name {host[:100]!r} is not valid") from None


def _relay_port(port_text: str | None, text: str) -> int:
    if port_text is None:
        return DEFAULT_RELAY_PORT
    if not port_text.isascii() or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"the relay's port must be a number from 1 to 65535: {text[:100]!r}")
    return int(port_text)


def retry_delay(attempt: int, *, rng: random.Random | None = None) -> float:
    """Seconds to wait before the next try, after ``attempt`` failed attempts (1 after
    the first failure): 5, 10, 20, 40 minutes, 1, 2, 4 hours, then every 4 hours.
    With ``rng`` the delay is spread by ±10% (so that a burst of failures does not
    retry as a burst); without it the delay is exact.  Attempts below 1 count as 1.
    The queue gives up :data:`MAX_QUEUE_LIFETIME_S` after a message was queued."""
    index = min(max(int(attempt), 1), len(RETRY_SCHEDULE_S)) - 1
    base = float(RETRY_SCHEDULE_S[index])
    if rng is None:
        return base
    return base * rng.uniform(1.0 - RETRY_JITTER, 1.0 + RETRY_JITTER)


def classify_smtp_reply(code: int, message: str = "") -> str:
    """``"ok"`` for 2xx, ``"permanent"`` for 5xx, ``"temporary"`` for 4xx and for
    anything a server should not have said (1xx, 3xx, out of range): retrying is
    the safe answer to a broken reply.  A 552 that means "too many recipients"
    (5.5.3) is temporary, as RFC 5321 4.5.3.1.10 asks."""
    try:
        code = int(code)
    except (TypeError, ValueError):
        return "temporary"
    if 200 <= code <= 299:
        return "ok"
    if 500 <= code <= 599:
        if code == 552 and _is_too_many_recipients(message):
            return "temporary"
        return "permanent"
    return "temporary"


def _is_too_many_recipients(message: str) -> bool:
    text = message if isinstance(message, str) else ""
    return _find_enhanced(text) == ("5", "5", "3") or "too many recipients" in text.lower()


# RFC 3463: class "." subject "." detail; subject and detail 1 to 3 digits.
_ENHANCED = re.compile(r"^(?:\d{3}[ -])?\s*([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")


def _find_enhanced(message: str) -> tuple[str, str, str] | None:
    """The enhanced status code at the start of a reply line (after the reply code,
    when the text includes it), per RFC 2034; the first line that has one."""
    for line in message.splitlines() or [""]:
        match = _ENHANCED.match(line.strip())
        if match:
            cls, subject, detail = match.groups()
            return cls, str(int(subject)), str(int(detail))
    return None


def enhanced_status(code: int, message: str) -> str:
    """The reply's enhanced status code (``"5.1.1"`` from ``"5.1.1 user unknown"`` or
    ``"550 5.1.1 user unknown"``), else ``"2.0.0"``, ``"4.0.0"`` or ``"5.0.0"`` by the
    reply's class.  The class always follows the reply code (a ``550 4.2.2`` is
    ``5.2.2``), since the reply code decides what happens to the message."""
    kind = classify_smtp_reply(code, message)
    cls = {"ok": "2", "temporary": "4", "permanent": "5"}[kind]
    found = _find_enhanced(message if isinstance(message, str) else "")
    if found is None:
        return f"{cls}.0.0"
    _, subject, detail = found
    return f"{cls}.{subject}.{detail}"
