"""The rate limiter, on both kinds of counters: in the database and in Redis.

Redis is expected at POSTERN_TEST_REDIS_URL (default redis://127.0.0.1:6379/15). Without
one, the Redis tests skip on a developer's machine and fail in CI (CI has one). Each
test uses keys under a prefix of its own and deletes only those."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest

from postern.accounts.rate_limit import DatabaseCounters, Policy, RateLimiter, RedisCounters, account_key
from postern.errors import RateLimited
from postern.serve.runtime import Runtime

REDIS_URL = os.environ.get("POSTERN_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POLICIES = {
    "login": Policy(per_ip=4, per_account=2, window_s=60),
    "register": Policy(per_ip=3, per_account=2, window_s=60),
    "short": Policy(per_ip=1, per_account=1, window_s=1),
}


async def _redis_counters() -> RedisCounters:
    counters = RedisCounters(REDIS_URL, prefix=f"postern-test:{secrets.token_hex(6)}:")
    try:
        await asyncio.wait_for(counters.client.ping(), 3)
    except Exception as error:
        await counters.close()
        message = f"Redis is not reachable at {REDIS_URL}: {error}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return counters


@pytest.fixture(params=["database", "redis"])
async def counters(request: pytest.FixtureRequest, runtime: Runtime) -> AsyncIterator[Any]:
    if request.param == "database":
        yield DatabaseCounters(runtime.db)
        return
    counters = await _redis_counters()
    try:
        yield counters
    finally:
        keys = [key async for key in counters.client.scan_iter(match=counters.prefix + "*")]
        if keys:
            await counters.client.delete(*keys)
        await counters.close()


@pytest.fixture
def limiter(counters: Any) -> RateLimiter:
    return RateLimiter(counters, POLICIES)


async def test_failures_fill_the_account_bucket(limiter: RateLimiter) -> None:
    assert await limiter.check("login", ip="192.0.2.1", account="alice") == 0
    await limiter.failed("login", ip="192.0.2.1", account="alice")
    assert await limiter.check("login", ip="192.0.2.1", account="alice") == 1
    await limiter.failed("login", ip="192.0.2.1", account="alice")
    with pytest.raises(RateLimited) as caught:
        await limiter.check("login", ip="192.0.2.9", account="alice")
    assert 1 <= caught.value.retry_after <= 61
    # The account key ignores case and surrounding spaces; other accounts are free.
    with pytest.raises(RateLimited):
        await limiter.check("login", account=" ALICE ")
    assert await limiter.check("login", ip="192.0.2.9", account="bob") == 0


async def test_failures_fill_the_ip_bucket(limiter: RateLimiter) -> None:
    for name in ("a", "b", "c", "d"):
        await limiter.failed("login", ip="192.0.2.1", account=name)
    with pytest.raises(RateLimited):
        await limiter.check("login", ip="192.0.2.1", account="someone else")
    with pytest.raises(RateLimited):
        await limiter.check("login", ip="192.0.2.1")
    assert await limiter.check("login", ip="192.0.2.2", account="someone else") == 0


async def test_success_clears_the_account_only(limiter: RateLimiter) -> None:
    for name in ("a", "a", "b", "c"):
        await limiter.failed("login", ip="192.0.2.1", account=name)
    with pytest.raises(RateLimited):
        await limiter.check("login", account="a")
    await limiter.succeeded("login", account="a")
    assert await limiter.check("login", account="a") == 0
    # The address's failures stay: a guesser cannot clear them by logging into an account of its own.
    with pytest.raises(RateLimited):
        await limiter.check("login", ip="192.0.2.1", account="a")


async def test_attempt_counts_every_call(limiter: RateLimiter) -> None:
    await limiter.attempt("register", ip="192.0.2.1", account="new@example.com")
    await limiter.attempt("register", ip="192.0.2.1", account="new@example.com")
    with pytest.raises(RateLimited):
        await limiter.attempt("register", ip="192.0.2.1", account="new@example.com")
    await limiter.attempt("register", ip="192.0.2.2", account="other@example.com")
    with pytest.raises(RateLimited):  # the address made its third call and more
        await limiter.attempt("register", ip="192.0.2.1", account="third@example.com")


async def test_actions_are_separate(limiter: RateLimiter) -> None:
    await limiter.failed("short", ip="192.0.2.1", account="alice")
    with pytest.raises(RateLimited):
        await limiter.check("short", account="alice")
    assert await limiter.check("login", ip="192.0.2.1", account="alice") == 0


async def test_windows_end(limiter: RateLimiter) -> None:
    await limiter.failed("short", ip="192.0.2.1", account="alice")
    with pytest.raises(RateLimited) as caught:
        await limiter.check("short", ip="192.0.2.1", account="alice")
    assert caught.value.retry_after <= 2
    await asyncio.sleep(1.1)
    assert await limiter.check("short", ip="192.0.2.1", account="alice") == 0
    # A new window starts with the next failure.
    await limiter.failed("short", account="alice")
    with pytest.raises(RateLimited):
        await limiter.check("short", account="alice")


async def test_without_ip_or_account(limiter: RateLimiter) -> None:
    for _ in range(10):
        await limiter.failed("login")
        await limiter.attempt("login")
    assert await limiter.check("login") == 0


async def test_concurrent_failures_are_all_counted(limiter: RateLimiter, counters: Any) -> None:
    await asyncio.gather(*(limiter.failed("login", account="busy") for _ in range(20)))
    [(count, _)] = await counters.current_many([f"login:account:{account_key('busy')}"])
    assert count == 20


async def test_sweep_removes_ended_windows(runtime: Runtime) -> None:
    counters = DatabaseCounters(runtime.db)
    limiter = RateLimiter(counters, POLICIES)
    await limiter.failed("short", ip="192.0.2.1", account="alice")
    await limiter.failed("login", ip="192.0.2.1", account="alice")
    assert await limiter.sweep() == 0
    await asyncio.sleep(1.1)
    assert await limiter.sweep() == 2  # the "short" window's two buckets
    # The live window stays: one more failure fills alice's bucket of two.
    await limiter.failed("login", account="alice")
    with pytest.raises(RateLimited):
        await limiter.check("login", account="alice")


async def test_redis_sweep_is_a_no_op() -> None:
    counters = await _redis_counters()
    try:
        assert await RateLimiter(counters, POLICIES).sweep() == 0
    finally:
        await counters.close()


async def test_runtime_uses_redis_when_configured(runtime: Runtime) -> None:
    assert isinstance(runtime.rate_limiter.counters, DatabaseCounters)
    limiter = RateLimiter.for_settings(runtime.db, REDIS_URL)
    try:
        assert isinstance(limiter.counters, RedisCounters)
    finally:
        await limiter.close()
