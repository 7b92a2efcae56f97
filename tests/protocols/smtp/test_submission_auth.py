"""SMTP AUTH on the submission door through the accounts service: application
specific passwords and their scopes, 2FA (the master password no longer opens SMTP),
rate limits (454 once an address or account failed too often), the authentication log."""

from __future__ import annotations

from typing import Any

import httpx
import pyotp
import pytest

from postern.accounts.rate_limit import Policy
from postern.serve.runtime import Runtime
from tests.helpers import create_user, make_message
from tests.protocols.smtp.test_submission import PASSWORD, b64, connect, in_thread


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> str:
    return await create_user(client, "alice", address="alice@example.com", name="Alice")


async def create_asp(client: httpx.AsyncClient, user: str, **body: Any) -> str:
    response = await client.post(f"/users/{user}/asps", json={"description": "mail client", **body})
    assert response.status_code == 200, response.text
    return response.json()["password"]


def auth(port: int, login: str, password: str) -> tuple[int, bytes]:
    smtp = connect(port)
    try:
        return smtp.docmd("AUTH", "PLAIN " + b64(f"\0{login}\0{password}"))
    finally:
        smtp.close()


async def auth_reply(port: int, login: str, password: str) -> tuple[int, bytes]:
    return await in_thread(lambda: auth(port, login, password))  # type: ignore[no-any-return]


async def test_asp_sends_mail(mail_doors: Any, client: httpx.AsyncClient, alice: str) -> None:
    password = await create_asp(client, alice, scopes=["smtp"])
    spaced = " ".join(password[i : i + 4] for i in range(0, 16, 4))

    def run() -> dict[str, Any]:
        smtp = connect(mail_doors.submission)
        try:
            smtp.login("alice", spaced)
            return smtp.sendmail("alice@example.com", ["alice@example.com"], make_message(subject="by ASP", From="Alice <alice@example.com>"))
        finally:
            smtp.quit()

    assert await in_thread(run) == {}


async def test_asp_scopes_are_enforced(mail_doors: Any, client: httpx.AsyncClient, alice: str) -> None:
    imap_only = await create_asp(client, alice, scopes=["imap", "pop3"])
    everything = await create_asp(client, alice)
    code, message = await auth_reply(mail_doors.submission, "alice", imap_only)
    assert code == 535 and b"5.7.8" in message
    code, _ = await auth_reply(mail_doors.submission, "alice@example.com", everything)
    assert code == 235


async def test_2fa_refuses_the_master_password(mail_doors: Any, client: httpx.AsyncClient, alice: str) -> None:
    seed = (await client.post(f"/users/{alice}/2fa/totp/setup", json={})).json()["seed"]
    assert (await client.post(f"/users/{alice}/2fa/totp/enable", json={"token": pyotp.TOTP(seed).now()})).status_code == 200
    code, message = await auth_reply(mail_doors.submission, "alice", PASSWORD)
    assert code == 535 and b"application specific password" in message
    # A wrong password is still just a wrong password (no hint about 2FA).
    code, message = await auth_reply(mail_doors.submission, "alice", "not the password")
    assert code == 535 and b"application" not in message
    # An application password works.
    code, _ = await auth_reply(mail_doors.submission, "alice", await create_asp(client, alice))
    assert code == 235
    # With 2FA off again, so does the master password.
    assert (await client.delete(f"/users/{alice}/2fa")).status_code == 200
    code, _ = await auth_reply(mail_doors.submission, "alice", PASSWORD)
    assert code == 235


async def test_too_many_failures_answer_454(mail_doors: Any, client: httpx.AsyncClient, runtime: Runtime, alice: str) -> None:
    runtime.rate_limiter.policies["login"] = Policy(per_ip=4, per_account=2, window_s=60, per_pair=2)
    for _ in range(2):
        code, _ = await auth_reply(mail_doors.submission, "alice", "wrong")
        assert code == 535
    # This client (address and account) is limited, even with the right password.
    code, message = await auth_reply(mail_doors.submission, "alice", PASSWORD)
    assert code == 454 and b"4.7.0" in message and b"Too many" in message
    # Then the address: two more failures on other accounts fill its bucket of four.
    for login in ("nobody", "someone"):
        code, _ = await auth_reply(mail_doors.submission, login, "wrong")
        assert code == 535
    await create_user(client, "bob")
    code, _ = await auth_reply(mail_doors.submission, "bob", PASSWORD)
    assert code == 454


async def test_authentications_are_logged(mail_doors: Any, client: httpx.AsyncClient, alice: str) -> None:
    password = await create_asp(client, alice)
    await auth_reply(mail_doors.submission, "alice", "wrong")
    await auth_reply(mail_doors.submission, "alice", password)
    entries = (await client.get(f"/users/{alice}/authlog", params={"action": "authentication"})).json()["results"]
    assert [e["result"] for e in entries] == ["success", "fail"]
    for entry in entries:
        assert entry["protocol"] == "SMTP" and entry["ip"] == "127.0.0.1" and entry["scope"] == "smtp"
    assert entries[0]["asp"]
    assert password not in str(entries) and "wrong" not in str(entries)


async def test_login_after_a_failure_in_one_session(mail_doors: Any, client: httpx.AsyncClient, alice: str) -> None:
    password = await create_asp(client, alice)

    def run() -> list[Any]:
        smtp = connect(mail_doors.submission)
        try:
            first = smtp.docmd("AUTH", "PLAIN " + b64("\0alice\0wrong"))
            second = smtp.docmd("AUTH", "PLAIN " + b64(f"\0alice\0{password}"))
            return [first, second, smtp.mail("alice@example.com")]
        finally:
            smtp.close()

    first, second, mail = await in_thread(run)
    assert first[0] == 535 and second[0] == 235 and mail[0] == 250
