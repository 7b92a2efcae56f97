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

Password logins (every door: the admin API's /authenticate, the user API's login, IMAP,
POP3, SMTP AUTH) have a policy of their own, so that brute force stays expensive
without handing anyone a way to lock an account out (``check_login`` and the methods
after it). Their account is the account the login resolves to, whatever its spelling
(``login_account``):

- failures of one (IP, account) pair refuse that pair first (``per_pair`` per window);
- failures from one IP refuse that IP's new clients (``per_ip``);
- failures of one account from anywhere only make the account's new clients wait:
  past ``per_account`` failures, each failure sets a wait of 1, 2, 4 ... seconds,
  at most ``backoff_cap_s``;
- a known-good client (one that logged in to that account from that IP, or with that
  application password, before) is held back by its own pair only: neither the IP's
  nor the account's count can shut it out.

Counters live in the database on one machine (``DatabaseCounters``) and in Redis when
``POSTERN_REDIS_URL`` is set, so that every process of a cluster shares them.
"""

from __future__ import annotations

import hashlib
import logging
import time
import unicodedata
from dataclasses import dataclass
from typing import Protocol

import idna

from postern.errors import RateLimited
from postern.storage import rate_limits as store
from postern.storage.database import Database

log = logging.getLogger("postern.ratelimit")


@dataclass(frozen=True, slots=True)
class Policy:
    per_ip: int
    per_account: int
    window_s: int
    # Logins only (check_login): failures of one (IP, account) pair, the longest wait
    # of the account's backoff, and how long a successful client stays known-good.
    per_pair: int = 5
    backoff_cap_s: int = 300
    known_s: int = 90 * 24 * 3600


# Failures (check/failed) or calls (attempt) allowed per window. Logins from one IP get
# more room than one account: a household or office shares an address.
POLICIES: dict[str, Policy] = {
    # Passwords, HTTP and mail doors (check_login): 5 per (IP, account), then 50 per IP
    # for clients not known-good; past 10 per account, a backoff of at most 5 minutes.
    "login": Policy(per_ip=50, per_account=10, window_s=15 * 60, per_pair=5, backoff_cap_s=300),
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


def canonical_login(login: str) -> str:
    """One spelling for every way of writing a login: NFKC (fullwidth letters become
    ASCII), case-folded, without angle brackets, trailing dots or spaces, and the
    domain of an address in its ASCII (IDNA) form."""
    text = unicodedata.normalize("NFKC", login).strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    text = text.casefold().rstrip(".")
    local, at, domain = text.rpartition("@")
    if at:
        domain = domain.rstrip(".")
        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError):
            pass
        text = f"{local}@{domain}"
    return text


def login_account(user_id: str | None, login: str) -> str:
    """The account a login attempt counts against: the user it names (by any of its
    names or spellings), else the canonical form of what was typed."""
    return f"user:{user_id}" if user_id else f"login:{canonical_login(login)}"


def is_plain_login(login: str) -> bool:
    """Whether a login is written the one way postern accepts: no angle brackets, no
    trailing dot, nothing that NFKC would change (fullwidth letters, ligatures...).
    Case is free, and an address's domain may be written in Unicode or in ASCII
    (IDNA): those name the same domain."""
    text = login.strip()
    if not text or text.startswith("<") or text.endswith((">", ".")):
        return False
    return unicodedata.normalize("NFKC", text) == text


@dataclass(frozen=True, slots=True)
class LoginTicket:
    """What ``check_login`` found, for ``login_failed`` and ``login_succeeded``."""

    account: str
    ip: str | None
    known: bool
    pair_failures: int
    asp_known: bool = False


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

    # Logins -----------------------------------------------------------------------

    def _login_keys(self, account: str, ip: str | None) -> tuple[str, str, str, str]:
        who = account_key(account)
        where = ip or "-"
        return (
            f"login:pair:{where}:{who}",
            f"login:acct:{who}",
            f"login:wait:{who}",
            f"login:known:{where}:{who}",
        )

    async def check_login(self, account: str, *, ip: str | None, asp_id: str | None = None) -> LoginTicket:
        """Raise RateLimited if this password attempt must not be checked now (see the
        module's docstring); ``account`` comes from ``login_account``, ``asp_id`` is
        the application password the attempt names, if any."""
        policy = self.policies["login"]
        pair, _failures, wait, known_pair = self._login_keys(account, ip)
        keys = [pair, wait, known_pair, f"login:ip:{ip}" if ip else "", f"login:known-asp:{asp_id}" if asp_id else ""]
        counts = await self.counters.current_many([k for k in keys if k])
        found = dict(zip([k for k in keys if k], counts))
        pair_count, pair_left = found[pair]
        asp_known = asp_id is not None and found[keys[4]][0] > 0
        known = found[known_pair][0] > 0 or asp_known
        if pair_count >= policy.per_pair:
            log.info("rate limit reached: login per ip and account")
            raise RateLimited(int(pair_left) + 1)
        if not known:
            if ip and found[keys[3]][0] >= policy.per_ip:
                log.info("rate limit reached: login per ip")
                raise RateLimited(int(found[keys[3]][1]) + 1)
            if found[wait][0] > 0:
                log.info("rate limit reached: login per account (backoff)")
                raise RateLimited(int(found[wait][1]) + 1)
        return LoginTicket(account, ip, known, pair_count, asp_known)

    async def login_failed(self, ticket: LoginTicket) -> None:
        policy = self.policies["login"]
        pair, failures, wait, _known = self._login_keys(ticket.account, ticket.ip)
        await self.counters.increment(pair, policy.window_s)
        if ticket.ip:
            await self.counters.increment(f"login:ip:{ticket.ip}", policy.window_s)
        count, _left = await self.counters.increment(failures, policy.window_s)
        if count > policy.per_account:
            # 1, 2, 4 ... seconds, capped: the account's new clients wait that long.
            delay = min(policy.backoff_cap_s, 2 ** min(count - policy.per_account - 1, 30))
            await self.counters.reset(wait)
            await self.counters.increment(wait, max(int(delay), 1))

    async def login_succeeded(self, ticket: LoginTicket, asp_id: str | None = None) -> None:
        """The pair's failures are forgotten and the client is known-good from now on.
        The account's count is not reset: the owner logging in must not lift the wait
        off someone guessing elsewhere (the owner's known clients do not wait)."""
        policy = self.policies["login"]
        pair, _failures, _wait, known_pair = self._login_keys(ticket.account, ticket.ip)
        if ticket.pair_failures:
            await self.counters.reset(pair)
        if not ticket.known:
            await self.counters.increment(known_pair, policy.known_s)
        if asp_id is not None and not ticket.asp_known:
            await self.counters.increment(f"login:known-asp:{asp_id}", policy.known_s)

    async def sweep(self) -> int:
        """Delete the counters of windows that ended (database counters only: Redis
        expires its keys itself)."""
        sweep = getattr(self.counters, "sweep", None)
        return await sweep() if sweep is not None else 0

    async def close(self) -> None:
        await self.counters.close()
