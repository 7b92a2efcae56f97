"""/users/{user}/2fa: TOTP setup, enable, check and disable; what 2FA changes in
/authenticate (the master password no longer opens IMAP, POP3 and SMTP)."""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx
import pyotp
import pytest

from postern.accounts.rate_limit import Policy
from postern.serve.runtime import Runtime
from tests.helpers import create_user
from tests.http.admin.test_authenticate import PASSWORD, authenticate, error_of

UNKNOWN = "0123456789abcdef01234567"


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> str:
    return await create_user(client, "alice", address="alice@example.com")


def code(seed: str, steps_ahead: int = 0) -> str:
    """The code of the current time step, or of one a step ahead (accepted too, and
    not yet used: each step's code is taken once)."""
    return pyotp.TOTP(seed).at(time.time() + 30 * steps_ahead)


async def setup(client: httpx.AsyncClient, user: str, **body: Any) -> dict[str, Any]:
    response = await client.post(f"/users/{user}/2fa/totp/setup", json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def enable(client: httpx.AsyncClient, user: str) -> str:
    seed = (await setup(client, user, issuer="Postern Test"))["seed"]
    response = await client.post(f"/users/{user}/2fa/totp/enable", json={"token": code(seed)})
    assert response.status_code == 200, response.text
    return seed


async def enabled_2fa(client: httpx.AsyncClient, user: str) -> list[str]:
    response = await client.get(f"/users/{user}")
    assert response.status_code == 200, response.text
    return response.json()["enabled2fa"]


async def test_setup_answers_seed_and_qrcode(client: httpx.AsyncClient, alice: str) -> None:
    body = await setup(client, alice, issuer="Example Mail", ip="192.0.2.1")
    assert set(body) == {"success", "seed", "qrcode"} and body["success"] is True
    assert len(base64.b32decode(body["seed"])) >= 16
    assert body["qrcode"].startswith("data:image/png;base64,")
    assert base64.b64decode(body["qrcode"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    # Set up is not on: not until a code confirms it.
    assert await enabled_2fa(client, alice) == []
    assert (await authenticate(client, "alice", scope="imap")).status_code == 200


async def test_setup_keeps_the_seed_unless_fresh(client: httpx.AsyncClient, alice: str) -> None:
    first = (await setup(client, alice))["seed"]
    assert (await setup(client, alice))["seed"] == first
    fresh = (await setup(client, alice, fresh=True))["seed"]
    assert fresh != first
    # The old seed's codes no longer enable it.
    error_of(await client.post(f"/users/{alice}/2fa/totp/enable", json={"token": code(first)}), 403, "InvalidToken")
    assert (await client.post(f"/users/{alice}/2fa/totp/enable", json={"token": code(fresh)})).status_code == 200


async def test_enable_and_check(client: httpx.AsyncClient, alice: str) -> None:
    seed = (await setup(client, alice))["seed"]
    wrong = "000000" if code(seed) != "000000" else "111111"
    error_of(await client.post(f"/users/{alice}/2fa/totp/enable", json={"token": wrong}), 403, "InvalidToken")
    assert await enabled_2fa(client, alice) == []
    typed = code(seed)
    typed = f"{typed[:3]} {typed[3:]}"  # as authenticator apps show it
    response = await client.post(f"/users/{alice}/2fa/totp/enable", json={"token": typed, "ip": "192.0.2.9"})
    assert response.status_code == 200 and response.json() == {"success": True}
    assert await enabled_2fa(client, alice) == ["totp"]

    next_code = code(seed, 1)
    response = await client.post(f"/users/{alice}/2fa/totp/check", json={"token": next_code})
    assert response.status_code == 200 and response.json() == {"success": True}
    # Each code is taken once: replayed, it is refused.
    response = await client.post(f"/users/{alice}/2fa/totp/check", json={"token": next_code})
    assert response.status_code == 403
    assert response.json() == {"error": "Invalid authentication token", "code": "InvalidToken"}
    # So is the enabling code (an earlier step).
    error_of(await client.post(f"/users/{alice}/2fa/totp/check", json={"token": code(seed)}), 403, "InvalidToken")
    # A code of a step far away is refused.
    error_of(await client.post(f"/users/{alice}/2fa/totp/check", json={"token": code(seed, 5)}), 403, "InvalidToken")


async def test_setup_when_enabled_is_409(client: httpx.AsyncClient, alice: str) -> None:
    await enable(client, alice)
    error_of(await client.post(f"/users/{alice}/2fa/totp/setup", json={}), 409, "TotpEnabled")
    error_of(await client.post(f"/users/{alice}/2fa/totp/enable", json={"token": "123456"}), 409, "TotpEnabled")


async def test_check_and_enable_need_setup(client: httpx.AsyncClient, alice: str) -> None:
    error_of(await client.post(f"/users/{alice}/2fa/totp/enable", json={"token": "123456"}), 400, "TotpNotSetup")
    error_of(await client.post(f"/users/{alice}/2fa/totp/check", json={"token": "123456"}), 400, "TotpNotEnabled")
    await setup(client, alice)
    error_of(await client.post(f"/users/{alice}/2fa/totp/check", json={"token": "123456"}), 400, "TotpNotEnabled")


async def test_master_password_and_2fa(client: httpx.AsyncClient, alice: str) -> None:
    await enable(client, alice)
    response = await authenticate(client, "alice")
    assert response.status_code == 200, response.text
    assert response.json()["require2fa"] == ["totp"] and response.json()["scope"] == "master"
    for scope in ("imap", "pop3", "smtp"):
        body = error_of(await authenticate(client, "alice", scope=scope), 403, "AuthFailed")
        assert "application specific password" in body["error"]
    # A wrong password says nothing about 2FA.
    body = error_of(await authenticate(client, "alice", "wrong", scope="imap"), 403, "AuthFailed")
    assert "application" not in body["error"]
    # An ASP opens the mail doors, and needs no second factor.
    asp = (await client.post(f"/users/{alice}/asps", json={"description": "phone"})).json()["password"]
    for scope in ("imap", "pop3", "smtp"):
        response = await authenticate(client, "alice", asp, scope=scope)
        assert response.status_code == 200 and response.json()["require2fa"] is False


@pytest.mark.parametrize("path", ["/2fa/totp", "/2fa"])
async def test_disable(client: httpx.AsyncClient, alice: str, path: str) -> None:
    await enable(client, alice)
    response = await client.delete(f"/users/{alice}{path}", params={"ip": "192.0.2.3", "sess": "web-1"})
    assert response.status_code == 200 and response.json() == {"success": True}
    assert await enabled_2fa(client, alice) == []
    for scope in ("imap", "pop3", "smtp"):
        assert (await authenticate(client, "alice", scope=scope)).status_code == 200
    assert (await authenticate(client, "alice")).json()["require2fa"] is False
    action = "disable 2fa totp" if path == "/2fa/totp" else "disable 2fa"
    (entry,) = (await client.get(f"/users/{alice}/authlog", params={"action": action})).json()["results"]
    assert entry["ip"] == "192.0.2.3" and entry["sess"] == "web-1"
    # A new seed is needed to turn it on again.
    seed = (await setup(client, alice))["seed"]
    assert (await client.post(f"/users/{alice}/2fa/totp/enable", json={"token": code(seed, 1)})).status_code == 200


async def test_too_many_wrong_codes_is_429(client: httpx.AsyncClient, runtime: Runtime, alice: str) -> None:
    runtime.rate_limiter.policies["mfa"] = Policy(per_ip=100, per_account=3, window_s=60)
    seed = await enable(client, alice)
    wrong = "000000" if code(seed, 1) != "000000" else "111111"
    for _ in range(3):
        error_of(await client.post(f"/users/{alice}/2fa/totp/check", json={"token": wrong}), 403, "InvalidToken")
    response = await client.post(f"/users/{alice}/2fa/totp/check", json={"token": code(seed, 1)})
    assert response.status_code == 429, response.text
    assert response.json()["error"] == "Rate limit exceeded"
    assert 1 <= int(response.headers["Retry-After"]) <= 61


async def test_too_many_wrong_codes_per_ip_is_429(client: httpx.AsyncClient, runtime: Runtime, alice: str) -> None:
    runtime.rate_limiter.policies["mfa"] = Policy(per_ip=2, per_account=100, window_s=60)
    seed = await enable(client, alice)
    bob = await create_user(client, "bob")
    bob_seed = await enable(client, bob)
    wrong = "000000" if code(seed, 1) != "000000" else "111111"
    for _ in range(2):
        error_of(await client.post(f"/users/{alice}/2fa/totp/check", json={"token": wrong, "ip": "203.0.113.5"}), 403)
    # That address can no longer try anyone's codes; other addresses still can.
    response = await client.post(f"/users/{bob}/2fa/totp/check", json={"token": code(bob_seed, 1), "ip": "203.0.113.5"})
    assert response.status_code == 429
    response = await client.post(f"/users/{alice}/2fa/totp/check", json={"token": code(seed, 1), "ip": "203.0.113.5"})
    assert response.status_code == 429
    response = await client.post(f"/users/{alice}/2fa/totp/check", json={"token": code(seed, 1), "ip": "203.0.113.6"})
    assert response.status_code == 200, response.text


async def test_authlog_of_2fa(client: httpx.AsyncClient, alice: str) -> None:
    seed = await enable(client, alice)
    await client.post(f"/users/{alice}/2fa/totp/check", json={"token": code(seed, 1), "sess": "s"})
    await client.post(f"/users/{alice}/2fa/totp/check", json={"token": code(seed, 1), "sess": "s"})
    entries = (await client.get(f"/users/{alice}/authlog")).json()["results"]
    assert [(e["action"], e["result"]) for e in entries] == [
        ("check 2fa totp", "fail"),
        ("check 2fa totp", "success"),
        ("enable 2fa totp", "success"),
        ("setup 2fa totp", "success"),
    ]
    assert seed not in str(entries)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/2fa/totp/setup", {}),
        ("POST", "/2fa/totp/enable", {"token": "123456"}),
        ("POST", "/2fa/totp/check", {"token": "123456"}),
        ("DELETE", "/2fa/totp", None),
        ("DELETE", "/2fa", None),
    ],
)
async def test_unknown_user_is_404(client: httpx.AsyncClient, alice: str, method: str, path: str, body: Any) -> None:
    response = await client.request(method, f"/users/{UNKNOWN}{path}", json=body)
    error_of(response, 404, "UserNotFound")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/2fa/totp/enable", {}, "token"),
        ("/2fa/totp/enable", {"token": None}, "token"),
        ("/2fa/totp/check", {"token": ["123456"]}, "token"),
        ("/2fa/totp/check", {"token": ""}, "token"),
        ("/2fa/totp/check", {"token": "1" * 33}, "token"),
        ("/2fa/totp/check", {"token": "123456", "sess": "\x00"}, "sess"),
        ("/2fa/totp/setup", {"fresh": "sometimes"}, "fresh"),
        ("/2fa/totp/setup", {"issuer": "x" * 256}, "issuer"),
    ],
)
async def test_invalid_input_is_400(client: httpx.AsyncClient, alice: str, path: str, body: dict[str, Any], field: str) -> None:
    error = error_of(await client.post(f"/users/{alice}{path}", json=body), 400, "InputValidationError")
    assert field in error.get("details", {}), error


async def test_users_are_separate(client: httpx.AsyncClient, alice: str) -> None:
    bob = await create_user(client, "bob")
    seed = await enable(client, alice)
    assert await enabled_2fa(client, bob) == []
    # Alice's code is not Bob's.
    error_of(await client.post(f"/users/{bob}/2fa/totp/check", json={"token": code(seed, 1)}), 400, "TotpNotEnabled")
    assert (await authenticate(client, "bob", PASSWORD, scope="imap")).status_code == 200


async def test_issuer_too_long_for_a_qr_code(client: httpx.AsyncClient, alice: str) -> None:
    """255 characters of four UTF-8 bytes each, percent-encoded, do not fit in a QR code."""
    error = error_of(await client.post(f"/users/{alice}/2fa/totp/setup", json={"issuer": "\U0001f512" * 255}), 400, "InputValidationError")
    assert "issuer" in error["details"]
    # Nothing was set up: enabling still needs a setup first.
    error_of(await client.post(f"/users/{alice}/2fa/totp/enable", json={"token": "123456"}), 400, "TotpNotSetup")
    unusual = await setup(client, alice, issuer="Mail: a/b?c&d=%é \x01")
    assert unusual["qrcode"].startswith("data:image/png;base64,")
