"""PUT /users/{user}/logout and POST /users/{user}/password/reset."""

from __future__ import annotations

import asyncio
import time

import httpx
import pyotp
import pytest

from postern.events import UserLoggedOut
from postern.serve.runtime import Runtime
from tests.helpers import create_user
from tests.http.admin.test_authenticate import PASSWORD, authenticate, error_of

UNKNOWN = "0123456789abcdef01234567"


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> str:
    return await create_user(client, "alice", address="alice@example.com")


async def test_logout_tells_the_sessions(client: httpx.AsyncClient, runtime: Runtime, alice: str) -> None:
    bob = await create_user(client, "bob")
    with runtime.bus.subscribe(alice) as sessions, runtime.bus.subscribe(bob) as bobs:
        response = await client.put(f"/users/{alice}/logout", json={"reason": "Account was deleted", "ip": "192.0.2.1"})
        assert response.status_code == 200 and response.json() == {"success": True}
        event = await asyncio.wait_for(sessions.get(), 1)
        assert event == UserLoggedOut(alice, "Account was deleted")
        assert bobs.queue.empty()
    (entry,) = (await client.get(f"/users/{alice}/authlog", params={"action": "logout"})).json()["results"]
    assert entry["result"] == "success" and entry["reason"] == "Account was deleted" and entry["ip"] == "192.0.2.1"


async def test_logout_without_a_body(client: httpx.AsyncClient, runtime: Runtime, alice: str) -> None:
    with runtime.bus.subscribe(alice) as sessions:
        assert (await client.put(f"/users/{alice}/logout")).status_code == 200
        assert (await asyncio.wait_for(sessions.get(), 1)) == UserLoggedOut(alice, None)
        assert (await client.put(f"/users/{alice}/logout", json={})).status_code == 200
        assert (await asyncio.wait_for(sessions.get(), 1)) == UserLoggedOut(alice, None)


async def test_logout_errors(client: httpx.AsyncClient, runtime: Runtime, alice: str) -> None:
    with runtime.bus.subscribe(UNKNOWN) as nobody:
        error_of(await client.put(f"/users/{UNKNOWN}/logout", json={}), 404, "UserNotFound")
        assert nobody.queue.empty()
    for body in ({"reason": 5}, {"reason": "x" * 1025}, {"reason": "\x00"}):
        error = error_of(await client.put(f"/users/{alice}/logout", json=body), 400, "InputValidationError")
        assert "reason" in error["details"]


async def test_reset_password(client: httpx.AsyncClient, runtime: Runtime, alice: str) -> None:
    with runtime.bus.subscribe(alice) as sessions:
        response = await client.post(f"/users/{alice}/password/reset", json={"ip": "192.0.2.5", "sess": "ops"})
        assert response.status_code == 200, response.text
        # Sessions opened with the old password end.
        assert (await asyncio.wait_for(sessions.get(), 1)) == UserLoggedOut(alice, "Password reset")
    body = response.json()
    assert set(body) == {"success", "password"} and body["success"] is True
    temporary = body["password"]
    assert len(temporary) >= 16
    # The old password is gone; the new one works and asks for a change.
    error_of(await authenticate(client, "alice"), 403, "AuthFailed")
    answer = (await authenticate(client, "alice", temporary)).json()
    assert answer["requirePasswordChange"] is True and answer["id"] == alice
    assert (await client.get(f"/users/{alice}")).json()["requirePasswordChange"] is True
    # Until the user sets a password of their own (which ends the sessions too).
    with runtime.bus.subscribe(alice) as sessions:
        assert (await client.put(f"/users/{alice}", json={"password": "my own again"})).status_code == 200
        assert (await asyncio.wait_for(sessions.get(), 1)) == UserLoggedOut(alice, "Password changed")
        assert (await client.put(f"/users/{alice}", json={"name": "Not a password change"})).status_code == 200
        assert sessions.queue.empty()
    assert (await authenticate(client, "alice", "my own again")).json()["requirePasswordChange"] is False
    assert (await client.get(f"/users/{alice}")).json()["requirePasswordChange"] is False
    entries = (await client.get(f"/users/{alice}/authlog")).json()["results"]
    reset = next(e for e in entries if e["action"] == "password reset")
    assert reset["ip"] == "192.0.2.5" and reset["sess"] == "ops"
    assert temporary not in str(entries)


async def test_each_reset_makes_a_new_password(client: httpx.AsyncClient, alice: str) -> None:
    first = (await client.post(f"/users/{alice}/password/reset")).json()["password"]
    second = (await client.post(f"/users/{alice}/password/reset", json={})).json()["password"]
    assert first != second
    error_of(await authenticate(client, "alice", first), 403, "AuthFailed")
    assert (await authenticate(client, "alice", second)).status_code == 200


async def test_reset_turns_2fa_off(client: httpx.AsyncClient, alice: str) -> None:
    seed = (await client.post(f"/users/{alice}/2fa/totp/setup", json={})).json()["seed"]
    assert (await client.post(f"/users/{alice}/2fa/totp/enable", json={"token": pyotp.TOTP(seed).now()})).status_code == 200
    assert (await authenticate(client, "alice")).json()["require2fa"] == ["totp"]
    asp = (await client.post(f"/users/{alice}/asps", json={"description": "phone"})).json()["password"]

    temporary = (await client.post(f"/users/{alice}/password/reset", json={})).json()["password"]
    assert (await client.get(f"/users/{alice}")).json()["enabled2fa"] == []
    answer = (await authenticate(client, "alice", temporary)).json()
    assert answer["require2fa"] is False and answer["requirePasswordChange"] is True
    assert (await authenticate(client, "alice", temporary, scope="imap")).status_code == 200
    # Application passwords stay.
    assert (await authenticate(client, "alice", asp, scope="imap")).status_code == 200
    # The seed is gone too: its codes do not turn 2FA on again.
    error_of(await client.post(f"/users/{alice}/2fa/totp/enable", json={"token": pyotp.TOTP(seed).at(time.time() + 30)}), 400, "TotpNotSetup")
    actions = [e["action"] for e in (await client.get(f"/users/{alice}/authlog")).json()["results"]]
    assert "disable 2fa" in actions and "password reset" in actions


async def test_reset_errors(client: httpx.AsyncClient, alice: str) -> None:
    error_of(await client.post(f"/users/{UNKNOWN}/password/reset", json={}), 404, "UserNotFound")
    error = error_of(await client.post(f"/users/{alice}/password/reset", json={"ip": ["x"]}), 400, "InputValidationError")
    assert "ip" in error["details"]
    # Nothing changed.
    assert (await authenticate(client, "alice", PASSWORD)).json()["requirePasswordChange"] is False
