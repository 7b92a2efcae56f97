"""argon2id password hashes, computed off the event loop (unless cheaper than the hand-off)."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

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

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        if _cheap(stored_hash or self._decoy):
            return self._verify(stored_hash, password)
        return await asyncio.to_thread(self._verify, stored_hash, password)

    def _verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash or self._decoy, password) and stored_hash is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
