"""POST /api/auth/register, /activate and /reactivate: an inactive account whose email
is not a hosted address, codes mailed for real, wrong and expired codes, 410, rate
limits, no enumeration."""

from __future__ import annotations

import asyncio
import email
from email import policy

import httpx
import pytest
from sqlalchemy import select

from postern.accounts import registration as registration_module
from postern.accounts.authlog import AuthMeta
from postern.accounts.rate_limit import Policy
from postern.delivery.router import RecipientRefused
from postern.errors import Forbidden
from postern.serve.runtime import Runtime
from postern.storage.schema import account_codes, mailboxes, users
from tests.helpers import create_user, folder_id
from tests.http.api.helpers import PASSWORD, Outbox, login, register
from tests.sink import SmtpSink

CONFIRM = {"msg": "User needs to confirm their account"}


async def user_row(runtime: Runtime, username: str):
    async with runtime.db.read() as conn:
        return (await conn.execute(select(users).where(users.c.username == username))).first()


async def mailbox_rows(runtime: Runtime, user_id: str):
    async with runtime.db.read() as conn:
        return list(await conn.execute(select(mailboxes).where(mailboxes.c.user_id == user_id)))


async def test_register_makes_an_inactive_user_without_a_hosted_address(
    api: httpx.AsyncClient, client: httpx.AsyncClient, runtime: Runtime, outbox: Outbox
) -> None:
    response = await api.post("/api/auth/register", json={"email": "Bob.Smith@Gmail.COM", "password": PASSWORD})
    assert response.status_code == 200
    assert response.json() == CONFIRM
    user = await user_row(runtime, "bob.smith@gmail.com")
    assert user is not None
    assert (user.email, user.email_key, user.activated, user.address) == ("bob.smith@gmail.com", "bob.smith@gmail.com", False, None)
    # Never a hosted address: postern accepts no mail for gmail.com because of it.
    assert (await client.get(f"/users/{user.id}/addresses")).json()["results"] == []
    with pytest.raises(RecipientRefused):
        await runtime.router.resolve("bob.smith@gmail.com")
    boxes = await mailbox_rows(runtime, user.id)
    assert [(b.email, b.is_default, b.verified) for b in boxes] == [("bob.smith@gmail.com", True, False)]
    # One user model: the admin API lists it.
    listed = (await client.get("/users", params={"query": "bob.smith"})).json()["results"]
    assert [(u["id"], u["activated"]) for u in listed] == [(user.id, False)]
    # The code is kept as a digest only.
    mail = await outbox.last_to("bob.smith@gmail.com")
    async with runtime.db.read() as conn:
        codes = list(await conn.execute(select(account_codes).where(account_codes.c.user_id == user.id)))
    assert len(codes) == 1 and codes[0].purpose == "activate"
    assert mail.code not in codes[0].code_digest


async def test_activation_mail_goes_out_through_the_queue(api: httpx.AsyncClient, runtime: Runtime, sink: SmtpSink) -> None:
    sink.serve_domain("gmail.test")
    await register(api, "carol@gmail.test")
    worker = asyncio.create_task(runtime.outbound.run())
    try:
        await runtime.registration.settle()
        received = await sink.wait_for(1)
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    message = email.message_from_bytes(received[0].data, policy=policy.default)
    assert received[0].rcpt_tos == ["carol@gmail.test"]
    assert received[0].mail_from == "no-reply@example.com"
    assert message["From"] == "postern <no-reply@example.com>"
    assert message["To"] == "carol@gmail.test"
    assert message["Date"] and message["Message-ID"].endswith("@mx.example.com>")
    assert message["Auto-Submitted"] == "auto-generated"
    body = message.get_content()
    code = body.split("Your activation code is: ")[1][:6]
    assert code.isdigit() and code in message["Subject"]
    # Not activated yet: the app shows this.
    refused = await api.post("/api/auth/login", json={"email": "carol@gmail.test", "password": PASSWORD, "device": "phone"})
    assert refused.status_code == 422
    assert refused.json() == {"error": "Please check your inbox for the activation email"}
    activated = await api.post("/api/auth/activate", json={"email": "carol@gmail.test", "code": code})
    assert activated.status_code == 200, activated.text
    user = await user_row(runtime, "carol@gmail.test")
    assert user.activated
    assert [b.verified for b in await mailbox_rows(runtime, user.id)] == [True]
    assert (await login(api, "carol@gmail.test"))["api_key"]
    # A code works once.
    again = await api.post("/api/auth/activate", json={"email": "carol@gmail.test", "code": code})
    assert again.status_code == 400


