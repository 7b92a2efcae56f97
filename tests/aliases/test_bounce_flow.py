"""Bounces of forwarded alias mail: a remote MX's DSN to the signed VERP envelope
sender, and our own queue's permanent failure of a forwarded row; both become a
``bounced`` activity and a notification, and enough of them disable the alias."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from postern.aliases.bounces import parse_verp, verp_address
from postern.config import Settings
from postern.serve.runtime import Runtime
from postern.storage.schema import outbound
from tests.aliases.helpers import activities, alias_row, converse, make_alias, make_user, send, until
from tests.conftest import MailDoors
from tests.helpers import folder_id, make_message
from tests.sink import SmtpSink


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.alias_domains = ["alias.test"]
    settings.alias_bounces_to_disable = 3
    return settings


def dsn_to(verp: str, diagnostic: str = "smtp; 550 5.1.1 mailbox unavailable") -> bytes:
    return (
        f"From: MAILER-DAEMON@gmail.test\r\nTo: {verp}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b1\r\n\r\n"
        "--b1\r\nContent-Type: text/plain\r\n\r\nIt bounced.\r\n"
        "--b1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.gmail.test\r\n\r\n"
        f"Final-Recipient: rfc822; me@gmail.test\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: {diagnostic}\r\n"
        "--b1--\r\n"
    ).encode()


async def forwarded(runtime: Runtime, mail_doors: MailDoors, sink: SmtpSink, count: int) -> tuple[Any, int, str]:
    """A user with an alias forwarding to the sink; the VERP sender of the forward."""
    sink.serve_domain("gmail.test")
    me = await make_user(runtime, "me", mailboxes=["me@gmail.test"], address="me@example.com")
    alias_id = await make_alias(runtime, me, "shop@alias.test")
    await send(mail_doors.smtp, "john@wick.com", ["shop@alias.test"], make_message(From="john@wick.com", To="shop@alias.test"))
    received = await sink.wait_for(count)
    return me, alias_id, received[0].mail_from


async def test_dsn_to_verp_address(runtime: Runtime, mail_doors: MailDoors, sink: SmtpSink, client: httpx.AsyncClient) -> None:
    me, alias_id, verp = await forwarded(runtime, mail_doors, sink, 1)
    local, _, domain = verp.rpartition("@")
    # Case-folded on the way back: still ours.
    rcpt, data = await converse(mail_doors.smtp, "", f"{local.upper()}@{domain}", dsn_to(verp))
    assert rcpt[0] == 250 and data is not None and data[0] == 250, (rcpt, data)
    acts = await activities(runtime, alias_id)
    assert [a.action for a in acts] == ["forward", "bounced"]
    assert acts[1].mailbox_id == me.mailbox_ids[0] and acts[1].contact_id == acts[0].contact_id
    alias = await alias_row(runtime, alias_id)
    assert (alias.nb_bounce, alias.latest_activity_action, alias.enabled) == (1, "bounced", True)
    [note] = await runtime.notifications.all_for(me.user_id)
    assert note.title == "Mail to your mailbox me@gmail.test from alias shop@alias.test bounced"
    assert "550 5.1.1 mailbox unavailable" in note.message
    # Nothing lands in the user's own INBOX, and nothing goes out.
    folder = await folder_id(client, me.user_id)
    listing = await client.get(f"/users/{me.user_id}/mailboxes/{folder}/messages")
    assert listing.json()["results"] == []
    assert len(sink.received) == 1


async def test_repeated_bounces_disable_the_alias(runtime: Runtime, mail_doors: MailDoors, sink: SmtpSink) -> None:
    me, alias_id, verp = await forwarded(runtime, mail_doors, sink, 1)
    for _ in range(3):
        await send(mail_doors.smtp, "", [verp], dsn_to(verp, "smtp; 552 <script>alert(1)</script>"))
    alias = await alias_row(runtime, alias_id)
    assert (alias.nb_bounce, alias.enabled) == (3, False)
    notes = await runtime.notifications.all_for(me.user_id)
    titles = [n.title for n in notes]
    assert "Alias shop@alias.test has been disabled" in titles and len(titles) == 4
    assert all("<script>" not in n.message for n in notes)
    # Disabled: the next mail is accepted and counted as a block.
    await send(mail_doors.smtp, "john@wick.com", ["shop@alias.test"], make_message(From="john@wick.com", To="shop@alias.test"))
    assert [a.action for a in await activities(runtime, alias_id)][-1] == "block"
    # A further bounce is recorded without disabling (or telling) again.
    await send(mail_doors.smtp, "", [verp], dsn_to(verp))
    assert len(await runtime.notifications.all_for(me.user_id)) == 5


async def test_bad_verp_addresses_are_refused(runtime: Runtime, mail_doors: MailDoors, sink: SmtpSink) -> None:
    me, alias_id, verp = await forwarded(runtime, mail_doors, sink, 1)
    activity_id, mailbox_id = parse_verp(runtime.server_key, verp.rpartition("@")[0])
    local = verp.rpartition("@")[0]
    forged = [
        local[:-1] + ("0" if local[-1] != "0" else "1") + "@alias.test",  # signature changed
        f"bounce+{activity_id + 1}-{mailbox_id}+{local.rpartition('+')[2]}@alias.test",  # payload changed
        "bounce+1-1@alias.test",
        "bounce+garbage@alias.test",
        verp_address(runtime.server_key, 999999, mailbox_id, "alias.test"),  # signed, but no such forward
        local + "@example.com",  # the right signature on another domain
    ]
    for address in forged:
        rcpt, _ = await converse(mail_doors.smtp, "", address)
        assert rcpt[0] == 550, (address, rcpt)
    assert [a.action for a in await activities(runtime, alias_id)] == ["forward"]


async def test_outbound_permanent_failure_of_a_forward(runtime: Runtime, mail_doors: MailDoors, sink: SmtpSink, client: httpx.AsyncClient) -> None:
    sink.serve_domain("gmail.test")
    sink.rcpt_replies.append("550 5.1.1 <me@gmail.test>: no such user")
    me = await make_user(runtime, "me", mailboxes=["me@gmail.test"], address="me@example.com")
    alias_id = await make_alias(runtime, me, "shop@alias.test")
    await send(mail_doors.smtp, "john@wick.com", ["shop@alias.test"], make_message(From="john@wick.com", To="shop@alias.test"))

    async def bounced() -> list[Any] | None:
        async with runtime.db.read() as conn:
            rows = list(await conn.execute(select(outbound)))
        acts = await activities(runtime, alias_id)
        return acts if rows and rows[0].state == "bounced" and len(acts) == 2 else None

    acts = await until(bounced)
    assert [a.action for a in acts] == ["forward", "bounced"]
    assert (await alias_row(runtime, alias_id)).nb_bounce == 1
    [note] = await runtime.notifications.all_for(me.user_id)
    assert "bounced" in note.title and "no such user" in note.message
    # No delivery status notification into the user's INBOX.
    folder = await folder_id(client, me.user_id)
    listing = await client.get(f"/users/{me.user_id}/mailboxes/{folder}/messages")
    assert listing.json()["results"] == []


async def test_auto_replies_to_the_verp_address_are_no_bounces(runtime: Runtime, mail_doors: MailDoors, sink: SmtpSink) -> None:
    me, alias_id, verp = await forwarded(runtime, mail_doors, sink, 1)
    vacation = make_message(subject="Out of office", From="me@gmail.test", To=verp, Auto_Submitted="auto-replied")
    await send(mail_doors.smtp, "", [verp], vacation)
    await send(mail_doors.smtp, "me@gmail.test", [verp], make_message(subject="hello?", From="me@gmail.test", To=verp))
    assert [a.action for a in await activities(runtime, alias_id)] == ["forward"]
    # A DSN from a named sender (some servers do) still counts.
    await send(mail_doors.smtp, "postmaster@gmail.test", [verp], dsn_to(verp))
    assert [a.action for a in await activities(runtime, alias_id)] == ["forward", "bounced"]
