"""Authenticated submission over real sockets (smtplib in a thread): AUTH PLAIN and
LOGIN, TLS rules off loopback, sender checks, the Sent copy, local and remote
recipients, the recipients-per-24h limit, and DKIM signing of what leaves."""

from __future__ import annotations

import asyncio
import base64
import email
import smtplib
import ssl
from collections.abc import Callable
from email import policy
from typing import Any

import dkim
import httpx
import pytest
from sqlalchemy import select

from postern.delivery import dkim_keys
from postern.delivery.dkim_signing import dns_record_name
from postern.protocols.smtp import session as smtp_session
from postern.serve.runtime import Runtime
from postern.storage import outbound as queue_store
from postern.storage.schema import outbound
from tests.helpers import create_user, folder_id, make_message

PASSWORD = "correct horse battery"


def b64(value: str | bytes) -> str:
    if isinstance(value, str):
        value = value.encode()
    return base64.b64encode(value).decode()


def unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def in_thread(fn: Callable[[], Any]) -> Any:
    return await asyncio.wait_for(asyncio.to_thread(fn), 30)


def connect(port: int) -> smtplib.SMTP:
    smtp = smtplib.SMTP("127.0.0.1", port, local_hostname="client.example.org", timeout=20)
    smtp.ehlo()
    return smtp


def submit(
    port: int,
    mail_from: str,
    rcpts: list[str],
    raw: bytes,
    login: str = "alice",
    password: str = PASSWORD,
) -> dict[str, Any]:
    """Log in and send; returns the replies of each step."""
    smtp = connect(port)
    try:
        smtp.login(login, password)
        replies: dict[str, Any] = {"mail": smtp.mail(mail_from), "rcpt": [smtp.rcpt(r) for r in rcpts]}
        if any(code == 250 for code, _ in replies["rcpt"]) and replies["mail"][0] == 250:
            replies["data"] = smtp.data(raw)
        else:
            smtp.rset()
        return replies
    finally:
        smtp.quit()


async def listing(client: httpx.AsyncClient, user: str, path: str) -> list[dict[str, Any]]:
    folder = await folder_id(client, user, path)
    response = await client.get(f"/users/{user}/mailboxes/{folder}/messages", params={"order": "asc"})
    assert response.status_code == 200, response.text
    return response.json()["results"]


async def source(client: httpx.AsyncClient, user: str, path: str, uid: int) -> bytes:
    folder = await folder_id(client, user, path)
    response = await client.get(f"/users/{user}/mailboxes/{folder}/messages/{uid}/message.eml")
    assert response.status_code == 200, response.text
    return response.content


async def queue_rows(runtime: Runtime) -> list[Any]:
    async with runtime.db.read() as conn:
        return list(await conn.execute(select(outbound).order_by(outbound.c.rcpt)))


async def wait_rows_final(runtime: Runtime, count: int, timeout: float = 15.0) -> list[Any]:
    async def final() -> list[Any]:
        while True:
            rows = await queue_rows(runtime)
            if len(rows) >= count and all(r.state in queue_store.FINAL for r in rows):
                return rows
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(final(), timeout)


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> str:
    return await create_user(client, "alice", address="alice@example.com", name="Alice")


# AUTH -----------------------------------------------------------------------------


async def test_auth_plain_and_login_in_both_forms(mail_doors: Any, alice: str) -> None:
    """Each form on a connection of its own; AUTH is offered on loopback without TLS."""

    def plain_initial(smtp: smtplib.SMTP) -> list[tuple[int, bytes]]:
        return [smtp.docmd("AUTH", "PLAIN " + b64(f"\0alice\0{PASSWORD}"))]

    def plain_challenge(smtp: smtplib.SMTP) -> list[tuple[int, bytes]]:
        return [smtp.docmd("AUTH", "PLAIN"), smtp.docmd(b64(f"\0alice@example.com\0{PASSWORD}"))]

    def login_initial(smtp: smtplib.SMTP) -> list[tuple[int, bytes]]:
        return [smtp.docmd("AUTH", "LOGIN " + b64("alice")), smtp.docmd(b64(PASSWORD))]

    def login_challenge(smtp: smtplib.SMTP) -> list[tuple[int, bytes]]:
        return [smtp.docmd("AUTH", "LOGIN"), smtp.docmd(b64("alice")), smtp.docmd(b64(PASSWORD))]

    def run() -> dict[str, Any]:
        results: dict[str, Any] = {}
        for name, steps in [("plain_initial", plain_initial), ("plain_challenge", plain_challenge),
                            ("login_initial", login_initial), ("login_challenge", login_challenge)]:
            smtp = connect(mail_doors.submission)
            try:
                results["features"] = dict(smtp.esmtp_features)
                results[name] = steps(smtp)
                # Authenticated: the session may now send as alice.
                results[name].append(smtp.mail("alice@example.com"))
            finally:
                smtp.quit()
        return results

    results = await in_thread(run)
    assert "auth" in results["features"]
    assert {"PLAIN", "LOGIN"} <= set(results["features"]["auth"].upper().split())
    assert "starttls" in results["features"]

    [(code, message), mail] = results["plain_initial"]
    assert code == 235 and b"2.7.0" in message
    assert mail[0] == 250

    [(code1, prompt), (code2, message), mail] = results["plain_challenge"]
    assert code1 == 334 and prompt == b""
    assert code2 == 235, message
    assert mail[0] == 250

    [(code1, prompt), (code2, message), mail] = results["login_initial"]
    assert (code1, base64.b64decode(prompt)) == (334, b"Password:")
    assert code2 == 235, message
    assert mail[0] == 250

    [(code1, prompt1), (code2, prompt2), (code3, message), mail] = results["login_challenge"]
    assert (code1, base64.b64decode(prompt1)) == (334, b"Username:")
    assert (code2, base64.b64decode(prompt2)) == (334, b"Password:")
    assert code3 == 235, message
    assert mail[0] == 250