async def test_a_hosted_address_is_its_owners_and_gets_mail_locally(
    api: httpx.AsyncClient, client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Registering someone's hosted address makes no account (one named after it would
    take over logins by that address): its owner hears of it, in their INBOX."""
    alice = await create_user(client, "alice", address="alice@example.com")
    response = await api.post("/api/auth/register", json={"email": "alice@example.com", "password": "an attacker's password"})
    assert (response.status_code, response.json()) == (200, CONFIRM)
    await runtime.registration.settle()
    assert [u["id"] for u in (await client.get("/users")).json()["results"]] == [alice]
    inbox = await folder_id(client, alice, "INBOX")

    async def messages() -> list[dict]:
        return (await client.get(f"/users/{alice}/mailboxes/{inbox}/messages", params={"order": "asc"})).json()["results"]

    assert [m["subject"] for m in await messages()] == ["You already have an account"]
    # The owner uses the user API with the address, and gets reset codes there too.
    assert (await login(api, "alice@example.com", "correct horse battery"))["api_key"]
    assert (await api.post("/api/auth/forgot_password", json={"email": "alice@example.com"})).status_code == 200
    await runtime.registration.settle()
    found = await messages()
    assert found[-1]["subject"] == "Reset your password"
    raw = (await client.get(f"/users/{alice}/mailboxes/{inbox}/messages/{found[-1]['id']}/message.eml")).content
    code = raw.split(b"Your reset code is: ")[1][:6].decode()
    reset = await api.post("/api/auth/reset_password", json={"email": "alice@example.com", "code": code, "password": "a new password"})
    assert reset.status_code == 200, reset.text
    assert (await login(api, "alice", "a new password"))["api_key"]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"password": PASSWORD}, "email is required"),
        ({"email": "dave@example.org"}, "password is required"),
        ({"email": "not-an-email", "password": PASSWORD}, "not-an-email is not a valid email address"),
        ({"email": "dave@example.org", "password": "short"}, "password must be at least 8 characters"),
        ({"email": "dave@example.org", "password": "x" * 101}, "password must be at most 100 characters"),
        ({"email": "dave\x00@example.org", "password": PASSWORD}, "email must not contain NUL characters"),
        ({"email": 12, "password": PASSWORD}, "email must be a string"),
        ({"email": "a" * 60 + "@" + "b" * 63 + ".example.org", "password": PASSWORD}, "The email address is too long (at most 128 characters)"),
    ],
)
async def test_register_refuses_bad_input(api: httpx.AsyncClient, outbox: Outbox, body: dict, error: str) -> None:
    response = await api.post("/api/auth/register", json=body)
    assert response.status_code == 400
    assert response.json()["error"] == error
    assert await outbox.all() == []


@pytest.mark.parametrize("content", [b"", b"{", b"[]", b'"text"'])
async def test_register_refuses_bodies_that_are_not_objects(api: httpx.AsyncClient, content: bytes) -> None:
    response = await api.post("/api/auth/register", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"].startswith("Request body")


async def test_registering_an_existing_email_answers_the_same(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    first = await register(api, "erin@example.org")
    code = (await outbox.last_to("erin@example.org")).code
    assert (await api.post("/api/auth/activate", json={"email": "erin@example.org", "code": code})).status_code == 200
    again = await api.post("/api/auth/register", json={"email": "ERIN@example.org", "password": "another password"})
    assert (again.status_code, again.json(), again.headers["content-type"]) == (first.status_code, first.json(), first.headers["content-type"])
    # The owner hears of it; the password did not change.
    notice = await outbox.last_to("erin@example.org")
    assert "already has one" in notice.text
    assert (await login(api, "erin@example.org"))["api_key"]
    async with runtime.db.read() as conn:
        assert len(list(await conn.execute(select(users).where(users.c.email_key == "erin@example.org")))) == 1


async def test_registering_again_before_activation_mails_a_new_code(api: httpx.AsyncClient, outbox: Outbox) -> None:
    await register(api, "fay@example.org")
    old = (await outbox.last_to("fay@example.org")).code
    await register(api, "fay@example.org")
    new = (await outbox.last_to("fay@example.org")).code
    assert len(await outbox.all()) == 2
    if old != new:
        stale = await api.post("/api/auth/activate", json={"email": "fay@example.org", "code": old})
        assert stale.status_code == 400
    assert (await api.post("/api/auth/activate", json={"email": "fay@example.org", "code": new})).status_code == 200


async def test_third_wrong_code_kills_it_until_reactivation(api: httpx.AsyncClient, outbox: Outbox) -> None:
    await register(api, "gus@example.org")
    code = (await outbox.last_to("gus@example.org")).code
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(2):
        response = await api.post("/api/auth/activate", json={"email": "gus@example.org", "code": wrong})
        assert (response.status_code, response.json()) == (400, {"error": "Wrong email or code"})
    third = await api.post("/api/auth/activate", json={"email": "gus@example.org", "code": wrong})
    assert third.status_code == 410
    assert "Too many wrong tries" in third.json()["error"]
    # Dead: even the right code is refused now.
    assert (await api.post("/api/auth/activate", json={"email": "gus@example.org", "code": code})).status_code == 410
    response = await api.post("/api/auth/reactivate", json={"email": "gus@example.org"})
    assert (response.status_code, response.json()) == (200, CONFIRM)
    fresh = (await outbox.last_to("gus@example.org")).code
    assert (await api.post("/api/auth/activate", json={"email": "gus@example.org", "code": fresh})).status_code == 200


async def test_expired_code_is_refused_with_a_clear_error(
    api: httpx.AsyncClient, outbox: Outbox, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registration_module, "CODE_TTL_MS", -1)
    await register(api, "hal@example.org")
    code = (await outbox.last_to("hal@example.org")).code
    response = await api.post("/api/auth/activate", json={"email": "hal@example.org", "code": code})
    assert response.status_code == 400
    assert response.json() == {"error": "This activation code has expired: ask for a new one"}
    # A wrong guess learns nothing about it.
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    assert (await api.post("/api/auth/activate", json={"email": "hal@example.org", "code": wrong})).json() == {"error": "Wrong email or code"}
    # The garbage collector removes expired codes.
    assert await runtime.registration.expire_codes() == 1


async def test_activate_answers_alike_for_unknown_and_active_accounts(api: httpx.AsyncClient, outbox: Outbox) -> None:
    await register(api, "ida@example.org")
    code = (await outbox.last_to("ida@example.org")).code
    await api.post("/api/auth/activate", json={"email": "ida@example.org", "code": code})
    answers = []
    for address in ("ida@example.org", "nobody@example.org", "not an email"):
        response = await api.post("/api/auth/activate", json={"email": address, "code": "123456"})
        answers.append((response.status_code, response.json()))
    assert answers == [(400, {"error": "Wrong email or code"})] * 3


@pytest.mark.parametrize(
    "body", [{}, {"email": "x@example.org"}, {"code": "123456"}, {"email": "x@example.org", "code": ""}, {"email": "x@example.org", "code": "1" * 65}]
)
async def test_activate_refuses_bad_input(api: httpx.AsyncClient, body: dict) -> None:
    response = await api.post("/api/auth/activate", json=body)
    assert response.status_code == 400
    assert isinstance(response.json()["error"], str)


async def test_reactivate_always_answers_200(api: httpx.AsyncClient, outbox: Outbox) -> None:
    await register(api, "jo@example.org")
    await register(api, "kim@example.org")
    code = (await outbox.last_to("kim@example.org")).code
    await api.post("/api/auth/activate", json={"email": "kim@example.org", "code": code})
    before = len(await outbox.all())
    answers = []
    for address in ("jo@example.org", "kim@example.org", "nobody@example.org"):
        response = await api.post("/api/auth/reactivate", json={"email": address})
        answers.append((response.status_code, response.json()))
    assert answers == [(200, CONFIRM)] * 3
    # Only the inactive account got a new code.
    assert [m.to for m in (await outbox.all())[before:]] == ["jo@example.org"]
    assert (await api.post("/api/auth/reactivate", json={})).status_code == 400


async def test_rate_limits(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    runtime.rate_limiter.policies["register"] = Policy(per_ip=100, per_account=2, window_s=60)
    runtime.rate_limiter.policies["activate"] = Policy(per_ip=100, per_account=2, window_s=60)
    runtime.rate_limiter.policies["send_code"] = Policy(per_ip=100, per_account=1, window_s=60)
    for _ in range(2):
        await register(api, "lou@example.org")
    limited = await api.post("/api/auth/register", json={"email": "lou@example.org", "password": PASSWORD})
    assert (limited.status_code, limited.json()) == (429, {"error": "Rate limit exceeded"})
    assert int(limited.headers["Retry-After"]) >= 1
    for _ in range(2):
        await api.post("/api/auth/activate", json={"email": "lou@example.org", "code": "000000"})
    limited = await api.post("/api/auth/activate", json={"email": "lou@example.org", "code": "000000"})
    assert (limited.status_code, limited.json()) == (429, {"error": "Rate limit exceeded"})
    assert (await api.post("/api/auth/reactivate", json={"email": "lou@example.org"})).status_code == 200
    limited = await api.post("/api/auth/reactivate", json={"email": "lou@example.org"})
    assert (limited.status_code, limited.json()) == (429, {"error": "Rate limit exceeded"})


async def test_registration_can_be_closed(api: httpx.AsyncClient, runtime: Runtime) -> None:
    runtime.settings.registration = False
    response = await api.post("/api/auth/register", json={"email": "max@example.org", "password": PASSWORD})
    assert (response.status_code, response.json()) == (403, {"error": "Registration is closed on this server"})


async def test_an_account_not_yet_activated_opens_no_door(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    """Until the mailed code confirms the email, the password opens neither the admin
    API's /authenticate (which IMAP, POP3 and SMTP AUTH share) nor the user API."""
    await register(api, "gina@example.org")
    with pytest.raises(Forbidden) as refused:
        await runtime.accounts.authenticate("gina@example.org", PASSWORD, "imap", AuthMeta(protocol="IMAP"))
    assert refused.value.code == "UserNotActivated"
    await register_active_after(api, outbox, "gina@example.org")
    result = await runtime.accounts.authenticate("gina@example.org", PASSWORD, "imap", AuthMeta(protocol="IMAP"))
    assert result.user.email == "gina@example.org"


async def register_active_after(api: httpx.AsyncClient, outbox: Outbox, email: str) -> None:
    code = (await outbox.last_to(email)).code
    response = await api.post("/api/auth/activate", json={"email": email, "code": code})
    assert response.status_code == 200, response.text
