"""Where a browser may be sent after a successful validation (``next_link``).

Only an absolute http(s) URL with a host, no credentials and no control characters;
when the operator lists domains, only those domains and their subdomains. The link is
checked when a session is asked for and stored with it: the redirect after a GET
submitToken uses the stored value only, never one from the request (an open
redirect otherwise)."""

from __future__ import annotations

import ipaddress
import unicodedata
from collections.abc import Sequence
from urllib.parse import urlsplit

from postern.accounts.addressing import normalise_domain
from postern.errors import InvalidInput
from postern.verification.errors import INVALID_PARAM, MatrixError

MAX_LENGTH = 2048


def _refuse(reason: str) -> MatrixError:
    return MatrixError(INVALID_PARAM, f"next_link {reason}")


def host_of(netloc_host: str) -> str:
    """The ASCII form of a URL's host (IP literals as they are)."""
    try:
        return str(ipaddress.ip_address(netloc_host.strip("[]")))
    except ValueError:
        pass
    try:
        return normalise_domain(netloc_host, "next_link")[0]
    except InvalidInput:
        raise _refuse("has an invalid host") from None


def check_next_link(value: str, allowed_domains: Sequence[str] = ()) -> str:
    """``value`` if it may be redirected to, else MatrixError(M_INVALID_PARAM)."""
    if len(value) > MAX_LENGTH:
        raise _refuse(f"must be at most {MAX_LENGTH} characters")
    if any(
        unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") or c.isspace()
        for c in value
    ):
        raise _refuse("must not contain spaces or control characters")
    try:
        parts = urlsplit(value)
        port = parts.port
        hostname = parts.hostname
    except ValueError:
        raise _refuse("is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise _refuse("must be an http or https URL")
    if "\\" in value:
        raise _refuse("is not a valid URL")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise _refuse("must not contain credentials")
    if not hostname:
        raise _refuse("must name a host")
    del port
    host = host_of(hostname)
    if allowed_domains:
        allowed = {d.strip().lower().rstrip(".") for d in allowed_domains if d.strip()}
        allowed_ascii = set()
        for domain in allowed:
            try:
                allowed_ascii.add(normalise_domain(domain)[0])
            except InvalidInput:
                continue
        if not any(host == d or host.endswith("." + d) for d in allowed_ascii):
            raise _refuse("is not on a domain this server redirects to")
    return value
