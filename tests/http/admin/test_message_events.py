"""GET /users/{user}/mailboxes/{mailbox}/messages/{message}/events: the timeline of
a submitted message (STORE, QUEUED, then ACCEPTED or DEFERRED) and of one received
by MX, and the 404s."""

from __future__ import annotations

import asyncio
import smtplib
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import select, update

from postern.delivery.dns import StaticResolver
from postern.serve.runtime import Runtime
from postern.storage.schema import outbound
from tests.helpers import create_user, folder_id, make_message
from tests.sink import SmtpSink

PASSWORD = "correct horse battery"
UNKNOWN_ID = "0123456789abcdef01234567"
WAIT = 15.0


def submit(port: int, mail_from: str, rcpts: list[str], raw: bytes, login: str = "alice") -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example.org", timeout=20) as smtp:
        smtp.login(login, PASSWORD)
        assert smtp.mail(mail_from)[0] == 250
        for rcpt in rcpts:
            assert smtp.rcpt(rcpt)[0] == 250
        return smtp.data(raw)


def send_mx(port: int, mail_from: str, rcpts: list[str], raw: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="sender.example.org", timeout=20) as smtp:
        smtp.ehlo()
        assert smtp.mail(mail_from)[0] == 250
        for rcpt in rcpts:
            assert smtp.rcpt(rcpt)[0] == 250
        return smtp.data(raw)


async def until(condition: Any, timeout: float = WAIT) -> Any:
    async def poll() -> Any:
        while not (value := await condition()):
            await asyncio.sleep(0.02)
        return value

    return await asyncio.wait_for(poll(), timeout)


async def only_message(client: httpx.AsyncClient, user_id: str, path: str) -> tuple[str, int]:
    folder = await folder_id(client, user_id, path)
    response = await client.get(f"/users/{user_id}/mailboxes/{folder}/messages")
    assert response.status_code == 200, response.text
    [message] = response.json()["results"]
    return folder, message["id"]


async def timeline(client: httpx.AsyncClient, user_id: str, folder: str, uid: int) -> dict[str, Any]:
    response = await client.get(f"/users/{user_id}/mailboxes/{folder}/messages/{uid}/events")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    for event in body["events"]:
        assert isinstance(event["id"], str) and event["id"]
        datetime.fromisoformat(event["time"])
    return body


async def until_actions(client: httpx.AsyncClient, user_id: str, folder: str, uid: int, last: str) -> list[dict[str, Any]]:
    async def reached() -> list[dict[str, Any]] | None:
        events = (await timeline(client, user_id, folder, uid))["events"]
        return events if events and events[-1]["action"] == last else None

    return await until(reached)


async def test_submitted_message_timeline(
    mail_doors: Any, sink: SmtpSink, client: httpx.AsyncClient, runtime: Runtime
) -> None:
    alice = await create_user(client, "alice", address="alice@example.com")
    sink.serve_domain("remote.org")
    raw = make_message(From="alice@example.com", To="carol@remote.org")
    code, reply = await asyncio.to_thread(submit, mail_doors.submission, "alice@example.com", ["carol@remote.org"], raw)
    assert code == 250, reply
    await sink.wait_for(1)

    folder, uid = await only_message(client, alice, "Sent Mail")
    events = await until_actions(client, alice, folder, uid, "ACCEPTED")
    assert [e["action"] for e in events] == ["STORE", "QUEUED", "ACCEPTED"]
    store, queued, accepted = events

    assert store["source"] == "SUBMISSION"
    assert store["transtype"] == "ESMTPA"
    assert store["origin"] == "127.0.0.1"
    assert store["originhost"] == "client.example.org"
    assert store["from"] == "alice@example.com"
    assert store["to"] == ["carol@remote.org"]

    async with runtime.db.read() as conn:
        [row] = list(await conn.execute(select(outbound)))
    assert queued["queueId"] == row.queue_id
    assert queued["from"] == "alice@example.com"
    assert queued["to"] == ["carol@remote.org"]
    assert reply.decode().endswith(row.queue_id)

    assert accepted["queueId"] == row.queue_id
    assert accepted["to"] == ["carol@remote.org"]
    assert accepted["response"].startswith("250")
    assert "queued by sink" in accepted["response"]
    assert accepted["dst"] == "sink.example.net"
    assert accepted["seq"] == "001"
    assert store["time"] <= queued["time"] <= accepted["time"]

    # The timeline is the Sent copy's: the queue rows point at it.
    assert (await timeline(client, alice, folder, uid))["id"] == row.message_mid