async def test_bad_credentials_and_mail_before_auth(mail_doors: Any, alice: str) -> None:
    def run() -> dict[str, Any]:
        smtp = connect(mail_doors.submission)
        try:
            out = {"mail_first": smtp.mail("alice@example.com")}
            smtp.rset()
            out["plain_wrong"] = smtp.docmd("AUTH", "PLAIN " + b64("\0alice\0not the password"))
            smtp.docmd("AUTH", "LOGIN " + b64("alice"))
            out["login_wrong"] = smtp.docmd(b64("not the password"))
            out["unknown_user"] = smtp.docmd("AUTH", "PLAIN " + b64(f"\0nobody\0{PASSWORD}"))
            out["mail_after_failures"] = smtp.mail("alice@example.com")
            return out
        finally:
            smtp.quit()

    out = await in_thread(run)
    assert out["mail_first"][0] == 530
    for key in ("plain_wrong", "login_wrong", "unknown_user"):
        code, message = out[key]
        assert code == 535 and b"5.7.8" in message, (key, out[key])
    assert out["mail_after_failures"][0] == 530


async def test_auth_off_loopback_needs_starttls(mail_doors: Any, alice: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(smtp_session, "is_loopback", lambda peer: False)

    def run() -> dict[str, Any]:
        smtp = connect(mail_doors.submission)
        try:
            before = dict(smtp.esmtp_features)
            refused = smtp.docmd("AUTH", "PLAIN " + b64(f"\0alice\0{PASSWORD}"))
            mail_refused = smtp.mail("alice@example.com")
            smtp.rset()
            smtp.starttls(context=unverified())
            smtp.ehlo()
            after = dict(smtp.esmtp_features)
            accepted = smtp.docmd("AUTH", "PLAIN " + b64(f"\0alice\0{PASSWORD}"))
            mail = smtp.mail("alice@example.com")
            return {"before": before, "refused": refused, "mail_refused": mail_refused, "after": after, "accepted": accepted, "mail": mail}
        finally:
            smtp.quit()

    result = await in_thread(run)
    assert "auth" not in result["before"]
    assert "starttls" in result["before"]
    assert result["refused"][0] == 538
    assert result["mail_refused"][0] == 530
    assert "auth" in result["after"]
    assert result["accepted"][0] == 235, result["accepted"]
    assert result["mail"][0] == 250


# Sender checks --------------------------------------------------------------------


async def test_envelope_sender_must_be_own_address(mail_doors: Any, client: httpx.AsyncClient, alice: str) -> None:
    await create_user(client, "bob", address="bob@example.com")

    def run() -> list[tuple[int, bytes]]:
        smtp = connect(mail_doors.submission)
        try:
            smtp.login("alice", PASSWORD)
            replies = [smtp.mail("bob@example.com")]
            smtp.rset()
            replies.append(smtp.mail("someone@elsewhere.org"))
            smtp.rset()
            replies.append(smtp.mail("<>"))
            smtp.rset()
            replies.append(smtp.mail("ALICE@Example.com"))
            return replies
        finally:
            smtp.quit()

    bob, stranger, null, own = await in_thread(run)
    assert bob[0] == 553 and b"5.7.1" in bob[1]
    assert stranger[0] == 553 and b"5.7.1" in stranger[1]
    # The null sender is for bounces, never for a user's mail.
    assert null[0] == 553
    assert own[0] == 250


async def test_secondary_address_may_send(
    mail_doors: Any, sink: Any, client: httpx.AsyncClient, runtime: Runtime, alice: str
) -> None:
    response = await client.post(f"/users/{alice}/addresses", json={"address": "al@example.com"})
    assert response.status_code == 200, response.text
    sink.serve_domain("remote.org")
    raw = make_message(From="Al <al@example.com>", To="carol@remote.org")
    replies = await in_thread(lambda: submit(mail_doors.submission, "al@example.com", ["carol@remote.org"], raw))
    assert replies["mail"][0] == 250
    assert replies["data"][0] == 250
    received = await sink.wait_for(1)
    assert received[0].mail_from == "al@example.com"
    assert received[0].rcpt_tos == ["carol@remote.org"]


async def test_from_header_of_another_address_is_refused(
    mail_doors: Any, sink: Any, client: httpx.AsyncClient, runtime: Runtime, alice: str
) -> None:
    await create_user(client, "bob", address="bob@example.com")
    sink.serve_domain("remote.org")
    forged_from = make_message(From="Bob <bob@example.com>", To="carol@remote.org")
    forged_sender = make_message(From="Alice <alice@example.com>", Sender="mallory@evil.example", To="carol@remote.org")
    no_from = make_message(From=None, To="carol@remote.org")  # type: ignore[arg-type]
    assert b"From:" not in no_from

    def run() -> list[tuple[int, bytes]]:
        smtp = connect(mail_doors.submission)
        try:
            smtp.login("alice", PASSWORD)
            replies = []
            for raw in (forged_from, forged_sender, no_from):
                assert smtp.mail("alice@example.com")[0] == 250
                assert smtp.rcpt("carol@remote.org")[0] == 250
                # smtplib returns (not raises) the reply to the message's end.
                replies.append(smtp.data(raw))
            return replies
        finally:
            smtp.quit()

    for code, message in await in_thread(run):
        assert code == 550 and b"5.7.1" in message
    assert await queue_rows(runtime) == []
    assert await listing(client, alice, "Sent Mail") == []
    assert sink.received == []


# What a submitted message becomes ----------------------------------------------------


async def test_sent_copy_and_remote_delivery(mail_doors: Any, sink: Any, client: httpx.AsyncClient, runtime: Runtime, alice: str) -> None:
    sink.serve_domain("remote.org")
    raw = make_message(subject="Out we go", body="Line one.\r\nLine two.\r\n", From="Alice <alice@example.com>", To="carol@remote.org")
    replies = await in_thread(lambda: submit(mail_doors.submission, "alice@example.com", ["carol@remote.org"], raw))
    assert replies["data"][0] == 250
    assert b"queued as" in replies["data"][1]

    received = await sink.wait_for(1)
    assert len(received) == 1
    assert received[0].mail_from == "alice@example.com"
    assert received[0].rcpt_tos == ["carol@remote.org"]
    # No DKIM key: the bytes are the submitted ones.
    assert received[0].data == raw
    assert received[0].helo == "mx.example.com"

    sent = await listing(client, alice, "Sent Mail")
    assert len(sent) == 1
    assert sent[0]["subject"] == "Out we go"
    assert sent[0]["seen"] is True
    assert await source(client, alice, "Sent Mail", sent[0]["id"]) == raw
    assert await listing(client, alice, "INBOX") == []

    rows = await wait_rows_final(runtime, 1)
    assert [(r.rcpt, r.state, r.attempts, r.mail_from) for r in rows] == [("carol@remote.org", "delivered", 1, "alice@example.com")]
    assert rows[0].last_response.startswith("250")


async def test_local_recipient_gets_it_in_inbox(mail_doors: Any, sink: Any, client: httpx.AsyncClient, runtime: Runtime, alice: str) -> None:
    bob = await create_user(client, "bob", address="bob@example.com")
    raw = make_message(subject="Hello Bob", From="Alice <alice@example.com>", To="bob@example.com")
    replies = await in_thread(lambda: submit(mail_doors.submission, "alice@example.com", ["bob@example.com"], raw))
    assert replies["data"][0] == 250

    inbox = await listing(client, bob, "INBOX")
    assert [m["subject"] for m in inbox] == ["Hello Bob"]
    assert inbox[0]["seen"] is False
    stored = await source(client, bob, "INBOX", inbox[0]["id"])
    assert stored.endswith(raw)
    assert len(await listing(client, alice, "Sent Mail")) == 1
    # Nothing waits in the queue or went out to the world: the local recipient is
    # recorded as delivered at once (it counts toward the daily recipient limit).
    [row] = await queue_rows(runtime)
    assert (row.rcpt, row.state, row.last_response) == ("bob@example.com", "delivered", "250 2.0.0 Delivered locally")
    await asyncio.sleep(0)
    assert sink.received == []


async def test_local_and_remote_recipients_together(
    mail_doors: Any, sink: Any, client: httpx.AsyncClient, runtime: Runtime, alice: str
) -> None:
    bob = await create_user(client, "bob", address="bob@example.com")
    sink.serve_domain("remote.org")
    raw = make_message(From="alice@example.com", To="bob@example.com, carol@remote.org")
    replies = await in_thread(lambda: submit(mail_doors.submission, "alice@example.com", ["bob@example.com", "carol@remote.org"], raw))
    assert replies["data"][0] == 250
    received = await sink.wait_for(1)
    assert received[0].rcpt_tos == ["carol@remote.org"]
    assert len(await listing(client, bob, "INBOX")) == 1
    rows = await wait_rows_final(runtime, 2)
    assert [(r.rcpt, r.state) for r in rows] == [("bob@example.com", "delivered"), ("carol@remote.org", "delivered")]
    assert [r.last_response for r in rows][0] == "250 2.0.0 Delivered locally"


async def test_recipients_limit_per_day(mail_doors: Any, sink: Any, client: httpx.AsyncClient, runtime: Runtime) -> None:
    await create_user(client, "dave", address="dave@example.com", recipients=2)
    sink.serve_domain("remote.org")
    raw = make_message(From="dave@example.com", To="x@remote.org")

    first = await in_thread(lambda: submit(mail_doors.submission, "dave@example.com", ["one@remote.org"], raw, login="dave"))
    assert first["data"][0] == 250
    second = await in_thread(
        lambda: submit(mail_doors.submission, "dave@example.com", ["two@remote.org", "three@remote.org"], raw, login="dave")
    )
    assert second["rcpt"][0][0] == 250
    assert second["rcpt"][1][0] == 452
    assert b"4.5.3" in second["rcpt"][1][1]
    assert second["data"][0] == 250
    third = await in_thread(lambda: submit(mail_doors.submission, "dave@example.com", ["four@remote.org"], raw, login="dave"))
    assert third["rcpt"][0][0] == 452
    assert "data" not in third

    await sink.wait_for(2)
    rows = await wait_rows_final(runtime, 2)
    assert sorted(r.rcpt for r in rows) == ["one@remote.org", "two@remote.org"]
    assert {r.state for r in rows} == {"delivered"}


async def test_local_recipients_count_toward_the_daily_limit(mail_doors: Any, client: httpx.AsyncClient, runtime: Runtime) -> None:
    await create_user(client, "dave", address="dave@example.com", recipients=2)
    for name in ("erin", "frank", "grace"):
        await create_user(client, name, address=f"{name}@example.com")
    raw = make_message(From="dave@example.com", To="someone@example.com")
    for name in ("erin", "frank"):
        replies = await in_thread(lambda: submit(mail_doors.submission, "dave@example.com", [f"{name}@example.com"], raw, login="dave"))
        assert replies["data"][0] == 250
    third = await in_thread(lambda: submit(mail_doors.submission, "dave@example.com", ["grace@example.com"], raw, login="dave"))
    assert third["rcpt"][0][0] == 452
    assert "data" not in third


# DKIM ---------------------------------------------------------------------------------


async def test_dkim_signed_when_domain_has_a_key(mail_doors: Any, sink: Any, runtime: Runtime, alice: str) -> None:
    key, name, value = await dkim_keys.create_key(runtime.db, "example.com")
    assert name == dns_record_name(key)
    sink.serve_domain("remote.org")
    raw = make_message(subject="Signed", From="Alice <alice@example.com>", To="carol@remote.org")
    replies = await in_thread(lambda: submit(mail_doors.submission, "alice@example.com", ["carol@remote.org"], raw))
    assert replies["data"][0] == 250

    received = (await sink.wait_for(1))[0].data
    assert received.startswith(b"DKIM-Signature:")
    assert received.endswith(raw)
    parsed = email.message_from_bytes(received, policy=policy.compat32)
    signature = str(parsed["DKIM-Signature"])
    assert "d=example.com" in signature.replace(" ", "")

    def dnsfunc(qname: bytes, timeout: int = 5) -> bytes | None:
        return value.encode() if qname.lower().rstrip(b".") == name.encode() else None

    assert dkim.verify(received, dnsfunc=dnsfunc) is True
    # A tampered body fails: the check is real.
    assert dkim.verify(received.replace(b"Hi there.", b"Hi there!"), dnsfunc=dnsfunc) is False


async def test_unsigned_without_a_key(mail_doors: Any, sink: Any, runtime: Runtime, alice: str) -> None:
    # A key for another domain does not sign alice's mail.
    await dkim_keys.create_key(runtime.db, "other.example")
    sink.serve_domain("remote.org")
    raw = make_message(From="Alice <alice@example.com>", To="carol@remote.org")
    await in_thread(lambda: submit(mail_doors.submission, "alice@example.com", ["carol@remote.org"], raw))
    received = (await sink.wait_for(1))[0].data
    assert b"DKIM-Signature" not in received
    assert received == raw
