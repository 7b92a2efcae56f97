"""PATCH /api/sudo and DELETE /api/user."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from postern.accounts import api_keys as api_keys_module
from postern.accounts.rate_limit import Policy
from postern.serve.runtime import Runtime
from postern.storage.schema import api_keys, mailboxes, users
from tests.http.api.helpers import PASSWORD, Outbox, auth, login, signed_up


async def user_id_of(runtime: Runtime, email: str) -> str:
    async with runtime.db.read() as conn:
        return await conn.scalar(select(users.c.id).where(users.c.email_key == email))


async def test_delete_needs_sudo_mode_of_the_same_key(api: httpx.AsyncClient, client: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    key = await signed_up(api, outbox, "ali@example.org")
    other = (await login(api, "ali@example.org"))["api_key"]
    user_id = await user_id_of(runtime, "ali@example.org")
    response = await api.delete("/api/user", headers=auth(key))
    assert response.status_code == 440
    assert "sudo" in response.json()["error"]
    wrong = await api.patch("/api/sudo", json={"password": "wrong password"}, headers=auth(key))
    assert (wrong.status_code, wrong.json()) == (403, {"error": "Invalid password"})
    assert (await api.delete("/api/user", headers=auth(key))).status_code == 440
    ok = await api.patch("/api/sudo", json={"password": PASSWORD}, headers=auth(key))
    assert (ok.status_code, ok.json()) == (200, {"ok": True})
    # Sudo mode belongs to the key that asked for it.
    assert (await api.delete("/api/user", headers=auth(other))).status_code == 440
    deleted = await api.delete("/api/user", headers=auth(key))
    assert (deleted.status_code, deleted.json()) == (200, {"ok": True})
    assert (await client.get(f"/users/{user_id}")).status_code == 404
    assert (await api.get("/api/user_info", headers=auth(other))).status_code == 401
    async with runtime.db.read() as conn:
        assert list(await conn.execute(select(api_keys))) == []
        assert list(await conn.execute(select(mailboxes))) == []
    # The email may register again.
    assert (await api.post("/api/auth/register", json={"email": "ali@example.org", "password": PASSWORD})).status_code == 200


async def test_sudo_mode_ends(api: httpx.AsyncClient, outbox: Outbox, monkeypatch: pytest.MonkeyPatch) -> None:
    key = await signed_up(api, outbox, "bea@example.org")
    monkeypatch.setattr(api_keys_module, "SUDO_MS", -1)
    assert (await api.patch("/api/sudo", json={"password": PASSWORD}, headers=auth(key))).status_code == 200
    assert (await api.delete("/api/user", headers=auth(key))).status_code == 440


async def test_sudo_refuses_bad_input_and_is_rate_limited(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    key = await signed_up(api, outbox, "cas@example.org")
    for body in ({}, {"password": 1}, {"password": "a\x00"}):
        response = await api.patch("/api/sudo", json=body, headers=auth(key))
        assert response.status_code == 400 and response.json()["error"]
    runtime.rate_limiter.policies["login"] = Policy(per_ip=100, per_account=2, window_s=60)
    for _ in range(2):
        assert (await api.patch("/api/sudo", json={"password": "nope"}, headers=auth(key))).status_code == 403
    limited = await api.patch("/api/sudo", json={"password": PASSWORD}, headers=auth(key))
    assert (limited.status_code, limited.json()) == (429, {"error": "Rate limit exceeded"})


async def test_one_user_deleting_leaves_the_others(api: httpx.AsyncClient, outbox: Outbox) -> None:
    one = await signed_up(api, outbox, "dot@example.org")
    two = await signed_up(api, outbox, "eve@example.org")
    await api.patch("/api/sudo", json={"password": PASSWORD}, headers=auth(one))
    assert (await api.delete("/api/user", headers=auth(one))).status_code == 200
    assert (await api.get("/api/user_info", headers=auth(two))).json()["email"] == "eve@example.org"
