"""The once-per-interval record of autoreplies, in the database and in Redis: two
``Rules`` services (as two processes would have) agree on who replies."""

from __future__ import annotations

import asyncio
import os

import pytest
import redis.asyncio as redis
from redis.exceptions import RedisError

from postern.accounts.service import NewUser
from postern.events import EventBus
from postern.rules.service import Rules
from postern.serve.runtime import Runtime
from postern.storage.ids import new_id

REDIS_URL = os.environ.get("POSTERN_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


async def _require_redis() -> None:
    client = redis.from_url(REDIS_URL)
    try:
        await asyncio.wait_for(client.ping(), 3)
    except (RedisError, OSError) as error:
        message = f"Redis is not reachable at {REDIS_URL}: {error}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    finally:
        await client.aclose()


async def _two_agree(first: Rules, second: Rules, user: str) -> None:
    results = await asyncio.gather(*(rules.claim_autoreply(user, "Sender@Example.org") for rules in (first, second, first, second)))
    assert sorted(results) == [False, False, False, True]
    assert await second.claim_autoreply(user, "other@example.org") is True
    assert await first.claim_autoreply(user, "sender@example.org") is False  # case does not matter


async def test_in_the_database(runtime: Runtime) -> None:
    user = await runtime.accounts.create_user(NewUser(username="ann", password="x" * 12))
    other = Rules(runtime.db, EventBus())
    await _two_agree(runtime.rules, other, user)


async def test_in_redis(runtime: Runtime) -> None:
    await _require_redis()
    user = new_id()  # keys are per user: a fresh id keeps the shared Redis clean of clashes
    first = Rules(runtime.db, EventBus(), autoreply_interval_s=60, redis_url=REDIS_URL)
    second = Rules(runtime.db, EventBus(), autoreply_interval_s=60, redis_url=REDIS_URL)
    try:
        await _two_agree(first, second, user)
    finally:
        client = redis.from_url(REDIS_URL)
        await client.delete(f"postern:autoreply:{user}:sender@example.org", f"postern:autoreply:{user}:other@example.org")
        await client.aclose()
        await first.close()
        await second.close()
