"""Password hashes made elsewhere, as the admin API takes them (``hashedPassword``):
the formats WildDuck accepts, so that users move over without a password reset.

- bcrypt (``$2a$``, ``$2b$``, ``$2y$``), MD5-crypt (``$1$``), SHA-256-crypt (``$5$``) and
  SHA-512-crypt (``$6$``), and passlib's PBKDF2 (``$pbkdf2$``, ``$pbkdf2-sha256$``,
  ``$pbkdf2-sha512$``): checked by passlib (its maintained fork, libpass) with bcrypt;
- PBKDF2 in the PHC string format (``$pbkdf2-sha512$i=25000,l=64$salt$hash``, base64,
  as WildDuck's ``@phc/pbkdf2`` writes it): checked with hashlib;
- argon2 (``$argon2id$``, ``$argon2i$``, ``$argon2d$``): argon2-cffi, in passwords.py.

A hash is parsed when it is imported (``parse``), so that a string that is not a whole,
well-formed hash of a known kind is refused then, never stored. A foreign hash is
replaced by an argon2id one at the user's next successful login.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass

from passlib.context import CryptContext

from postern.errors import InvalidInput

_PASSLIB = CryptContext(schemes=["bcrypt", "md5_crypt", "sha256_crypt", "sha512_crypt", "pbkdf2_sha1", "pbkdf2_sha256", "pbkdf2_sha512"])
_PASSLIB_PREFIXES = ("$2a$", "$2b$", "$2y$", "$1$", "$5$", "$6$", "$pbkdf2$", "$pbkdf2-sha256$", "$pbkdf2-sha512$")
_PHC_PBKDF2 = re.compile(r"^\$pbkdf2-(sha1|sha256|sha512)\$i=([0-9]{1,9})(?:,l=([0-9]{1,4}))?\$([A-Za-z0-9+/.=]+)\$([A-Za-z0-9+/.=]+)$")
MAX_PBKDF2_ROUNDS = 10_000_000


class UnsupportedHash(InvalidInput):
    def __init__(self) -> None:
        super().__init__(
            "password must be a bcrypt, MD5/SHA-256/SHA-512 crypt, PBKDF2 or argon2 hash when hashedPassword is true",
            field="password",
        )


@dataclass(frozen=True, slots=True)
class _PhcPbkdf2:
    digest: str
    rounds: int
    salt: bytes
    key: bytes


def _b64(text: str) -> bytes:
    text = text.replace(".", "+")  # passlib's "ab64" alphabet uses "." for "+"
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _phc_pbkdf2(stored: str) -> _PhcPbkdf2 | None:
    match = _PHC_PBKDF2.match(stored)
    if match is None:
        return None
    digest, rounds, length = match.group(1), int(match.group(2)), match.group(3)
    try:
        salt, key = _b64(match.group(4)), _b64(match.group(5))
    except (binascii.Error, ValueError):
        return None
    if not 1 <= rounds <= MAX_PBKDF2_ROUNDS or not salt or not key or (length is not None and int(length) != len(key)):
        return None
    return _PhcPbkdf2(digest, rounds, salt, key)


def is_foreign(stored: str) -> bool:
    """A hash this module checks (not one of argon2's)."""
    return stored.startswith(_PASSLIB_PREFIXES)


def parse(stored: str) -> str:
    """The hash as it will be stored, if it is a whole, well-formed hash of a kind
    postern checks (argon2 excepted: see passwords.py); else UnsupportedHash."""
    stored = stored.strip()
    if _phc_pbkdf2(stored) is not None:
        return stored
    if not stored.startswith(_PASSLIB_PREFIXES):
        raise UnsupportedHash
    try:
        scheme = _PASSLIB.identify(stored, required=False)
        if scheme is None:
            raise UnsupportedHash
        parsed = _PASSLIB.handler(scheme).from_string(stored)  # parses every field, or raises
    except (ValueError, TypeError):
        raise UnsupportedHash from None
    if not getattr(parsed, "checksum", None):
        raise UnsupportedHash  # a salt and settings without the hash itself
    return stored


def verify(stored: str, password: str) -> bool:
    """Whether ``password`` matches a hash that ``parse`` took (slow: call it off the
    event loop)."""
    phc = _phc_pbkdf2(stored)
    if phc is not None:
        derived = hashlib.pbkdf2_hmac(phc.digest, password.encode("utf-8"), phc.salt, phc.rounds, len(phc.key))
        return hmac.compare_digest(derived, phc.key)
    try:
        return bool(_PASSLIB.verify(password, stored))
    except (ValueError, TypeError):
        return False
