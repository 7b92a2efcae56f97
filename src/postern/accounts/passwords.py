"""argon2id password hashes, computed off the event loop (unless cheaper than the hand-off).

Hashes imported from elsewhere (bcrypt, crypt, PBKDF2, other argon2 kinds: see
foreign_hashes.py) are checked too, and ``needs_rehash`` tells the login doors to
replace them with an argon2id hash once the password is known."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from postern.accounts import foreign_hashes

# Hashes at most this costly (KiB of memory times passes) are checked in the event
# loop's thread: handing them to a worker thread costs more than they do (a few tens
# of microseconds; the production settings cost tens of milliseconds).
INLINE_COST = 64


def _cheap(stored_hash: str) -> bool:
    try:
        parameters = extract_parameters(stored_hash)
    except (InvalidHashError, ValueError):
        return False
    return parameters.memory_cost * parameters.time_cost <= INLINE_COST


class Passwords:
    def __init__(self, time_cost: int = 3, memory_kib: int = 65536, parallelism: int = 1):
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)
        # Verified against when a user does not exist, so that a failed login takes the
        # same time whether or not the account exists.
        self._decoy = self._hasher.hash("postern-decoy-password")

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    def imported(self, stored_hash: str) -> str:
        """A hash made elsewhere, as it will be stored: checked to be a whole,
        well-formed hash of a supported kind, else InvalidInput (never a hash kept as
        if it were a password, nor a string kept as if it were a hash)."""
        stored_hash = stored_hash.strip()
        if stored_hash.startswith("$argon2"):
            try:
                extract_parameters(stored_hash)
            except (InvalidHashError, ValueError):
                raise foreign_hashes.UnsupportedHash from None
            return stored_hash
        return foreign_hashes.parse(stored_hash)

    def needs_rehash(self, stored_hash: str | None) -> bool:
        """Whether a hash that just verified should be replaced by a new argon2id one
        (an imported kind, or argon2 with other parameters)."""
        if not stored_hash:
            return False
        if foreign_hashes.is_foreign(stored_hash):
            return True
        try:
            return self._hasher.check_needs_rehash(stored_hash)
        except (InvalidHashError, ValueError):
            return False

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        if stored_hash is not None and foreign_hashes.is_foreign(stored_hash):
            return await asyncio.to_thread(foreign_hashes.verify, stored_hash, password)
        if _cheap(stored_hash or self._decoy):
            return self._verify(stored_hash, password)
        return await asyncio.to_thread(self._verify, stored_hash, password)

    def _verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash or self._decoy, password) and stored_hash is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
