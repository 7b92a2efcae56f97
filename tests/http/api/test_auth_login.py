"""POST /api/auth/login, /api/auth/mfa, /api/auth/google and /facebook."""

from __future__ import annotations

import time

import httpx
import pyotp
import pytest
from sqlalchemy import select

from postern.accounts.rate_limit import Policy
from postern.accounts.social_login import InvalidSocialToken, SocialIdentity
from postern.serve.runtime import Runtime
from postern.storage.schema import authlog, users
from tests.helpers import create_user
from tests.http.api.helpers import PASSWORD, Outbox, auth, login, register, register_active

WRONG = {"error": "Email or password incorrect"}


async def user_id_of(runtime: Runtime, email: str) -> str:
    async with runtime.db.read() as conn:
        return await conn.scalar(select(users.c.id).where(users.c.email_key == email))


async def test_login_gives_a_working_api_key(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    await register_active(api, outbox, "ann@example.org")
    answer = await login(api, "ANN@example.org", device="Ann's phone")
    assert set(answer) == {"name", "email", "mfa_enabled", "mfa_key", "api_key"}
    assert (answer["name"], answer["email"], answer["mfa_enabled"], answer["mfa_key"]) == ("", "ann@example.org", False, "")
    assert len(answer["api_key"]) >= 32
    info = await api.get("/api/user_info", headers=auth(answer["api_key"]))
    assert info.status_code == 200 and info.json()["email"] == "ann@example.org"
    async with runtime.db.read() as conn:
        entries = list(await conn.execute(select(authlog).where(authlog.c.action == "authentication")))
    assert [(e.result, e.protocol, e.ip) for e in entries] == [("success", "API", "127.0.0.1")]
    assert answer["api_key"] not in entries[0].data


async def test_wrong_password_and_unknown_email_answer_alike(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    await register_active(api, outbox, "ben@example.org")
    answers = []
    for address, password in (("ben@example.org", "wrong password"), ("nobody@example.org", PASSWORD), ("not an email", PASSWORD)):
        response = await api.post("/api/auth/login", json={"email": address, "password": password, "device": "d"})
        answers.append((response.status_code, response.json()))
    assert answers == [(400, WRONG)] * 3
    async with runtime.db.read() as conn:
        failures = list(await conn.execute(select(authlog.c.result).where(authlog.c.action == "authentication")))
    assert [f.result for f in failures] == ["fail"]


async def test_login_of_an_account_not_activated_or_disabled(api: httpx.AsyncClient, client: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    await register(api, "cat@example.org")
    response = await api.post("/api/auth/login", json={"email": "cat@example.org", "password": PASSWORD, "device": "d"})
    assert (response.status_code, response.json()) == (422, {"error": "Please check your inbox for the activation email"})
    # Only with the right password: a wrong one is the usual answer.
    response = await api.post("/api/auth/login", json={"email": "cat@example.org", "password": "wrong password", "device": "d"})
    assert (response.status_code, response.json()) == (400, WRONG)
    await register_active(api, outbox, "dan@example.org")
    user_id = await user_id_of(runtime, "dan@example.org")
    key = (await login(api, "dan@example.org"))["api_key"]
    assert (await client.put(f"/users/{user_id}", json={"disabled": True})).status_code == 200
    response = await api.post("/api/auth/login", json={"email": "dan@example.org", "password": PASSWORD, "device": "d"})
    assert (response.status_code, response.json()) == (400, {"error": "Account disabled"})
    assert (await api.get("/api/user_info", headers=auth(key))).status_code == 401


async def test_users_made_by_the_operator_log_in_with_their_address(api: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    await create_user(client, "eve", address="eve@example.com", name="Eve")
    answer = await login(api, "eve@example.com", "correct horse battery")
    assert (answer["name"], answer["email"]) == ("Eve", "eve@example.com")
    assert (await login(api, "eve", "correct horse battery"))["api_key"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"email": "a@example.org"},
        {"password": PASSWORD},
        {"email": "a@example.org", "password": 5},
        {"email": "a@example.org", "password": PASSWORD, "device": "x" * 257},
        {"email": "a@example.org", "password": PASSWORD, "device": "a\x00b"},
    ],
)
async def test_login_refuses_bad_input(api: httpx.AsyncClient, body: dict) -> None:
    response = await api.post("/api/auth/login", json=body)
    assert response.status_code == 400
    assert isinstance(response.json()["error"], str) and response.json()["error"]


async def test_login_rate_limit_per_account_and_reset_by_success(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    # The client's own failures (one IP and account) limit it first; a success clears them.
    runtime.rate_limiter.policies["login"] = Policy(per_ip=100, per_account=100, window_s=60, per_pair=3)
    await register_active(api, outbox, "fox@example.org")
    for _ in range(2):
        await api.post("/api/auth/login", json={"email": "fox@example.org", "password": "wrong password"})
    await login(api, "fox@example.org")  # clears the account's failures
    for _ in range(3):
        response = await api.post("/api/auth/login", json={"email": "fox@example.org", "password": "wrong password"})
        assert response.status_code == 400
    limited = await api.post("/api/auth/login", json={"email": "fox@example.org", "password": PASSWORD})
    assert (limited.status_code, limited.json()) == (429, {"error": "Rate limit exceeded"})
    # Unknown emails are limited alike (a limit only on real accounts would tell which exist).
    for _ in range(3):
        await api.post("/api/auth/login", json={"email": "ghost@example.org", "password": "x"})
    limited = await api.post("/api/auth/login", json={"email": "ghost@example.org", "password": "x"})
    assert limited.status_code == 429


async def test_login_rate_limit_per_ip(api: httpx.AsyncClient, runtime: Runtime) -> None:
    runtime.rate_limiter.policies["login"] = Policy(per_ip=2, per_account=100, window_s=60)
    for n in range(2):
        await api.post("/api/auth/login", json={"email": f"u{n}@example.org", "password": "x"})
    assert (await api.post("/api/auth/login", json={"email": "u9@example.org", "password": "x"})).status_code == 429


# Two factors --------------------------------------------------------------------


async def with_totp(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox, email: str) -> pyotp.TOTP:
    await register_active(api, outbox, email)
    user_id = await user_id_of(runtime, email)
    setup = await runtime.two_factor.setup_totp(user_id, issuer="postern", label=email)
    totp = pyotp.TOTP(setup.secret)
    # The step before the current one: the login below uses the current one.
    await runtime.two_factor.enable_totp(user_id, totp.at(time.time() - 30))
    return totp


async def test_totp_login_takes_two_steps(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    totp = await with_totp(api, runtime, outbox, "gil@example.org")
    first = await login(api, "gil@example.org")
    assert first["mfa_enabled"] is True and first["api_key"] == "" and first["mfa_key"]
    wrong = await api.post("/api/auth/mfa", json={"mfa_token": "000000" if totp.now() != "000000" else "111111", "mfa_key": first["mfa_key"], "device": "d"})
    assert (wrong.status_code, wrong.json()) == (400, {"error": "Wrong TOTP Token"})
    code = totp.now()
    second = await api.post("/api/auth/mfa", json={"mfa_token": code, "mfa_key": first["mfa_key"], "device": "d"})
    assert second.status_code == 200, second.text
    body = second.json()
    assert set(body) == {"name", "email", "api_key"} and body["email"] == "gil@example.org"
    assert (await api.get("/api/user_info", headers=auth(body["api_key"]))).status_code == 200
    # A code is good once.
    replay = await api.post("/api/auth/mfa", json={"mfa_token": code, "mfa_key": first["mfa_key"], "device": "d"})
    assert (replay.status_code, replay.json()) == (400, {"error": "Wrong TOTP Token"})


async def test_mfa_key_must_be_ours_and_fresh(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    totp = await with_totp(api, runtime, outbox, "hal@example.org")
    user_id = await user_id_of(runtime, "hal@example.org")
    for mfa_key in (
        "garbage",
        "",
        runtime.server_key.sign(user_id, purpose="mfa", ttl_s=-1),  # expired
        runtime.server_key.sign(user_id, purpose="reset_password", ttl_s=300),  # made for something else
    ):
        response = await api.post("/api/auth/mfa", json={"mfa_token": totp.now(), "mfa_key": mfa_key, "device": "d"})
        assert (response.status_code, response.json()) == (400, {"error": "Invalid mfa_key"})
    assert (await api.post("/api/auth/mfa", json={"mfa_key": "x"})).status_code == 400


async def test_mfa_rate_limit(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    totp = await with_totp(api, runtime, outbox, "ivy@example.org")
    runtime.rate_limiter.policies["mfa"] = Policy(per_ip=100, per_account=2, window_s=60)
    mfa_key = (await login(api, "ivy@example.org"))["mfa_key"]
    wrong = "000000" if totp.now() != "000000" else "111111"
    for _ in range(2):
        assert (await api.post("/api/auth/mfa", json={"mfa_token": wrong, "mfa_key": mfa_key})).status_code == 400
    limited = await api.post("/api/auth/mfa", json={"mfa_token": totp.now(), "mfa_key": mfa_key})
    assert (limited.status_code, limited.json()) == (429, {"error": "Rate limit exceeded"})


# Providers ------------------------------------------------------------------------


class FakeVerifier:
    def __init__(self, identities: dict[str, SocialIdentity]):
        self.identities = identities

    async def verify(self, token: str) -> SocialIdentity:
        if token not in self.identities:
            raise InvalidSocialToken("unknown token")
        return self.identities[token]


async def test_providers_are_off_unless_configured(api: httpx.AsyncClient) -> None:
    response = await api.post("/api/auth/google", json={"google_token": "t", "device": "d"})
    assert (response.status_code, response.json()) == (400, {"error": "Google login is not configured on this server"})
    response = await api.post("/api/auth/facebook", json={"facebook_token": "t", "device": "d"})
    assert (response.status_code, response.json()) == (400, {"error": "Facebook login is not configured on this server"})
    assert (await api.post("/api/auth/google", json={"device": "d"})).status_code == 400


async def test_configured_provider_signs_in_and_creates_accounts(
    api: httpx.AsyncClient, client: httpx.AsyncClient, runtime: Runtime, outbox: Outbox
) -> None:
    runtime.user_login.verifiers["google"] = FakeVerifier(
        {
            "new": SocialIdentity("Jan@Example.org", "Jan"),
            "pending": SocialIdentity("kay@example.org", "Kay"),
            "no-email": SocialIdentity(None),
        }
    )
    answer = await api.post("/api/auth/google", json={"google_token": "new", "device": "d"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["name"], body["email"], body["mfa_enabled"]) == ("Jan", "jan@example.org", False)
    assert (await api.get("/api/user_info", headers=auth(body["api_key"]))).json()["name"] == "Jan"
    listed = (await client.get("/users", params={"query": "jan@"})).json()["results"]
    assert [(u["username"], u["activated"], u["hasPasswordSet"]) for u in listed] == [("jan@example.org", True, False)]
    # An account waiting for its code: the provider proved the email.
    await register(api, "kay@example.org")
    answer = await api.post("/api/auth/google", json={"google_token": "pending", "device": "d"})
    assert answer.status_code == 200 and answer.json()["api_key"]
    assert (await login(api, "kay@example.org"))["api_key"]
    answer = await api.post("/api/auth/google", json={"google_token": "forged", "device": "d"})
    assert (answer.status_code, answer.json()) == (400, {"error": "The Google token is invalid"})
    answer = await api.post("/api/auth/google", json={"google_token": "no-email", "device": "d"})
    assert answer.status_code == 400
