"""The durable outbound queue against a local SMTP sink and a static resolver: MX
order and fallbacks, null MX, DNS failures, retries, bounces, expiry, one
transaction per domain, relay mode, restart, expired leases and blob references."""

from __future__ import annotations

import asyncio
import dataclasses
import email
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from email import policy
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select, update

from postern.delivery.dns import DnsError, StaticResolver
from postern.serve.runtime import Runtime
from postern.storage import outbound as queue_store
from postern.storage.ids import now_ms
from postern.storage.schema import blobs, message_events, outbound
from tests.conftest import FAST_PASSWORDS
from tests.helpers import create_user, folder_id, make_message
from tests.sink import SmtpSink

WAIT = 15.0


@asynccontextmanager
async def worker(runtime: Runtime) -> AsyncIterator[None]:
    """The queue worker of ``runtime``, for the block's duration."""
    task = asyncio.create_task(runtime.outbound.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def send(runtime: Runtime, user_id: str, rcpts: list[str], *, mail_from: str = "alice@example.com", subject: str = "Queued") -> bytes:
    """Submit as alice (the Sent copy, then the queue), without an SMTP client."""
    raw = make_message(subject=subject, From=f"Alice <{mail_from}>", To=", ".join(rcpts))
    result = await runtime.submission.submit(
        user_id=user_id, mail_from=mail_from, recipients=rcpts, data=raw, client_ip="127.0.0.1", helo="client.example.org", transtype="ESMTPA"
    )
    assert result.queue_id is not None
    return raw


async def rows(runtime: Runtime) -> list[Any]:
    async with runtime.db.read() as conn:
        return list(await conn.execute(select(outbound).order_by(outbound.c.rcpt)))


async def wait_rows(runtime: Runtime, predicate: Callable[[list[Any]], bool], timeout: float = WAIT) -> list[Any]:
    async def poll() -> list[Any]:
        while True:
            found = await rows(runtime)
            if found and predicate(found):
                return found
            await asyncio.sleep(0.02)

    try:
        return await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        raise AssertionError(f"queue rows never matched: {[(r.rcpt, r.state, r.last_response) for r in await rows(runtime)]}") from None


def all_in(*states: str) -> Callable[[list[Any]], bool]:
    return lambda found: all(r.state in states for r in found)


async def retry_now(runtime: Runtime) -> None:
    """Make deferred rows due now and wake the worker (no waiting for the backoff)."""
    async with runtime.db.write() as conn:
        await conn.execute(update(outbound).where(outbound.c.state == "deferred").values(next_attempt_ms=now_ms()))
    runtime.outbound._wakeup.set()


async def events(runtime: Runtime, action: str | None = None) -> list[dict[str, Any]]:
    async with runtime.db.read() as conn:
        found = list(await conn.execute(select(message_events).order_by(message_events.c.created_ms, message_events.c.id)))
    return [{"action": e.action, **orjson.loads(e.data)} for e in found if action is None or e.action == action]


async def inbox(client: httpx.AsyncClient, user_id: str) -> list[dict[str, Any]]:
    folder = await folder_id(client, user_id, "INBOX")
    response = await client.get(f"/users/{user_id}/mailboxes/{folder}/messages", params={"order": "asc"})
    assert response.status_code == 200, response.text
    return response.json()["results"]


async def dsn_in_inbox(client: httpx.AsyncClient, user_id: str) -> email.message.Message:
    """The one notification in the user's INBOX (it is stored just after the rows
    turn final, so wait for it)."""

    async def poll() -> list[dict[str, Any]]:
        while not (found := await inbox(client, user_id)):
            await asyncio.sleep(0.02)
        return found

    found = await asyncio.wait_for(poll(), WAIT)
    assert len(found) == 1, found
    folder = await folder_id(client, user_id, "INBOX")
    response = await client.get(f"/users/{user_id}/mailboxes/{folder}/messages/{found[0]['id']}/message.eml")
    assert response.status_code == 200
    message = email.message_from_bytes(response.content, policy=policy.compat32)
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "delivery-status"
    return message


def status_fields(report: email.message.Message) -> list[dict[str, str]]:
    """The per-recipient blocks of the message/delivery-status part."""
    part = next(p for p in report.walk() if p.get_content_type() == "message/delivery-status")
    payload = part.get_payload()
    blocks = payload if isinstance(payload, list) else []
    out = []
    for block in blocks[1:]:
        out.append({k.lower(): " ".join(str(v).split()) for k, v in block.items()})
    return out


async def blob_refcount(runtime: Runtime, key: str) -> int:
    async with runtime.db.read() as conn:
        return int(await conn.scalar(select(blobs.c.refcount).where(blobs.c.key == key)))


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> str:
    return await create_user(client, "alice", address="alice@example.com")


# Where mail goes -------------------------------------------------------------------


async def test_mx_preference_order_and_implicit_mx(
    runtime: Runtime, sink: SmtpSink, resolver: StaticResolver, alice: str
) -> None:
    # Every MX host is reached on the sink's port; nothing listens on 127.0.0.2, so
    # the preferred MX of remote.org refuses the connection and the next one is used.
    resolver.set("MX", "remote.org", [(20, "mx2.remote.org"), (10, "mx1.remote.org")])
    resolver.set("A", "mx1.remote.org", ["127.0.0.2"])
    resolver.set("A", "mx2.remote.org", ["127.0.0.1"])
    # implicit.org has no MX, only an address: the implicit MX.
    resolver.set("A", "implicit.org", ["127.0.0.1"])
    raw = await send(runtime, alice, ["carol@remote.org", "ivan@implicit.org"])
    async with worker(runtime):
        received = await sink.wait_for(2)
        found = await wait_rows(runtime, all_in("delivered"))
    assert sorted(m.rcpt_tos[0] for m in received) == ["carol@remote.org", "ivan@implicit.org"]
    assert all(m.data == raw for m in received)
    assert [r.attempts for r in found] == [1, 1]
    asked = [name for rtype, name in resolver.queries if rtype == "A"]
    assert asked.index("mx1.remote.org") < asked.index("mx2.remote.org")
    assert ("MX", "implicit.org") in resolver.queries
    destinations = {e["to"][0]: e["dst"] for e in await events(runtime, "ACCEPTED")}
    assert destinations == {"carol@remote.org": "mx2.remote.org", "ivan@implicit.org": "implicit.org"}


async def test_null_mx_and_dns_failures(
    runtime: Runtime, sink: SmtpSink, resolver: StaticResolver, client: httpx.AsyncClient, alice: str
) -> None:
    resolver.set("MX", "nomail.org", [(0, "")])
    resolver.set("A", "nomail.org", ["127.0.0.1"])  # must not be used
    resolver.set("MX", "servfail.org", DnsError("SERVFAIL", temporary=True))
    resolver.set("MX", "broken.org", DnsError("broken answer", temporary=False))
    before = now_ms()
    await send(runtime, alice, ["a@nomail.org", "b@servfail.org", "c@broken.org"])
    async with worker(runtime):
        found = await wait_rows(runtime, lambda rs: all(r.state in ("deferred", "bounced") for r in rs))

        async def two_reports() -> list[dict[str, Any]]:
            while len(found := await inbox(client, alice)) < 2:
                await asyncio.sleep(0.02)
            return found

        await asyncio.wait_for(two_reports(), WAIT)
    nomail, servfail, broken = found
    assert sink.received == []
    # Null MX: bounced at the first attempt, with 556 5.1.10.
    assert (nomail.rcpt, nomail.state, nomail.attempts) == ("a@nomail.org", "bounced", 1)
    assert nomail.last_response.startswith("556 5.1.10")
    # A temporary DNS failure is retried later.
    assert (servfail.state, servfail.attempts) == ("deferred", 1)
    assert servfail.next_attempt_ms > before
    assert servfail.last_response.startswith("451")
    # An answer that can never work bounces.
    assert (broken.state, broken.attempts) == ("bounced", 1)
    assert broken.last_response.startswith("550")
    [deferred] = await events(runtime, "DEFERRED")
    assert deferred["to"] == ["b@servfail.org"]
    assert deferred["response"] == servfail.last_response
    assert "nextAttempt" in deferred
    assert sorted(e["to"][0] for e in await events(runtime, "REJECTED")) == ["a@nomail.org", "c@broken.org"]
    # One notification per failed delivery, none for the deferred one.
    folder = await folder_id(client, alice, "INBOX")
    reports = []
    for item in await inbox(client, alice):
        response = await client.get(f"/users/{alice}/mailboxes/{folder}/messages/{item['id']}/message.eml")
        reports.append(email.message_from_bytes(response.content, policy=policy.compat32))
    fields = sorted((f for r in reports for f in status_fields(r)), key=lambda f: f["final-recipient"])
    assert [(f["final-recipient"], f["action"], f["status"]) for f in fields] == [
        ("rfc822; a@nomail.org", "failed", "5.1.10"),
        ("rfc822; c@broken.org", "failed", "5.1.2"),
    ]


# Retries and bounces -----------------------------------------------------------------


async def test_4xx_then_accepted_delivers_once(runtime: Runtime, sink: SmtpSink, client: httpx.AsyncClient, alice: str) -> None:
    sink.serve_domain("remote.org")
    sink.rcpt_replies.append("451 4.3.0 try later")
    before = now_ms()
    raw = await send(runtime, alice, ["carol@remote.org"])
    async with worker(runtime):
        [row] = await wait_rows(runtime, all_in("deferred"))
        assert row.attempts == 1
        assert row.next_attempt_ms > before
        assert row.last_response == "451 4.3.0 try later"
        assert sink.received == []
        await retry_now(runtime)
        [row] = await wait_rows(runtime, all_in("delivered"))
    assert row.attempts == 2
    assert len(sink.received) == 1
    assert sink.received[0].data == raw
    assert [e["action"] for e in await events(runtime) if e["action"] in ("DEFERRED", "ACCEPTED")] == ["DEFERRED", "ACCEPTED"]
    assert await inbox(client, alice) == []


async def test_4xx_then_5xx_bounces_with_a_dsn(runtime: Runtime, sink: SmtpSink, client: httpx.AsyncClient, alice: str) -> None:
    sink.serve_domain("remote.org")
    sink.rcpt_replies.extend(["451 4.3.0 try later", "550 5.1.1 carol is unknown here"])
    await send(runtime, alice, ["carol@remote.org"])
    async with worker(runtime):
        await wait_rows(runtime, all_in("deferred"))
        await retry_now(runtime)
        [row] = await wait_rows(runtime, all_in("bounced"))
        report = await dsn_in_inbox(client, alice)
    assert row.attempts == 2
    assert row.last_response == "550 5.1.1 carol is unknown here"
    assert sink.received == []
    [fields] = status_fields(report)
    assert fields["final-recipient"].lower() == "rfc822; carol@remote.org"
    assert fields["action"] == "failed"
    assert fields["status"] == "5.1.1"
    assert "carol is unknown here" in fields["diagnostic-code"]


async def test_expired_row_with_4xx_bounces(runtime: Runtime, sink: SmtpSink, client: httpx.AsyncClient, alice: str) -> None:
    sink.serve_domain("remote.org")
    sink.rcpt_replies.append("451 4.3.0 still busy")
    await send(runtime, alice, ["carol@remote.org"])
    async with runtime.db.write() as conn:
        await conn.execute(update(outbound).values(expires_ms=now_ms() - 1000))
    async with worker(runtime):
        [row] = await wait_rows(runtime, all_in("bounced"))
        report = await dsn_in_inbox(client, alice)
    assert row.attempts == 1
    assert row.last_response == "451 4.3.0 still busy"
    [fields] = status_fields(report)
    assert fields["action"] == "failed"
    assert "still busy" in fields["diagnostic-code"]
    [rejected] = await events(runtime, "REJECTED")
    assert rejected["response"] == "451 4.3.0 still busy"


async def test_one_transaction_per_domain_and_a_rejected_recipient(
    runtime: Runtime, sink: SmtpSink, client: httpx.AsyncClient, alice: str
) -> None:
    sink.serve_domain("remote.org")
    # The second RCPT of the transaction is refused, the others accepted.
    sink.rcpt_replies.extend(["250 2.1.5 Ok", "550 5.1.1 no such user", "250 2.1.5 Ok"])
    recipients = ["a@remote.org", "b@remote.org", "c@remote.org"]
    await send(runtime, alice, recipients)
    async with worker(runtime):
        found = await wait_rows(runtime, all_in("delivered", "bounced"))
        report = await dsn_in_inbox(client, alice)
    assert len(sink.received) == 1
    accepted = sink.received[0].rcpt_tos
    assert len(accepted) == 2 and set(accepted) < set(recipients)
    [refused] = set(recipients) - set(accepted)
    states = {r.rcpt: r.state for r in found}
    assert states == {rcpt: "bounced" if rcpt == refused else "delivered" for rcpt in recipients}
    assert {r.queue_id for r in found} == {found[0].queue_id}
    [fields] = status_fields(report)
    assert refused in fields["final-recipient"]
    assert fields["status"] == "5.1.1"


# Relay ---------------------------------------------------------------------------------


async def test_relay_mode(runtime: Runtime, sink: SmtpSink, resolver: StaticResolver, alice: str) -> None:
    # relay_tls=starttls and a relay that does not offer it: deferred, never sent in clear.
    runtime.outbound.settings = dataclasses.replace(runtime.outbound.settings, relay=("127.0.0.1", sink.port), relay_tls="starttls")
    raw = await send(runtime, alice, ["carol@remote.org", "dan@elsewhere.net"])
    async with worker(runtime):
        found = await wait_rows(runtime, all_in("deferred"))
        assert all(r.last_response.startswith("4") for r in found)
        assert sink.received == []
        # Plain SMTP to the relay allowed: everything goes there, whatever the domain.
        runtime.outbound.settings = dataclasses.replace(runtime.outbound.settings, relay_tls="none")
        await retry_now(runtime)
        await sink.wait_for(2)
        await wait_rows(runtime, all_in("delivered"))
    assert sorted(r for m in sink.received for r in m.rcpt_tos) == ["carol@remote.org", "dan@elsewhere.net"]
    assert all(m.data == raw for m in sink.received)
    assert not [q for q in resolver.queries if q[0] in ("MX", "A", "AAAA")]


# Durability ------------------------------------------------------------------------------


async def test_restart_with_mail_in_the_queue(
    runtime: Runtime, settings: Any, resolver: StaticResolver, sink: SmtpSink, alice: str
) -> None:
    sink.serve_domain("remote.org")
    raw = await send(runtime, alice, ["carol@remote.org"])
    # No worker ran in this process: the row waits in the database.
    [row] = await rows(runtime)
    assert (row.state, row.attempts) == ("queued", 0)

    second = Runtime.build(settings, passwords=FAST_PASSWORDS, resolver=resolver)
    await second.start()
    try:
        second.outbound.settings = dataclasses.replace(second.outbound.settings, mx_port=sink.port)
        async with worker(second):
            await sink.wait_for(1)
            [row] = await wait_rows(second, all_in("delivered"))
    finally:
        await second.close()
    assert row.attempts == 1
    assert len(sink.received) == 1
    assert sink.received[0].data == raw


async def test_sending_row_with_expired_lease_is_retried_once(runtime: Runtime, sink: SmtpSink, alice: str) -> None:
    sink.serve_domain("remote.org")
    await send(runtime, alice, ["carol@remote.org"])
    now = now_ms()
    # A process claimed the row and died: its lease still runs, then it has run out.
    async with runtime.db.write() as conn:
        await conn.execute(update(outbound).values(state="sending", attempts=1, lease_until_ms=now + 60_000))
    async with runtime.db.write() as conn:
        assert await queue_store.claim_due(conn, now, 600_000, 10) == []
    async with runtime.db.write() as conn:
        await conn.execute(update(outbound).values(lease_until_ms=now - 1))
    async with worker(runtime):
        await sink.wait_for(1)
        [row] = await wait_rows(runtime, all_in("delivered"))
    assert row.attempts == 2
    assert row.lease_until_ms is None
    assert len(sink.received) == 1


async def test_blob_reference_released_when_rows_are_final(
    runtime: Runtime, sink: SmtpSink, resolver: StaticResolver, client: httpx.AsyncClient, alice: str
) -> None:
    sink.serve_domain("remote.org")
    resolver.set("MX", "nomail.example", [(0, "")])
    await send(runtime, alice, ["carol@remote.org", "dave@remote.org", "erin@nomail.example"])
    found = await rows(runtime)
    [key] = {r.blob_key for r in found}
    # The Sent copy's reference and one per queue row.
    assert await blob_refcount(runtime, key) == 1 + 3
    async with worker(runtime):
        found = await wait_rows(runtime, all_in("delivered", "bounced"))
        await dsn_in_inbox(client, alice)
        assert sorted(r.state for r in found) == ["bounced", "delivered", "delivered"]

        async def released() -> None:
            while await blob_refcount(runtime, key) != 1:
                await asyncio.sleep(0.02)

        # Only the Sent copy's reference remains (released just after the DSN).
        await asyncio.wait_for(released(), WAIT)
    await asyncio.sleep(0.1)
    assert await blob_refcount(runtime, key) == 1


async def test_rcpt_results_survive_a_data_failure(runtime: Runtime, sink: SmtpSink, client: httpx.AsyncClient, alice: str) -> None:
    """A recipient refused at RCPT keeps its own answer when DATA then fails for the
    others: a 451 at RCPT is retried even though DATA got a 554 (and a 550 at RCPT
    bounces even though DATA got a 451)."""
    sink.serve_domain("remote.org")
    sink.rcpt_replies.extend(["451 4.2.1 mailbox busy", "250 2.1.5 Ok", "550 5.1.1 no such user"])
    sink.data_replies.append("554 5.7.1 content refused")
    await send(runtime, alice, ["a@remote.org", "b@remote.org", "c@remote.org"])
    async with worker(runtime):
        found = await wait_rows(runtime, all_in("deferred", "bounced"))
        report = await dsn_in_inbox(client, alice)
    by_response = {r.last_response: r.state for r in found}
    assert by_response == {
        "451 4.2.1 mailbox busy": "deferred",
        "550 5.1.1 no such user": "bounced",
        "554 5.7.1 content refused": "bounced",
    }
    assert sorted(f["status"] for f in status_fields(report)) == ["5.1.1", "5.7.1"]
    assert sink.received == []

    # And the other way round: the temporary DATA failure does not hide a 550 at RCPT.
    sink.rcpt_replies.extend(["550 5.1.1 gone", "250 2.1.5 Ok"])
    sink.data_replies.append("451 4.3.0 try again")
    await send(runtime, alice, ["d@other.org", "e@other.org"], subject="Second")
    sink.serve_domain("other.org")
    async with worker(runtime):
        found = await wait_rows(runtime, lambda rs: all(r.state in ("deferred", "bounced") for r in rs if r.domain == "other.org") and any(r.domain == "other.org" and r.attempts for r in rs))
    other = {r.last_response: r.state for r in found if r.domain == "other.org"}
    assert other == {"550 5.1.1 gone": "bounced", "451 4.3.0 try again": "deferred"}


async def test_stopping_the_worker_lets_a_delivery_in_flight_finish(
    runtime: Runtime, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch, alice: str
) -> None:
    """A clean stop while a message is being handed over: the worker records what
    the remote server said before it stops, so the row is not left "sending" (which
    would send the accepted message a second time once its lease runs out)."""
    sink.serve_domain("remote.org")
    await send(runtime, alice, ["carol@remote.org"])
    handed_over, go_on = asyncio.Event(), asyncio.Event()
    record = runtime.outbound._record

    async def slow_record(rows: list[Any], attempts: dict[str, Any]) -> None:
        handed_over.set()
        await go_on.wait()
        await record(rows, attempts)

    monkeypatch.setattr(runtime.outbound, "_record", slow_record)
    task = asyncio.create_task(runtime.outbound.run())
    try:
        await asyncio.wait_for(handed_over.wait(), WAIT)
        assert len(sink.received) == 1
        task.cancel()
        go_on.set()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), WAIT)
    finally:
        task.cancel()
        go_on.set()
    [row] = await rows(runtime)
    assert row.state == "delivered"
    assert len(sink.received) == 1


async def test_connections_are_kept_for_the_next_message(runtime: Runtime, sink: SmtpSink, alice: str) -> None:
    """The next message to the same host goes on the connection the last one used; one
    the server closed meanwhile is replaced, and the message still arrives once."""
    sink.serve_domain("remote.org")
    async with worker(runtime):
        await send(runtime, alice, ["carol@remote.org"], subject="first")
        await sink.wait_for(1)
        await send(runtime, alice, ["dave@remote.org"], subject="second")
        await sink.wait_for(2)
        assert len(sink.connections) == 1
        # The server drops the idle connection; the queue notices at MAIL.
        assert sink.connections[0].transport is not None
        sink.connections[0].transport.close()
        await asyncio.sleep(0.05)
        await send(runtime, alice, ["erin@remote.org"], subject="third")
        await sink.wait_for(3)
        await wait_rows(runtime, all_in("delivered"))
    assert len(sink.connections) == 2
    assert sorted(r.rcpt_tos[0] for r in sink.received) == ["carol@remote.org", "dave@remote.org", "erin@remote.org"]
