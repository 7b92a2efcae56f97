"""Autoreplies at delivery over LMTP: the reply (RFC 3834), once per sender per
interval, and every case where none is sent."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from postern.serve.runtime import Runtime
from postern.storage.schema import outbound
from tests.helpers import create_user, make_message
from tests.rules.test_filters_delivery import add_filter, deliver, messages
from tests.sink import SmtpSink


async def set_autoreply(client: httpx.AsyncClient, user: str, **fields: Any) -> None:
    body = {
        "status": True,
        "name": "Alice Ännchen",
        "subject": "Away — back soon",
        "text": "I am away.",
        "html": "<p>I am <b>away</b><script>x()</script></p>",
        **fields,
    }
    response = await client.put(f"/users/{user}/autoreply", json=body)
    assert response.status_code == 200, response.text


async def queued_to(runtime: Runtime) -> list[tuple[str, str]]:
    async with runtime.db.read() as conn:
        return [
            (r.mail_from, r.rcpt)
            for r in await conn.execute(select(outbound.c.mail_from, outbound.c.rcpt))
        ]


async def test_the_reply_once_per_interval(
    client: httpx.AsyncClient, mail_doors: Any, sink: SmtpSink, runtime: Runtime
) -> None:
    sink.serve_domain("example.org")
    alice = await create_user(client, "alice", address="alice@example.com")
    await set_autoreply(client, alice)
    original = make_message(subject="Lunch?", References="<older@example.org>")
    message_id = email.message_from_bytes(original)["Message-ID"]
    await deliver(mail_doors.lmtp, original, mail_from="Sender@Example.org")
    await deliver(
        mail_doors.lmtp,
        make_message(subject="Lunch again?"),
        mail_from="sender@example.org",
    )
    [reply] = await sink.wait_for(1)
    assert reply.mail_from in ("", "<>") and reply.rcpt_tos == ["Sender@Example.org"]
    parsed = email.message_from_bytes(reply.data, policy=email.policy.default)
    assert parsed["Auto-Submitted"] == "auto-replied"
    assert parsed["Subject"] == "Auto: Away — back soon"
    assert parsed["From"].addresses[0].display_name == "Alice Ännchen"
    assert parsed["From"].addresses[0].addr_spec == "alice@example.com"
    assert parsed["In-Reply-To"] == message_id
    assert parsed["References"].split() == ["<older@example.org>", message_id]
    assert all(
        ord(c) < 128 for c in reply.data.split(b"\r\n\r\n")[0].decode()
    )  # headers encoded
    html = parsed.get_body(("html",)).get_content()
    assert "<b>away</b>" in html and "script" not in html
    assert parsed.get_body(("plain",)).get_content().strip() == "I am away."
    assert await queued_to(runtime) == [
        ("", "Sender@Example.org")
    ]  # the second message got none
    # Both messages are stored.
    assert len(await messages(client, alice, "INBOX")) == 2
    # Another sender gets their own reply; the original subject when none is set.
    await set_autoreply(client, alice, subject="")
    await deliver(
        mail_doors.lmtp, make_message(subject="Question"), mail_from="other@example.org"
    )
    received = await sink.wait_for(2)
    assert email.message_from_bytes(received[1].data)["Subject"] == "Auto: Re: Question"


NEVER: list[tuple[str, dict[str, Any]]] = [
    ("empty sender", {"mail_from": ""}),
    ("mailer-daemon", {"mail_from": "MAILER-DAEMON@example.org"}),
    ("no-reply", {"mail_from": "no-reply@example.org"}),
    ("noreply", {"mail_from": "noreply@example.org"}),
    ("auto-submitted", {"headers": {"Auto_Submitted": "auto-generated"}}),
    ("auto-replied", {"headers": {"Auto_Submitted": "auto-replied"}}),
    ("precedence bulk", {"headers": {"Precedence": "bulk"}}),
    ("precedence list", {"headers": {"Precedence": "List"}}),
    ("precedence junk", {"headers": {"Precedence": "junk"}}),
    (
        "list-unsubscribe",
        {"headers": {"List_Unsubscribe": "<mailto:leave@example.org>"}},
    ),
    ("list-id", {"headers": {"List_Id": "<news.example.org>"}}),
    ("suppress oof", {"headers": {"X_Auto_Response_Suppress": "OOF, DR"}}),
    ("suppress autoreply", {"headers": {"X_Auto_Response_Suppress": "AutoReply"}}),
    ("spam", {"spam": True}),
    ("own address", {"mail_from": "alice@example.com"}),
    (
        "not yet",
        {"autoreply": {"start": (datetime.now(UTC) + timedelta(days=1)).isoformat()}},
    ),
    (
        "over",
        {"autoreply": {"end": (datetime.now(UTC) - timedelta(days=1)).isoformat()}},
    ),
    ("disabled", {"autoreply": {"status": False}}),
]


@pytest.mark.parametrize(("case", "setup"), NEVER, ids=[n for n, _ in NEVER])
async def test_never_sent(
    client: httpx.AsyncClient,
    mail_doors: Any,
    runtime: Runtime,
    case: str,
    setup: dict[str, Any],
) -> None:
    alice = await create_user(client, "alice", address="alice@example.com")
    await set_autoreply(client, alice, **setup.get("autoreply", {}))
    if setup.get("spam"):
        await add_filter(client, alice, {"subject": "offer"}, {"spam": True})
    data = make_message(subject="offer", **setup.get("headers", {}))
    await deliver(
        mail_doors.lmtp, data, mail_from=setup.get("mail_from", "sender@example.org")
    )
    # The queue rows would be committed with the message: none, and the message is stored.
    assert await queued_to(runtime) == []
    stored = await messages(client, alice, "Junk" if setup.get("spam") else "INBOX")
    assert len(stored) == 1


async def test_auto_submitted_no_gets_a_reply(
    client: httpx.AsyncClient, mail_doors: Any, runtime: Runtime
) -> None:
    alice = await create_user(client, "alice", address="alice@example.com")
    await set_autoreply(
        client,
        alice,
        start=(datetime.now(UTC) - timedelta(days=1)).isoformat(),
        end=(datetime.now(UTC) + timedelta(days=1)).isoformat(),
    )
    await deliver(mail_doors.lmtp, make_message(subject="hi", Auto_Submitted="no"))
    assert await queued_to(runtime) == [("", "sender@example.org")]


async def test_the_reply_is_dkim_signed(client: httpx.AsyncClient, mail_doors: Any, sink: SmtpSink, runtime: Runtime) -> None:
    import dkim

    from postern.delivery import dkim_keys

    _, name, value = await dkim_keys.create_key(runtime.db, "example.com")
    sink.serve_domain("example.org")
    alice = await create_user(client, "alice", address="alice@example.com")
    await set_autoreply(client, alice)
    await deliver(mail_doors.lmtp, make_message(subject="Signed?"))
    [reply] = await sink.wait_for(1)
    assert reply.data.startswith(b"DKIM-Signature:")

    def dnsfunc(qname: bytes, timeout: int = 5) -> bytes | None:
        return value.encode() if qname.lower().rstrip(b".") == name.encode() else None

    assert dkim.verify(reply.data, dnsfunc=dnsfunc) is True


async def test_interval_rows_are_swept(client: httpx.AsyncClient, mail_doors: Any, runtime: Runtime) -> None:
    alice = await create_user(client, "alice", address="alice@example.com")
    await set_autoreply(client, alice)
    await deliver(mail_doors.lmtp, make_message(subject="one"))
    assert await runtime.rules.sweep() == 0  # within the interval: kept
    runtime.rules.autoreply_interval_ms = 0
    assert await runtime.rules.sweep() == 1
    await deliver(mail_doors.lmtp, make_message(subject="two"))  # the interval is over: a new reply
    assert len(await queued_to(runtime)) == 2