async def test_deferred_event(
    mail_doors: Any, sink: SmtpSink, resolver: StaticResolver, client: httpx.AsyncClient, runtime: Runtime
) -> None:
    alice = await create_user(client, "alice", address="alice@example.com")
    sink.serve_domain("remote.org")
    sink.rcpt_replies.append("451 4.7.1 greylisted, come back later")
    raw = make_message(From="alice@example.com", To="carol@remote.org")
    code, _ = await asyncio.to_thread(submit, mail_doors.submission, "alice@example.com", ["carol@remote.org"], raw)
    assert code == 250

    folder, uid = await only_message(client, alice, "Sent Mail")
    events = await until_actions(client, alice, folder, uid, "DEFERRED")
    assert [e["action"] for e in events] == ["STORE", "QUEUED", "DEFERRED"]
    deferred = events[-1]
    assert deferred["response"] == "451 4.7.1 greylisted, come back later"
    assert deferred["to"] == ["carol@remote.org"]
    assert deferred["dst"] == "sink.example.net"
    next_attempt = datetime.fromisoformat(deferred["nextAttempt"])
    assert next_attempt > datetime.fromisoformat(deferred["time"])

    # The retry is accepted: the timeline goes on.
    async with runtime.db.write() as conn:
        await conn.execute(update(outbound).values(next_attempt_ms=0))
    runtime.outbound._wakeup.set()
    events = await until_actions(client, alice, folder, uid, "ACCEPTED")
    assert [e["action"] for e in events] == ["STORE", "QUEUED", "DEFERRED", "ACCEPTED"]
    assert len(sink.received) == 1


async def test_mx_delivery_store_event_and_404s(mail_doors: Any, client: httpx.AsyncClient) -> None:
    alice = await create_user(client, "alice", address="alice@example.com")
    bob = await create_user(client, "bob", address="bob@example.com")
    raw = make_message(From="Bob <bob@example.org>", To="alice@example.com")
    code, _ = await asyncio.to_thread(send_mx, mail_doors.smtp, "bob@example.org", ["alice@example.com"], raw)
    assert code == 250
    folder, uid = await only_message(client, alice, "INBOX")
    events = (await timeline(client, alice, folder, uid))["events"]
    assert [e["action"] for e in events] == ["STORE"]
    [store] = events
    assert store["source"] == "MX"
    assert store["origin"] == "127.0.0.1"
    assert store["transtype"] == "ESMTP"
    assert store["from"] == "bob@example.org"
    assert store["to"] == ["alice@example.com"]

    bob_inbox = await folder_id(client, bob, "INBOX")

    async def status(user: str, mailbox: str, message: int | str) -> int:
        return (await client.get(f"/users/{user}/mailboxes/{mailbox}/messages/{message}/events")).status_code

    assert await status(alice, folder, uid) == 200
    assert await status(alice, folder, uid + 1) == 404
    assert await status(alice, UNKNOWN_ID, uid) == 404
    assert await status(UNKNOWN_ID, folder, uid) == 404
    # Bob cannot read alice's message through his id, nor through his own mailbox.
    assert await status(bob, folder, uid) == 404
    assert await status(bob, bob_inbox, uid) == 404
    # Alice's id with Bob's mailbox is not a way in either.
    assert await status(alice, bob_inbox, uid) == 404
    response = await client.get(f"/users/{alice}/mailboxes/{folder}/messages/{uid + 1}/events")
    assert response.json().get("code") == "MessageNotFound"
