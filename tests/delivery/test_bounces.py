"""Bounces: the delivery status notification a permanent failure leaves in the
sender's INBOX (read back through the admin API), the failures that must not be
bounced, and the REJECTED event of the Sent copy."""

from __future__ import annotations

import asyncio
import email
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email import policy
from email.message import Message
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from postern.serve.runtime import Runtime
from postern.storage.schema import blobs, outbound
from tests.helpers import create_user, folder_id, make_message
from tests.sink import SmtpSink

WAIT = 15.0


@asynccontextmanager
async def worker(runtime: Runtime) -> AsyncIterator[None]:
    task = asyncio.create_task(runtime.outbound.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def until(condition: Any, timeout: float = WAIT) -> Any:
    """Wait for ``await condition()`` to be truthy; returns it."""

    async def poll() -> Any:
        while not (value := await condition()):
            await asyncio.sleep(0.02)
        return value

    return await asyncio.wait_for(poll(), timeout)


async def queue_rows(runtime: Runtime) -> list[Any]:
    async with runtime.db.read() as conn:
        return list(await conn.execute(select(outbound).order_by(outbound.c.rcpt)))


async def settled(runtime: Runtime, key: str, references_left: int) -> list[Any]:
    """Wait until every row is final and the queue gave back its blob references:
    the last thing the worker does for a message, after any bounce is stored."""

    async def done() -> list[Any] | None:
        rows = await queue_rows(runtime)
        if not rows or any(r.state not in ("delivered", "bounced") for r in rows):
            return None
        async with runtime.db.read() as conn:
            refcount = await conn.scalar(select(blobs.c.refcount).where(blobs.c.key == key))
        return rows if refcount == references_left else None

    return await until(done)


async def messages(client: httpx.AsyncClient, user_id: str, path: str = "INBOX") -> list[dict[str, Any]]:
    folder = await folder_id(client, user_id, path)
    response = await client.get(f"/users/{user_id}/mailboxes/{folder}/messages", params={"order": "asc"})
    assert response.status_code == 200, response.text
    return response.json()["results"]


async def eml(client: httpx.AsyncClient, user_id: str, uid: int, path: str = "INBOX") -> bytes:
    folder = await folder_id(client, user_id, path)
    response = await client.get(f"/users/{user_id}/mailboxes/{folder}/messages/{uid}/message.eml")
    assert response.status_code == 200, response.text
    return response.content


async def the_dsn(client: httpx.AsyncClient, user_id: str) -> tuple[dict[str, Any], bytes]:
    found = await until(lambda: messages(client, user_id))
    assert len(found) == 1, found
    return found[0], await eml(client, user_id, found[0]["id"])


def status_blocks(report: Message) -> list[dict[str, str]]:
    part = next(p for p in report.walk() if p.get_content_type() == "message/delivery-status")
    return [{k.lower(): " ".join(str(v).split()) for k, v in block.items()} for block in part.get_payload()]


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> str:
    return await create_user(client, "alice", address="alice@example.com")


async def submit(runtime: Runtime, user_id: str, rcpts: list[str], raw: bytes, mail_from: str = "alice@example.com") -> None:
    await runtime.submission.submit(
        user_id=user_id, mail_from=mail_from, recipients=rcpts, data=raw, client_ip="127.0.0.1", helo="client.example.org", transtype="ESMTPA"
    )


async def test_dsn_content(runtime: Runtime, sink: SmtpSink, client: httpx.AsyncClient, alice: str) -> None:
    sink.serve_domain("remote.org")
    sink.rcpt_replies.extend(["550 5.1.1 <carol@remote.org>: no such user", "550 5.2.1 dan's mailbox is disabled"])
    raw = make_message(subject="Lunch?", From="Alice <alice@example.com>", To="carol@remote.org, dan@remote.org", Message_ID="<lunch.1@example.com>")
    await submit(runtime, alice, ["carol@remote.org", "dan@remote.org"], raw)
    queued = await queue_rows(runtime)
    assert len(queued) == 2 and len({r.queue_id for r in queued}) == 1
    row = queued[0]
    async with worker(runtime):
        rows = await settled(runtime, row.blob_key, 1)
        summary, data = await the_dsn(client, alice)
    assert {r.state for r in rows} == {"bounced"}
    assert sink.received == []

    # One notification for both recipients, unread, from the mail system.
    assert summary["seen"] is False
    assert summary["subject"] == "Undelivered Mail Returned to Sender"
    assert data.startswith(b"Return-Path: <>\r\n")
    report = email.message_from_bytes(data, policy=policy.compat32)
    assert report["From"] == "Mail Delivery System <MAILER-DAEMON@mx.example.com>"
    assert report["To"] == "<alice@example.com>"
    assert report["Auto-Submitted"] == "auto-replied"
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    parts = report.get_payload()
    assert [p.get_content_type() for p in parts] == ["text/plain", "message/delivery-status", "text/rfc822-headers"]

    explanation = parts[0].get_payload(decode=True).decode()
    assert "mx.example.com" in explanation
    assert "<carol@remote.org>" in explanation and "<dan@remote.org>" in explanation

    message_block, *recipient_blocks = status_blocks(report)
    assert message_block["reporting-mta"] == "dns; mx.example.com"
    assert message_block["original-envelope-id"] == row.queue_id
    assert "arrival-date" in message_block
    by_recipient = {b["final-recipient"]: b for b in recipient_blocks}
    assert set(by_recipient) == {"rfc822; carol@remote.org", "rfc822; dan@remote.org"}
    carol, dan = by_recipient["rfc822; carol@remote.org"], by_recipient["rfc822; dan@remote.org"]
    assert carol["action"] == dan["action"] == "failed"
    assert carol["status"] == "5.1.1"
    assert dan["status"] == "5.2.1"
    assert carol["diagnostic-code"] == "smtp; 550 5.1.1 <carol@remote.org>: no such user"
    assert dan["diagnostic-code"] == "smtp; 550 5.2.1 dan's mailbox is disabled"
    assert carol["remote-mta"] == "dns; sink.example.net"
    assert "last-attempt-date" in carol

    # The original's header section comes back, its body does not.
    headers = parts[2].get_payload(decode=True)
    assert b"Subject: Lunch?" in headers
    assert b"Message-ID: <lunch.1@example.com>" in headers
    assert b"Hi there." not in headers
    # The Sent copy is still there, untouched.
    assert [m["subject"] for m in await messages(client, alice, "Sent Mail")] == ["Lunch?"]


async def test_no_bounce_for_the_null_sender_nor_for_a_bounce(
    runtime: Runtime, sink: SmtpSink, client: httpx.AsyncClient, alice: str
) -> None:
    sink.serve_domain("remote.org")
    sink.rcpt_replies.extend(["550 5.1.1 no such user", "550 5.1.1 no such user"])
    # A null-sender message (as a bounce relayed on would be).
    raw = make_message(From="Mail Delivery System <MAILER-DAEMON@example.com>", To="carol@remote.org")
    key = await runtime.blobs.put(raw)
    await runtime.outbound.enqueue(user_id=alice, mail_from="", recipients=["carol@remote.org"], blob_key=key, size=len(raw), message_mid=None)
    async with worker(runtime):
        [row] = await settled(runtime, key, 0)
    assert row.state == "bounced"
    assert row.last_response == "550 5.1.1 no such user"
    assert sink.received == []
    assert await messages(client, alice) == []

    # A message that is itself a delivery status notification, even with a real sender.
    report = (
        b"From: alice@example.com\r\nTo: dan@remote.org\r\nSubject: report\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n"
    )
    await submit(runtime, alice, ["dan@remote.org"], report)
    [second] = [r for r in await queue_rows(runtime) if r.rcpt == "dan@remote.org"]
    async with worker(runtime):
        await settled(runtime, second.blob_key, 1)
    [second] = [r for r in await queue_rows(runtime) if r.rcpt == "dan@remote.org"]
    assert second.state == "bounced"
    assert await messages(client, alice) == []


async def test_rejected_event_carries_the_response(runtime: Runtime, sink: SmtpSink, client: httpx.AsyncClient, alice: str) -> None:
    sink.serve_domain("remote.org")
    sink.rcpt_replies.append("550 5.7.1 we do not like you")
    raw = make_message(subject="Hi", From="alice@example.com", To="carol@remote.org")
    await submit(runtime, alice, ["carol@remote.org"], raw)
    [row] = await queue_rows(runtime)
    async with worker(runtime):
        await settled(runtime, row.blob_key, 1)
        await the_dsn(client, alice)
    [sent] = await messages(client, alice, "Sent Mail")
    folder = await folder_id(client, alice, "Sent Mail")
    response = await client.get(f"/users/{alice}/mailboxes/{folder}/messages/{sent['id']}/events")
    assert response.status_code == 200, response.text
    rejected = [e for e in response.json()["events"] if e["action"] == "REJECTED"]
    assert len(rejected) == 1
    assert rejected[0]["response"] == "550 5.7.1 we do not like you"
    assert rejected[0]["to"] == ["carol@remote.org"]
    assert rejected[0]["queueId"] == row.queue_id
    assert rejected[0]["dst"] == "sink.example.net"


async def test_a_bounce_that_cannot_be_stored_keeps_the_row_for_a_retry(
    runtime: Runtime, sink: SmtpSink, client: httpx.AsyncClient, alice: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bounce is stored before the row becomes final: when it cannot be stored,
    the row stays leased (to be tried again) and keeps its blob reference, rather
    than becoming final with its bounce lost."""
    sink.serve_domain("remote.org")
    sink.rcpt_replies.append("550 5.1.1 no such user")
    raw = make_message(From="alice@example.com", To="carol@remote.org")
    await submit(runtime, alice, ["carol@remote.org"], raw)
    [row] = await queue_rows(runtime)
    tried = asyncio.Event()

    async def failing_append(*args: Any, **kwargs: Any) -> Any:
        tried.set()
        raise RuntimeError("the store is unavailable")

    monkeypatch.setattr(runtime.outbound.committer, "append", failing_append)
    async with worker(runtime):
        await asyncio.wait_for(tried.wait(), WAIT)
    [after] = await queue_rows(runtime)
    assert after.state == "sending"
    async with runtime.db.read() as conn:
        refcount = await conn.scalar(select(blobs.c.refcount).where(blobs.c.key == row.blob_key))
    assert refcount == 2  # the Sent copy's and the queue's
