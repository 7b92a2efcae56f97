"""POST /api/auth/forgot_password and /api/auth/reset_password."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select, update

from postern.accounts import registration as registration_module
from postern.accounts.rate_limit import Policy
from postern.serve.runtime import Runtime
from postern.storage.schema import authlog, users
from tests.http.api.helpers import PASSWORD, Outbox, auth, login, signed_up

NEW = "a brand new password"


def link_of(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("http"))


async def test_answers_alike_and_mails_only_real_accounts(api: httpx.AsyncClient, outbox: Outbox) -> None:
    await signed_up(api, outbox, "ada@example.org")
    before = len(await outbox.all())
    answers = []
    for address in ("ada@example.org", "nobody@example.org", "not an email"):
        response = await api.post("/api/auth/forgot_password", json={"email": address})
        answers.append((response.status_code, response.json()))
    assert answers == [(200, {"ok": True})] * 3
    mails = (await outbox.all())[before:]
    assert [m.to for m in mails] == ["ada@example.org"]
    assert link_of(mails[0].text).startswith("http://127.0.0.1:8080/reset_password?token=")


async def test_reset_with_the_code(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    old_key = await signed_up(api, outbox, "bo@example.org")
    async with runtime.db.write() as conn:
        await conn.execute(update(users).values(require_password_change=True))
    await api.post("/api/auth/forgot_password", json={"email": "bo@example.org"})
    code = (await outbox.last_to("bo@example.org")).code
    response = await api.post("/api/auth/reset_password", json={"email": "BO@example.org", "code": code, "password": NEW})
    assert (response.status_code, response.json()) == (200, {"ok": True})
    # Every key is signed out, the old password is gone, the new one works.
    assert (await api.get("/api/user_info", headers=auth(old_key))).status_code == 401
    refused = await api.post("/api/auth/login", json={"email": "bo@example.org", "password": PASSWORD})
    assert refused.status_code == 400
    assert (await login(api, "bo@example.org", NEW))["api_key"]
    async with runtime.db.read() as conn:
        assert await conn.scalar(select(users.c.require_password_change)) is False
        actions = [r.action for r in await conn.execute(select(authlog.c.action))]
    assert "password reset" in actions
    # The code is used up.
    again = await api.post("/api/auth/reset_password", json={"email": "bo@example.org", "code": code, "password": "yet another one"})
    assert (again.status_code, again.json()) == (400, {"error": "Wrong email or code"})


async def test_reset_with_the_link(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    runtime.settings.public_url = "https://mail.example.com/"
    await signed_up(api, outbox, "cy@example.org")
    await api.post("/api/auth/forgot_password", json={"email": "cy@example.org"})
    link = link_of((await outbox.last_to("cy@example.org")).text)
    assert link.startswith("https://mail.example.com/reset_password?")
    query = parse_qs(urlsplit(link).query)
    response = await api.post("/api/auth/reset_password", json={"token": query["token"][0], "code": query["code"][0], "password": NEW})
    assert response.status_code == 200, response.text
    assert (await login(api, "cy@example.org", NEW))["api_key"]
    forged = await api.post("/api/auth/reset_password", json={"token": query["token"][0] + "x", "code": query["code"][0], "password": NEW})
    assert (forged.status_code, forged.json()) == (400, {"error": "This reset link is invalid or has expired: ask for a new one"})


async def test_third_wrong_code_kills_it(api: httpx.AsyncClient, outbox: Outbox) -> None:
    await signed_up(api, outbox, "di@example.org")
    await api.post("/api/auth/forgot_password", json={"email": "di@example.org"})
    code = (await outbox.last_to("di@example.org")).code
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(2):
        response = await api.post("/api/auth/reset_password", json={"email": "di@example.org", "code": wrong, "password": NEW})
        assert response.status_code == 400
    assert (await api.post("/api/auth/reset_password", json={"email": "di@example.org", "code": wrong, "password": NEW})).status_code == 410
    assert (await api.post("/api/auth/reset_password", json={"email": "di@example.org", "code": code, "password": NEW})).status_code == 410
    assert (await login(api, "di@example.org"))["api_key"]  # unchanged
    await api.post("/api/auth/forgot_password", json={"email": "di@example.org"})
    fresh = (await outbox.last_to("di@example.org")).code
    assert (await api.post("/api/auth/reset_password", json={"email": "di@example.org", "code": fresh, "password": NEW})).status_code == 200


async def test_expired_code(api: httpx.AsyncClient, outbox: Outbox, monkeypatch: pytest.MonkeyPatch) -> None:
    await signed_up(api, outbox, "ed@example.org")
    monkeypatch.setattr(registration_module, "CODE_TTL_MS", -1)
    await api.post("/api/auth/forgot_password", json={"email": "ed@example.org"})
    code = (await outbox.last_to("ed@example.org")).code
    response = await api.post("/api/auth/reset_password", json={"email": "ed@example.org", "code": code, "password": NEW})
    assert (response.status_code, response.json()) == (400, {"error": "This reset code has expired: ask for a new one"})


async def test_unknown_email_answers_like_a_wrong_code(api: httpx.AsyncClient) -> None:
    response = await api.post("/api/auth/reset_password", json={"email": "nobody@example.org", "code": "123456", "password": NEW})
    assert (response.status_code, response.json()) == (400, {"error": "Wrong email or code"})


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"code": "123456", "password": NEW}, "email or token is required"),
        ({"email": "a@example.org", "password": NEW}, "code is required"),
        ({"email": "a@example.org", "code": "123456"}, "password is required"),
        ({"email": "a@example.org", "code": "123456", "password": "short"}, "password must be at least 8 characters"),
        ({"email": "a@example.org", "code": "123456", "password": "p" * 101}, "password must be at most 100 characters"),
    ],
)
async def test_reset_refuses_bad_input(api: httpx.AsyncClient, body: dict, error: str) -> None:
    response = await api.post("/api/auth/reset_password", json=body)
    assert (response.status_code, response.json()) == (400, {"error": error})


async def test_forgot_password_refuses_bad_input(api: httpx.AsyncClient) -> None:
    for body in ({}, {"email": ""}, {"email": None}, {"email": ["a@example.org"]}):
        response = await api.post("/api/auth/forgot_password", json=body)
        assert response.status_code == 400 and response.json()["error"]


async def test_rate_limits(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    runtime.rate_limiter.policies["send_code"] = Policy(per_ip=100, per_account=2, window_s=60)
    runtime.rate_limiter.policies["activate"] = Policy(per_ip=100, per_account=2, window_s=60)
    for _ in range(2):
        assert (await api.post("/api/auth/forgot_password", json={"email": "fi@example.org"})).status_code == 200
    limited = await api.post("/api/auth/forgot_password", json={"email": "fi@example.org"})
    assert (limited.status_code, limited.json()) == (429, {"error": "Rate limit exceeded"})
    for _ in range(2):
        await api.post("/api/auth/reset_password", json={"email": "fi@example.org", "code": "000000", "password": NEW})
    limited = await api.post("/api/auth/reset_password", json={"email": "fi@example.org", "code": "000000", "password": NEW})
    assert (limited.status_code, limited.json()) == (429, {"error": "Rate limit exceeded"})
