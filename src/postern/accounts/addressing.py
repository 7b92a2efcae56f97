"""Email address and username rules (pure functions).

An address is kept twice: as displayed (lowercase local part, Unicode domain) and as
its key (lowercase local part, ASCII/punycode domain), which is unique across the
whole system, so ``андрис@уайлддак.орг`` and ``андрис@xn--80aalaxjd5d.xn--c1avg`` are one
address.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

import idna

from postern.errors import InvalidInput

# RFC 5322 atext, extended with any non-ASCII character as RFC 6531 allows.
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff"
_DOT_ATOM = re.compile(rf"^[{_ATEXT}]+(?:\.[{_ATEXT}]+)*$")
_USERNAME = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,126}[a-z0-9])?$")
_LDH_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


@dataclass(frozen=True, slots=True)
class NormalisedAddress:
    display: str
    key: str
    local: str
    domain: str  # Unicode form


@functools.lru_cache(maxsize=4096)
def normalise_domain(value: str, field: str = "domain") -> tuple[str, str]:
    """(ASCII form, Unicode form) of a domain, or InvalidInput. Remembered for the
    few thousand domains seen last: UTS 46 mapping costs tens of microseconds, and a
    mail door asks for the same few domains in every MAIL and RCPT."""
    domain = value.strip().rstrip(".")
    if not domain or len(domain) > 253:
        raise InvalidInput(f"{field} has an invalid domain", field=field)
    try:
        ascii_domain = idna.encode(domain, uts46=True).decode("ascii").lower()
        unicode_domain = idna.decode(ascii_domain)
    except (idna.IDNAError, UnicodeError, ValueError):
        raise InvalidInput(f"{field} has an invalid domain", field=field) from None
    if not all(_LDH_LABEL.match(label) for label in ascii_domain.split(".")):
        raise InvalidInput(f"{field} has an invalid domain", field=field)
    return ascii_domain, unicode_domain


def normalise_address(value: str, field: str = "address") -> NormalisedAddress:
    text = value.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise InvalidInput(f"{field} must be an email address", field=field)
    local = unicodedata.normalize("NFC", local)
    # Lone surrogates ("Cs") stand for undecodable bytes (SMTP arguments are decoded
    # with surrogateescape): not an address, and not encodable as UTF-8.
    if (
        len(local.encode("utf-8", "surrogatepass")) > 64
        or not _DOT_ATOM.match(local)
        or any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zs", "Zl", "Zp") for c in local)
    ):
        raise InvalidInput(f"{field} has an invalid local part", field=field)
    ascii_domain, unicode_domain = normalise_domain(domain, field)
    local = local.lower()
    return NormalisedAddress(display=f"{local}@{unicode_domain}", key=f"{local}@{ascii_domain}", local=local, domain=unicode_domain)


def normalise_username(value: str) -> str:
    """Usernames are letters, digits and ``._-`` (case-insensitive), or an email address."""
    text = value.strip().lower()
    if _USERNAME.match(text):
        return text
    if "@" in text and len(text) <= 128:
        return normalise_address(text, "username").key
    raise InvalidInput(
        "username may use only letters, numbers, dots, hyphens and underscores (1-128 characters), or be an email address",
        field="username",
    )
