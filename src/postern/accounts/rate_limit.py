"""One rate limiter for every way into postern: HTTP logins, the user API's mailed codes,
and the IMAP, POP3 and SMTP AUTH doors.

Each action has a policy: how many events one IP address, and one account, may cause
in a window. Two ways to count:

- ``attempt()`` counts every call (actions that send mail: register, reactivate,
  forgot_password) and refuses once a bucket is full;
- ``check()`` before and ``failed()`` after an attempt count only failures (logins,
  TOTP codes, activation codes), so that a user who types the right password is never
  slowed down by their own successes.

The account bucket is keyed by the login as typed (normalised), whether or not such an
account exists: a limit that only applied to real accounts would tell which exist.

Counters live in the database on one machine (``DatabaseCounters``) and in Redis when
``POSTERN_REDIS_URL`` is set, so that every process of a cluster shares them.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Protocol

from postern.errors import RateLimited
from postern.storage import rate_limits as store
from postern.storage.database import Database

log = logging.getLogger("postern.ratelimit")


@dataclass(frozen=True, slots=True)
class Policy:
    per_ip: int
    per_account: int
    window_s: int


# Failures (check/failed) or calls (attempt) allowed per window. Logins from one IP get
# more room than one account: a household or office shares an address.
POLICIES: dict[str, Policy] = {
    "login": Policy(per_ip=50, per_account=10, window_s=15 * 60),  # passwords: HTTP and mail doors
    "mfa": Policy(per_ip=50, per_account=10, window_s=15 * 60),  # TOTP codes
    "activate": Policy(per_ip=30, per_account=10, window_s=60 * 60),  # activation and reset codes
    "register": Policy(per_ip=10, per_account=3, window_s=60 * 60),
    "send_code": Policy(per_ip=20, per_account=5, window_s=60 * 60),  # reactivate, forgot_password
}


class Counters(Protocol):
    async def increment(self, key: str, window_s: int) -> tuple[int, float]:
        """One more event; returns the window's count and the seconds until it ends."""

    async def current_many(self, keys: list[str]) -> list[tuple[int, float]]:
        """Each key's count and the seconds until its window ends, in one round trip."""

    async def reset(self, key: str) -> None: ...

    async def close(self) -> None: ...


class DatabaseCounters:
    def __init__(self, db: Database):
        self.db = db

    async def increment(self, key: str, window_s: int) -> tuple[int, float]:
        now = int(time.time() * 1000)
        async with self.db.write() as conn:
            count, ends = await store.increment(conn, key, now, window_s * 1000)
        return count, (ends - now) / 1000

    async def current_many(self, keys: list[str]) -> list[tuple[int, float]]:
        now = int(time.time() * 1000)
        return [(count, (ends - now) / 1000) for count, ends in await store.current_many(self.db, keys, now)]

    async def reset(self, key: str) -> None:
        async with self.db.write() as conn:
            await store.reset(conn, key)

    async def sweep(self) -> int:
        async with self.db.write() as conn:
            return await store.delete_expired(conn, int(time.time() * 1000))

    async def close(self) -> None:
        return None


# INCR, and start the window's clock on its first event, atomically.
_INCREMENT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {count, redis.call('PTTL', KEYS[1])}
"""


class RedisCounters:
    """Counters in Redis, shared by every process; each key expires with its window."""

    def __init__(self, url: str, prefix: str = "postern:rl:"):
        import redis.asyncio as redis

        self.client = redis.from_url(url)
        self.prefix = prefix
        self._increment = self.client.register_script(_INCREMENT)

    async def increment(self, key: str, window_s: int) -> tuple[int, float]:
        count, ttl_ms = await self._increment(keys=[self.prefix + key], args=[window_s * 1000])
        return int(count), max(int(ttl_ms), 0) / 1000

    async def current_many(self, keys: list[str]) -> list[tuple[int, float]]:
        async with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.get(self.prefix + key)
                pipe.pttl(self.prefix + key)
            answers = await pipe.execute()
        return [(int(answers[i] or 0), max(int(answers[i + 1] or 0), 0) / 1000) for i in range(0, len(answers), 2)]

    async def reset(self, key: str) -> None:
        await self.client.delete(self.prefix + key)

    async def close(self) -> None:
        await self.client.aclose()


def account_key(login: str) -> str:
    """A bounded, case-insensitive key for the login as typed."""
    return hashlib.sha256(login.strip().lower().encode("utf-8", "surrogatepass")).hexdigest()[:32]


class RateLimiter:
    def __init__(self, counters: Counters, policies: dict[str, Policy] | None = None):
        self.counters = counters
        self.policies = dict(POLICIES if policies is None else policies)

    @classmethod
    def for_settings(cls, db: Database, redis_url: str | None) -> RateLimiter:
        return cls(RedisCounters(redis_url) if redis_url else DatabaseCounters(db))

    def _buckets(self, action: str, ip: str | None, account: str | None) -> list[tuple[str, int]]:
        policy = self.policies[action]
        buckets = []
        if ip:
            buckets.append((f"{action}:ip:{ip}", policy.per_ip))
        if account:
            buckets.append((f"{action}:account:{account_key(account)}", policy.per_account))
        return buckets

    async def check(self, action: str, *, ip: str | None = None, account: str | None = None) -> int:
        """Raise RateLimited if a bucket of ``action`` is already full. Returns the
        account's failures counted so far (0: ``succeeded`` has nothing to clear)."""
        account_count = 0
        buckets = self._buckets(action, ip, account)
        if not buckets:
            return 0
        counts = await self.counters.current_many([key for key, _ in buckets])
        for (key, limit), (count, remaining) in zip(buckets, counts):
            if count >= limit:
                log.info("rate limit reached: %s per %s", action, key.split(":", 2)[1])
                raise RateLimited(int(remaining) + 1)
            if key.startswith(f"{action}:account:"):
                account_count = count
        return account_count

    async def failed(self, action: str, *, ip: str | None = None, account: str | None = None) -> None:
        """Count a failed attempt."""
        window = self.policies[action].window_s
        for key, _limit in self._buckets(action, ip, account):
            await self.counters.increment(key, window)

    async def attempt(self, action: str, *, ip: str | None = None, account: str | None = None) -> None:
        """Count this call; raise RateLimited if it is one too many."""
        window = self.policies[action].window_s
        for key, limit in self._buckets(action, ip, account):
            count, remaining = await self.counters.increment(key, window)
            if count > limit:
                raise RateLimited(int(remaining) + 1)

    async def succeeded(self, action: str, *, account: str | None = None) -> None:
        """A success clears the account's failures (not the IP's: a guesser who also
        owns one account must not reset its count by logging into it)."""
        if account:
            await self.counters.reset(f"{action}:account:{account_key(account)}")

    async def sweep(self) -> int:
        """Delete the counters of windows that ended (database counters only: Redis
        expires its keys itself)."""
        sweep = getattr(self.counters, "sweep", None)
        return await sweep() if sweep is not None else 0

    async def close(self) -> None:
        await self.counters.close()
