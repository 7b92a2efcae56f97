"""Signed suffixes: the ``.word123@domain`` parts that ``alias/options`` offers and that
``alias/custom/new`` takes back, signed so that a client cannot make up a suffix (a
domain it may not use, a premium one, another user's).

A signed suffix is ``<suffix>.<time>.<mac>``: the time it was made (seconds, 5 bytes)
and an HMAC (the server key's ``digest``, purpose "alias suffix", truncated to 160
bits) of the user id, the suffix and that time, both in unpadded lowercase base32.
The suffix is lowercase ASCII (domains in their A-label form), so the whole string is
lowercase: a client that lowercases (or uppercases) it changes nothing. It is valid
for ``TTL_S`` seconds, for the user it was made for only.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections.abc import Callable

from postern.accounts.server_key import ServerKey
from postern.errors import DomainError

TTL_S = 600
# A suffix dated this far in the future was not made by this server's clock.
MAX_SKEW_S = 60
MAX_SIGNED_LENGTH = 512
_TIME_BYTES = 5
_MAC_BYTES = 20
EXPIRED = "Alias creation time is expired, please retry"
INVALID = "The signed suffix is invalid, please retry"


class SuffixRejected(DomainError):
    """An expired, tampered or foreign signed suffix (the user API answers 412)."""

    code = "SuffixRejected"

    def __init__(self, message: str, *, expired: bool):
        super().__init__(message, field="signed_suffix")
        self.expired = expired


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def _unb32(text: str) -> bytes:
    return base64.b32decode(text.upper() + "=" * (-len(text) % 8))


class SuffixSigner:
    def __init__(self, server_key: ServerKey, clock: Callable[[], float] = time.time, ttl_s: int = TTL_S):
        self.server_key = server_key
        self.clock = clock
        self.ttl_s = ttl_s

    def _mac(self, user_id: str, suffix: str, stamp: str) -> str:
        digest = self.server_key.digest(f"{user_id}\n{suffix}\n{stamp}", purpose="alias suffix")
        return _b32(bytes.fromhex(digest)[:_MAC_BYTES])

    def sign(self, suffix: str, user_id: str) -> str:
        suffix = suffix.lower()
        if not suffix.isascii():
            raise ValueError("a suffix is ASCII (the domain in its A-label form)")
        stamp = _b32(int(self.clock()).to_bytes(_TIME_BYTES, "big"))
        return f"{suffix}.{stamp}.{self._mac(user_id, suffix, stamp)}"

    def unsign(self, signed: str, user_id: str) -> str:
        """The suffix of a signed suffix made for ``user_id`` in the last TTL_S
        seconds, in any letter case; SuffixRejected otherwise."""
        text = signed.strip().lower()
        if len(text) > MAX_SIGNED_LENGTH or not text.isascii():
            raise SuffixRejected(INVALID, expired=False)
        parts = text.rsplit(".", 2)
        if len(parts) != 3 or not parts[0] or "@" not in parts[0]:
            raise SuffixRejected(INVALID, expired=False)
        suffix, stamp, mac = parts
        if not hmac.compare_digest(self._mac(user_id, suffix, stamp), mac):
            raise SuffixRejected(INVALID, expired=False)
        try:
            made = int.from_bytes(_unb32(stamp), "big")
        except (binascii.Error, ValueError):
            raise SuffixRejected(INVALID, expired=False) from None
        now = self.clock()
        if made > now + MAX_SKEW_S:
            raise SuffixRejected(INVALID, expired=False)
        if now - made > self.ttl_s:
            raise SuffixRejected(EXPIRED, expired=True)
        return suffix
