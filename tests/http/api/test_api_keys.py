"""API keys: the Authentication header, 401s, POST /api/api_key, GET /api/logout,
digests only, last_used_ms, and one user's key never reaching another's data."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select, update

from postern.accounts import api_keys as api_keys_module
from postern.serve.runtime import Runtime
from postern.storage.schema import api_keys
from tests.http.api.helpers import Outbox, auth, signed_up

KEYED = [
    ("GET", "/api/user_info", None),
    ("PATCH", "/api/user_info", {"name": "X"}),
    ("POST", "/api/api_key", {"device": "d"}),
    ("GET", "/api/logout", None),
    ("PATCH", "/api/sudo", {"password": "x"}),
    ("DELETE", "/api/user", None),
]


@pytest.mark.parametrize(("method", "path", "body"), KEYED)
async def test_every_keyed_endpoint_answers_401_without_a_good_key(
    api: httpx.AsyncClient, outbox: Outbox, method: str, path: str, body: dict | None
) -> None:
    key = await signed_up(api, outbox, "amy@example.org")
    for headers, error in (
        ({}, "An API key is required in the Authentication header"),
        ({"Authentication": ""}, "An API key is required in the Authentication header"),
        ({"Authentication": "wrong"}, "Wrong API key"),
        ({"Authentication": key[:-1]}, "Wrong API key"),
        ({"Authentication": "x" * 2000}, "Wrong API key"),
        ({"Authorization": key}, "An API key is required in the Authentication header"),
        ({"Authorization": f"Bearer {key}"}, "An API key is required in the Authentication header"),
    ):
        response = await api.request(method, path, json=body, headers=headers)
        assert (response.status_code, response.json()) == (401, {"error": error}), (headers, response.text)


async def test_create_key_and_logout(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    first = await signed_up(api, outbox, "bea@example.org")
    created = await api.post("/api/api_key", json={"device": "laptop"}, headers=auth(first))
    assert created.status_code == 201
    second = created.json()["api_key"]
    assert len(second) >= 32 and second != first
    # Only digests are stored.
    async with runtime.db.read() as conn:
        rows = list(await conn.execute(select(api_keys)))
    assert sorted(r.name for r in rows) == ["laptop", "test device"]
    digests = {r.key_digest for r in rows}
    assert digests == {runtime.server_key.digest(k, purpose="api_key") for k in (first, second)}
    assert not any(first in str(tuple(r)) or second in str(tuple(r)) for r in rows)
    # Logout revokes the key presented, and only it.
    out = await api.get("/api/logout", headers=auth(second))
    assert (out.status_code, out.json()) == (200, {"msg": "User is logged out"})
    assert (await api.get("/api/user_info", headers=auth(second))).status_code == 401
    assert (await api.get("/api/user_info", headers=auth(first))).status_code == 200
    assert (await api.get("/api/logout", headers=auth(second))).status_code == 401


@pytest.mark.parametrize("body", [{"device": "x" * 257}, {"device": 5}, {"device": "\x00"}])
async def test_create_key_refuses_bad_input(api: httpx.AsyncClient, outbox: Outbox, body: dict) -> None:
    key = await signed_up(api, outbox, "cal@example.org")
    response = await api.post("/api/api_key", json=body, headers=auth(key))
    assert response.status_code == 400 and response.json()["error"]


async def test_last_used_is_written_at_most_once_a_minute(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox, monkeypatch: pytest.MonkeyPatch) -> None:
    key = await signed_up(api, outbox, "dee@example.org")

    async def last_used() -> int | None:
        async with runtime.db.read() as conn:
            return await conn.scalar(select(api_keys.c.last_used_ms))

    assert await last_used() is None
    await api.get("/api/user_info", headers=auth(key))
    first = await last_used()
    assert first is not None
    async with runtime.db.write() as conn:
        await conn.execute(update(api_keys).values(last_used_ms=first - 30_000))
    await api.get("/api/user_info", headers=auth(key))
    assert await last_used() == first - 30_000  # within the minute: not written again
    monkeypatch.setattr(api_keys_module, "TOUCH_EVERY_MS", 10_000)
    await api.get("/api/user_info", headers=auth(key))
    assert await last_used() > first - 30_000


async def test_a_key_reaches_only_its_own_user(api: httpx.AsyncClient, outbox: Outbox) -> None:
    one = await signed_up(api, outbox, "eli@example.org")
    two = await signed_up(api, outbox, "flo@example.org")
    assert (await api.patch("/api/user_info", json={"name": "Eli"}, headers=auth(one))).json()["name"] == "Eli"
    mine = (await api.get("/api/user_info", headers=auth(two))).json()
    assert (mine["email"], mine["name"]) == ("flo@example.org", "")
    created = (await api.post("/api/api_key", json={"device": "x"}, headers=auth(two))).json()["api_key"]
    assert (await api.get("/api/user_info", headers=auth(created))).json()["email"] == "flo@example.org"
    await api.get("/api/logout", headers=auth(two))
    assert (await api.get("/api/user_info", headers=auth(one))).json()["email"] == "eli@example.org"
