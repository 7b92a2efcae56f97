"""Alias mail through the MX door, over real sockets: forwards to external mailboxes
(the sink stands in for their servers) and hosted ones, every sender format, To/Cc
rewriting, disabled aliases and blocked contacts, catch-all custom domains, loops,
DMARC quarantine and hostile headers."""

from __future__ import annotations

import asyncio
import email
import smtplib
from email import policy
from email.header import decode_header, make_header
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from postern.config import Settings
from postern.delivery.dns import StaticResolver
from postern.serve.runtime import Runtime
from postern.storage.schema import aliases, contacts, outbound
from tests.aliases.helpers import (
    activities,
    alias_by_email,
    alias_row,
    contacts_of,
    converse,
    delete_address_forever,
    make_alias,
    make_custom_domain,
    make_user,
    send,
    set_contact_blocked,
    until,
)
from tests.conftest import MailDoors
from tests.helpers import folder_id, make_message
from tests.sink import SmtpSink


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.alias_domains = ["alias.test"]
    return settings


def parse(data: bytes) -> email.message.Message:
    return email.message_from_bytes(data, policy=policy.compat32)


def decoded(value: str) -> str:
    return str(make_header(decode_header(value)))


async def queue(runtime: Runtime) -> list[Any]:
    async with runtime.db.read() as conn:
        return list(await conn.execute(select(outbound)))


async def inbox(client: httpx.AsyncClient, user_id: str, path: str = "INBOX") -> list[dict[str, Any]]:
    folder = await folder_id(client, user_id, path)
    response = await client.get(f"/users/{user_id}/mailboxes/{folder}/messages", params={"order": "asc"})
    assert response.status_code == 200, response.text
    return response.json()["results"]


async def eml(client: httpx.AsyncClient, user_id: str, uid: int, path: str = "INBOX") -> bytes:
    folder = await folder_id(client, user_id, path)
    response = await client.get(f"/users/{user_id}/mailboxes/{folder}/messages/{uid}/message.eml")
    assert response.status_code == 200, response.text
    return response.content


BODY = "Hello from John.\r\nA line with a lone =\r\n"


async def test_forward_to_external_mailbox(runtime: Runtime, mail_doors: MailDoors, sink: SmtpSink) -> None:
    sink.serve_domain("gmail.test")
    me = await make_user(runtime, "me", mailboxes=["me@gmail.test"])
    alias_id = await make_alias(runtime, me, "shop@alias.test")
    raw = make_message(
        subject="Your order",
        body=BODY,
        From="John Wick <john@wick.com>",
        To="Shop <shop@alias.test>, Helen <helen@wick.com>",
        Cc="marcus@wick.com",
        Reply_To="orders@wick.com",
        DKIM_Signature="v=1; a=rsa-sha256; d=wick.com; s=s1; b=abc",
        Return_Path="<john@wick.com>",
        Sender="robot@wick.com",
        Delivered_To="shop@alias.test",
        List_Unsubscribe="<mailto:unsub@wick.com>",
    )
    await send(mail_doors.smtp, "john@wick.com", ["shop@alias.test"], raw)
    [got] = await sink.wait_for(1)
    assert got.rcpt_tos == ["me@gmail.test"]
    assert got.mail_from.startswith("bounce+") and got.mail_from.endswith("@alias.test")
    message = parse(got.data)
    found = {c.email: c for c in await contacts_of(runtime, alias_id)}
    assert set(found) == {"john@wick.com", "orders@wick.com", "helen@wick.com", "marcus@wick.com"}
    john = found["john@wick.com"]
    assert john.name == "John Wick" and john.reverse_alias.startswith("ra+") and john.reverse_alias.endswith("@alias.test")
    assert message["From"] == f'"John Wick - john at wick.com" <{john.reverse_alias}>'
    assert message["Reply-To"] == f'"orders at wick.com" <{found["orders@wick.com"].reverse_alias}>'
    assert message["To"] == f'"Shop" <shop@alias.test>, "Helen - helen at wick.com" <{found["helen@wick.com"].reverse_alias}>'
    assert message["Cc"] == f'"marcus at wick.com" <{found["marcus@wick.com"].reverse_alias}>'
    for gone in ("DKIM-Signature", "Return-Path", "Sender", "Delivered-To"):
        assert gone.lower() not in [k.lower() for k in message.keys()], gone
    assert message["List-Unsubscribe"] == "<mailto:unsub@wick.com>"
    assert message["Subject"] == "Your order"
    assert message["X-Postern-Loop"] == "shop@alias.test"
    assert message["Received"].split()[:2] == ["from", "client.example.org"]
    assert "Authentication-Results: mx.example.com" in got.data.decode()
    # The body is the original's, byte for byte.
    assert got.data.endswith(b"\r\n\r\n" + BODY.encode())
    alias = await alias_row(runtime, alias_id)
    assert (alias.nb_forward, alias.nb_block, alias.latest_activity_action, alias.latest_contact_id) == (1, 0, "forward", john.id)
    [activity] = await activities(runtime, alias_id)
    assert (activity.action, activity.contact_id, activity.mailbox_id) == ("forward", john.id, me.mailbox_ids[0])

    # The same sender again: the same contact and reverse alias.
    await send(mail_doors.smtp, "john@wick.com", ["shop@alias.test"], make_message(From="John Wick <john@wick.com>", To="shop@alias.test"))
    second = (await sink.wait_for(2))[1]
    assert parse(second.data)["From"] == f'"John Wick - john at wick.com" <{john.reverse_alias}>'
    assert len(await contacts_of(runtime, alias_id)) == 4
    assert (await alias_row(runtime, alias_id)).nb_forward == 2


@pytest.mark.parametrize(
    ("sender_format", "name", "expected"),
    [
        ("AT", "John Wick", '"John Wick - john at wick.com" <{ra}>'),
        ("A", "John Wick", '"John Wick - john(a)wick.com" <{ra}>'),
        ("NAME_ONLY", "John Wick", '"John Wick" <{ra}>'),
        ("AT_ONLY", "John Wick", '"john at wick.com" <{ra}>'),
        ("NO_NAME", "John Wick", "{ra}"),
        ("AT", "", '"john at wick.com" <{ra}>'),
        ("NAME_ONLY", "Jöhn Wíck", "=?utf-8?b?SsO2aG4gV8OtY2s=?= <{ra}>"),
    ],
)
async def test_sender_formats(runtime: Runtime, mail_doors: MailDoors, sink: SmtpSink, sender_format: str, name: str, expected: str) -> None:
    sink.serve_domain("gmail.test")
    me = await make_user(runtime, "me", mailboxes=["me@gmail.test"], sender_format=sender_format)
    alias_id = await make_alias(runtime, me, "shop@alias.test")
    sender = f"{make_header([(name.encode(), 'utf-8')]).encode()} <john@wick.com>" if name else "john@wick.com"
    await send(mail_doors.smtp, "john@wick.com", ["shop@alias.test"], make_message(From=sender, To="shop@alias.test"))
    [got] = await sink.wait_for(1)
    [john] = await contacts_of(runtime, alias_id)
    assert parse(got.data)["From"] == expected.format(ra=john.reverse_alias)
    if name and sender_format != "NO_NAME":
        assert (name if sender_format != "AT_ONLY" else "john at wick.com") in decoded(parse(got.data)["From"])


async def test_forward_to_hosted_and_external_mailboxes(runtime: Runtime, client: httpx.AsyncClient, mail_doors: MailDoors, sink: SmtpSink) -> None:
    sink.serve_domain("gmail.test")
    sink.serve_domain("proton.test")
    me = await make_user(runtime, "me", mailboxes=["me@gmail.test", "me@example.com", "me@proton.test"], address="me@example.com")
    alias_id = await make_alias(runtime, me, "news@alias.test")
    await send(mail_doors.smtp, "john@wick.com", ["news@alias.test"], make_message(subject="Weekly", From="John <john@wick.com>", To="news@alias.test"))
    received = await sink.wait_for(2)
    assert sorted(r.rcpt_tos[0] for r in received) == ["me@gmail.test", "me@proton.test"]
    # One VERP address per mailbox.
    assert len({r.mail_from for r in received}) == 2
    [stored] = await until(lambda: inbox(client, me.user_id))
    assert stored["subject"] == "Weekly"
    data = await eml(client, me.user_id, stored["id"])
    [john] = await contacts_of(runtime, alias_id)
    assert parse(data)["From"] == f'"John - john at wick.com" <{john.reverse_alias}>'
    assert parse(data)["Delivered-To"] == "me@example.com"
    alias = await alias_row(runtime, alias_id)
    assert alias.nb_forward == 1
    assert [a.action for a in await activities(runtime, alias_id)] == ["forward"]


async def test_forward_to_another_users_hosted_mailbox_only(runtime: Runtime, client: httpx.AsyncClient, mail_doors: MailDoors) -> None:
    me = await make_user(runtime, "me", mailboxes=["box@example.com"])
    other = await make_user(runtime, "other", address="box@example.com")
    await make_alias(runtime, me, "a1@alias.test")
    await send(mail_doors.smtp, "john@wick.com", ["a1@alias.test"], make_message(subject="Hosted", From="john@wick.com", To="a1@alias.test"))
    [stored] = await until(lambda: inbox(client, other.user_id))
    assert stored["subject"] == "Hosted"
    assert await queue(runtime) == []


async def test_disabled_alias_is_accepted_and_counted(runtime: Runtime, mail_doors: MailDoors, sink: SmtpSink) -> None:
    sink.serve_domain("gmail.test")
    me = await make_user(runtime, "me", mailboxes=["me@gmail.test"])
    alias_id = await make_alias(runtime, me, "off@alias.test", enabled=False)
    rcpt, data = await converse(mail_doors.smtp, "john@wick.com", "off@alias.test", make_message(From="john@wick.com", To="off@alias.test"))
    assert rcpt[0] == 250 and data is not None and data[0] == 250
    alias = await alias_row(runtime, alias_id)
    assert (alias.nb_forward, alias.nb_block, alias.latest_activity_action) == (0, 1, "block")
    [activity] = await activities(runtime, alias_id)
    assert activity.action == "block" and activity.contact_id is not None
    assert await queue(runtime) == [] and sink.received == []


async def test_blocked_contact(runtime: Runtime, mail_doors: MailDoors, sink: SmtpSink) -> None:
    sink.serve_domain("gmail.test")
    me = await make_user(runtime, "me", mailboxes=["me@gmail.test"])
    alias_id = await make_alias(runtime, me, "shop@alias.test")
    await send(mail_doors.smtp, "spam@spam.test", ["shop@alias.test"], make_message(From="Spammer <spam@spam.test>", To="shop@alias.test"))
    await sink.wait_for(1)
    [spammer] = await contacts_of(runtime, alias_id)
    await set_contact_blocked(runtime, spammer.id)
    await send(mail_doors.smtp, "spam@spam.test", ["shop@alias.test"], make_message(From="Spammer <spam@spam.test>", To="shop@alias.test"))
    # A third message from someone else is forwarded: the block is the contact's alone.
    await send(mail_doors.smtp, "ok@fine.test", ["shop@alias.test"], make_message(From="ok@fine.test", To="shop@alias.test"))
    await sink.wait_for(2)
    assert [a.action for a in await activities(runtime, alias_id)] == ["forward", "block", "forward"]
    alias = await alias_row(runtime, alias_id)
    assert (alias.nb_forward, alias.nb_block) == (2, 1)
    assert len(sink.received) == 2


async def test_alias_of_disabled_user_is_refused(runtime: Runtime, client: httpx.AsyncClient, mail_doors: MailDoors) -> None:
    me = await make_user(runtime, "me", mailboxes=["me@gmail.test"])
    await make_alias(runtime, me, "shop@alias.test")
    response = await client.put(f"/users/{me.user_id}", json={"disabled": True})
    assert response.status_code == 200, response.text
    rcpt, _ = await converse(mail_doors.smtp, "john@wick.com", "shop@alias.test")
    assert rcpt[0] == 550 and b"5.2.1" in rcpt[1]


async def test_concurrent_first_mails_from_one_sender_make_one_contact(runtime: Runtime, mail_doors: MailDoors, sink: SmtpSink) -> None:
    """Forwards choose a new contact's reverse alias before they write; when several
    race to make the same contact, one wins and the others forward through it."""
    sink.serve_domain("gmail.test")
    me = await make_user(runtime, "me", mailboxes=["me@gmail.test"])
    alias_id = await make_alias(runtime, me, "shop@alias.test")
    raw = make_message(From="New Sender <new@wick.com>", To="shop@alias.test")
    # Four clients at once: each blocks a thread of the default executor, which the
    # server in this process needs too (it has min(32, CPUs + 4) threads).
    results = await asyncio.gather(*(send(mail_doors.smtp, "new@wick.com", ["shop@alias.test"], raw) for _ in range(4)))
    assert results == [{}] * 4
    received = await sink.wait_for(4)
    [contact] = await contacts_of(runtime, alias_id)
    assert all(contact.reverse_alias.encode() in r.data for r in received)
    assert (await alias_row(runtime, alias_id)).nb_forward == 4


async def test_an_alias_travels_alone_in_an_mx_transaction(runtime: Runtime, client: httpx.AsyncClient, mail_doors: MailDoors, sink: SmtpSink) -> None:
    """One reply after DATA speaks for every recipient: a forward, which can fail on its
    own, never shares it with a local copy or another forward (452: send it again)."""
    sink.serve_domain("gmail.test")
    me = await make_user(runtime, "me", mailboxes=["me@gmail.test"], address="me@example.com")
    await make_alias(runtime, me, "shop@alias.test")
    await make_alias(runtime, me, "news@alias.test")
    raw = make_message(From="john@wick.com", To="me@example.com, shop@alias.test, news@alias.test")
    refused = await send(mail_doors.smtp, "john@wick.com", ["me@example.com", "shop@alias.test", "news@alias.test"], raw)
    assert sorted(refused) == ["news@alias.test", "shop@alias.test"]
    assert all(code == 452 for code, _ in refused.values())
    assert len(await inbox(client, me.user_id)) == 1
    # The sender's retry, one transaction each, delivers them.
    for rcpt in sorted(refused):
        assert await send(mail_doors.smtp, "john@wick.com", [rcpt], raw) == {}
    await sink.wait_for(2)
    assert sorted(r.rcpt_tos[0] for r in sink.received) == ["me@gmail.test", "me@gmail.test"]


async def test_unknown_addresses_are_refused(runtime: Runtime, mail_doors: MailDoors) -> None:
    for address in ("nobody@alias.test", "ra+abcdefghijklmnopqrstuvwxyz@alias.test", "someone@elsewhere.test"):
        rcpt, _ = await converse(mail_doors.smtp, "john@wick.com", address)
        assert rcpt[0] == 550 and b"5.1.1" in rcpt[1], address


async def test_reverse_alias_without_replies_is_answered(runtime: Runtime, mail_doors: MailDoors, sink: SmtpSink) -> None:
    """Until replies are wired in, a known reverse alias is resolved and its mail refused
    at DATA; with them, the replies service answers (not tested here)."""
    sink.serve_domain("gmail.test")
    me = await make_user(runtime, "me", mailboxes=["me@gmail.test"])
    alias_id = await make_alias(runtime, me, "shop@alias.test")
    await send(mail_doors.smtp, "john@wick.com", ["shop@alias.test"], make_message(From="john@wick.com", To="shop@alias.test"))
    await sink.wait_for(1)
    [john] = await contacts_of(runtime, alias_id)
    resolved = await runtime.router.resolve(john.reverse_alias)
    assert (resolved.alias_id, resolved.contact_id, resolved.user_id) == (alias_id, john.id, me.user_id)
    if runtime.inbound.replies is None:
        rcpt, data = await converse(mail_doors.smtp, "me@gmail.test", john.reverse_alias, make_message(From="me@gmail.test", To=john.reverse_alias))
        assert rcpt[0] == 250 and data is not None and data[0] == 550


async def test_catch_all_creates_the_alias_on_first_mail(runtime: Runtime, mail_doors: MailDoors, sink: SmtpSink) -> None:
    sink.serve_domain("gmail.test")
    sink.serve_domain("work.test")
    me = await make_user(runtime, "me", mailboxes=["me@gmail.test", "me@work.test"])
    domain_id = await make_custom_domain(runtime, me, "mine.test", mailbox_ids=[me.mailbox_ids[1]])
    await make_custom_domain(runtime, await make_user(runtime, "you", mailboxes=["you@gmail.test"]), "closed.test", catch_all=False)
    await delete_address_forever(runtime, "gone@mine.test", me, domain_id)

    # A refused message makes no alias (no DATA here: the client quits after RCPT).
    rcpt, _ = await converse(mail_doors.smtp, "john@wick.com", "later@mine.test")
    assert rcpt[0] == 250
    assert await alias_by_email(runtime, "later@mine.test") is None

    await send(mail_doors.smtp, "john@wick.com", ["anything@mine.test"], make_message(From="john@wick.com", To="anything@mine.test"))
    [got] = await sink.wait_for(1)
    assert got.rcpt_tos == ["me@work.test"]  # the domain's mailboxes, not the default
    alias = await alias_by_email(runtime, "anything@mine.test")
    assert alias is not None and alias.custom_domain_id == domain_id and alias.nb_forward == 1 and alias.user_id == me.user_id
    # The second mail uses the alias made by the first.
    await send(mail_doors.smtp, "john@wick.com", ["anything@mine.test"], make_message(From="john@wick.com", To="anything@mine.test"))
    await sink.wait_for(2)
    async with runtime.db.read() as conn:
        assert await conn.scalar(select(func.count()).select_from(aliases)) == 1
    assert (await alias_row(runtime, alias.id)).nb_forward == 2

    for refused in ("gone@mine.test", "x@closed.test"):
        rcpt, _ = await converse(mail_doors.smtp, "john@wick.com", refused)
        assert rcpt[0] == 550, refused
    assert await alias_by_email(runtime, "gone@mine.test") is None


async def test_catch_all_without_domain_mailboxes_uses_the_default(runtime: Runtime, mail_doors: MailDoors, sink: SmtpSink) -> None:
    sink.serve_domain("gmail.test")
    me = await make_user(runtime, "me", mailboxes=["me@gmail.test", "me2@gmail.test"])
    await make_custom_domain(runtime, me, "mine.test")
    await make_custom_domain(runtime, me, "unverified.test", verified=False)
    await send(mail_doors.smtp, "john@wick.com", ["hello@mine.test"], make_message(From="john@wick.com", To="hello@mine.test"))
    [got] = await sink.wait_for(1)
    assert got.rcpt_tos == ["me@gmail.test"]
    rcpt, _ = await converse(mail_doors.smtp, "john@wick.com", "hello@unverified.test")
    assert rcpt[0] == 550


async def test_loops_are_dropped(runtime: Runtime, mail_doors: MailDoors, sink: SmtpSink) -> None:
    sink.serve_domain("gmail.test")
    me = await make_user(runtime, "me", mailboxes=["me@gmail.test"])
    alias_id = await make_alias(runtime, me, "shop@alias.test")
    await send(mail_doors.smtp, "john@wick.com", ["shop@alias.test"], make_message(From="john@wick.com", To="shop@alias.test"))
    [first] = await sink.wait_for(1)
    # The mailbox sends the forward back to the alias (an auto-forward): dropped.
    await send(mail_doors.smtp, "me@gmail.test", ["shop@alias.test"], first.data)
    # Too many Received fields: dropped.
    hops = "".join(f"Received: from hop{i}.test by hop{i + 1}.test; Wed, 02 Nov 2011 19:19:08 +0000\r\n" for i in range(31))
    await send(mail_doors.smtp, "john@wick.com", ["shop@alias.test"], hops.encode() + make_message(From="john@wick.com", To="shop@alias.test"))
    # Our own VERP or reverse alias address as the envelope sender: dropped.
    await send(mail_doors.smtp, first.mail_from, ["shop@alias.test"], make_message(From="john@wick.com", To="shop@alias.test"))
    assert [a.action for a in await activities(runtime, alias_id)] == ["forward", "block", "block", "block"]
    # Another alias of the same user in the path is no loop of this one.
    other = await make_alias(runtime, me, "other@alias.test")
    await send(mail_doors.smtp, "me@gmail.test", ["other@alias.test"], first.data)
    await sink.wait_for(2)
    assert [a.action for a in await activities(runtime, other)] == ["forward"]
    assert len(await queue(runtime)) == 2


async def test_dmarc_reject_is_quarantined(runtime: Runtime, client: httpx.AsyncClient, resolver: StaticResolver, mail_doors: MailDoors, sink: SmtpSink) -> None:
    sink.serve_domain("gmail.test")
    resolver.set("TXT", "_dmarc.bank.test", ["v=DMARC1; p=reject"])
    resolver.set("TXT", "bank.test", ["v=spf1 ip4:192.0.2.1 -all"])
    me = await make_user(runtime, "me", mailboxes=["me@gmail.test"])
    alias_id = await make_alias(runtime, me, "shop@alias.test")
    forged = make_message(subject="Verify your account", From="Bank <security@bank.test>", To="shop@alias.test")
    await send(mail_doors.smtp, "security@bank.test", ["shop@alias.test"], forged)
    [kept] = await until(lambda: inbox(client, me.user_id, "Quarantine"))
    assert kept["subject"] == "Verify your account"
    data = await eml(client, me.user_id, kept["id"], "Quarantine")
    assert "dmarc=fail" in parse(data)["Authentication-Results"]
    assert await queue(runtime) == []
    assert [a.action for a in await activities(runtime, alias_id)] == ["block"]
    [note] = await runtime.notifications.all_for(me.user_id)
    assert "quarantined" in note.title and "security@bank.test" in note.message and "shop@alias.test" in note.message

    # A second one goes to the same folder; p=none mail is forwarded.
    await send(mail_doors.smtp, "security@bank.test", ["shop@alias.test"], forged)
    await until(lambda: _count(inbox(client, me.user_id, "Quarantine"), 2))
    resolver.set("TXT", "_dmarc.bank.test", ["v=DMARC1; p=none"])
    await send(mail_doors.smtp, "security@bank.test", ["shop@alias.test"], forged)
    await sink.wait_for(1)


async def _count(pending: Any, n: int) -> bool:
    return len(await pending) >= n


HOSTILE = [
    b"Subject: no from at all\r\nTo: shop@alias.test\r\n\r\nbody\r\n",
    b"From: <<<garbage>>> ,,, @@@\r\nTo: shop@alias.test\r\nSubject: garbage\r\n\r\nbody\r\n",
    "From: J\u00f6hn <j\u00f6hn@w\u00efck.com>\r\nTo: shop@alias.test\r\nSubject: 8-bit \u00e9\r\n\r\nbod\u00ff\r\n".encode(),
    b"From: john@wick.com\r\nTo: shop@alias.test\r\nX-Big: " + b"a" * 500 + b"\r\n" + b"".join(b"\tfold %d\r\n" % i for i in range(2000)) + b"\r\nbody\r\n",
    b"From: john@wick.com\r\nTo: " + b",\r\n ".join(b"user%d@many.test" % i for i in range(300)) + b", shop@alias.test\r\n\r\nbody\r\n",
    b"no header section at all, just text\r\n",
    b"From: =?utf-8?q?broken?= <john@wick.com>\r\nReply-To: not an address\r\nCc: ;;;\r\nTo: \r\n\r\nbody\r\n",
    b"From: john@wick.com\nTo: shop@alias.test\nSubject: bare LF\n\nbody\n",
]


@pytest.mark.parametrize("raw", HOSTILE, ids=[f"hostile{i}" for i in range(len(HOSTILE))])
async def test_hostile_headers_never_crash(runtime: Runtime, mail_doors: MailDoors, sink: SmtpSink, raw: bytes) -> None:
    sink.serve_domain("gmail.test")
    me = await make_user(runtime, "me", mailboxes=["me@gmail.test"])
    alias_id = await make_alias(runtime, me, "shop@alias.test")
    try:
        _, data = await converse(mail_doors.smtp, "", "shop@alias.test", raw)
    except smtplib.SMTPException as error:  # a proper refusal is fine
        pytest.fail(f"refused: {error}")
    assert data is not None and data[0] in (250, 554), data
    if data[0] == 250:
        [got] = await sink.wait_for(1)
        message = parse(got.data)
        assert message["X-Postern-Alias"] == "shop@alias.test"
        frm = message["From"]
        assert "@alias.test" in frm, frm
        assert (await alias_row(runtime, alias_id)).nb_forward == 1
        async with runtime.db.read() as conn:
            assert await conn.scalar(select(func.count()).select_from(contacts)) <= 52


async def test_forward_is_dkim_signed_with_the_reverse_alias_domain_key(
    runtime: Runtime, resolver: StaticResolver, mail_doors: MailDoors, sink: SmtpSink
) -> None:
    """The forward's From is the reverse alias, so the queue signs with that domain's
    key (made with ``postern dkim alias.test``); a receiver's check passes."""
    from postern.delivery.authentication import check_dkim
    from postern.delivery.dkim_keys import create_key

    key, name, value = await create_key(runtime.db, "alias.test")
    resolver.set("TXT", name, [value])
    sink.serve_domain("gmail.test")
    me = await make_user(runtime, "me", mailboxes=["me@gmail.test"])
    await make_alias(runtime, me, "shop@alias.test")
    await send(mail_doors.smtp, "john@wick.com", ["shop@alias.test"], make_message(From="John <john@wick.com>", To="shop@alias.test"))
    [got] = await sink.wait_for(1)
    results = await check_dkim(resolver, got.data)
    assert [(r.result, r.domain) for r in results] == [("pass", "alias.test")]


async def test_mail_worker_wakes_the_queue(runtime: Runtime) -> None:
    """A forward queued in a mail worker process wakes the serving process's queue."""
    from postern.delivery.outbound import QueueWakeup
    from postern.serve.server import MailWorkers

    runtime.outbound._wakeup.clear()
    workers = MailWorkers(runtime, ["smtp"], 2)  # not started: only what it does with a worker's message
    workers.publish([QueueWakeup("")], None)  # type: ignore[arg-type]
    assert runtime.outbound._wakeup.is_set()


async def test_forwards_do_not_count_as_sending(runtime: Runtime, mail_doors: MailDoors, sink: SmtpSink) -> None:
    """Forwards are queued under the alias owner, but they are mail the user received:
    they never use up the user's recipients-per-24h sending limit."""
    sink.serve_domain("gmail.test")
    me = await make_user(runtime, "me", mailboxes=["me@gmail.test"])
    await make_alias(runtime, me, "shop@alias.test")
    for n in range(3):
        await send(mail_doors.smtp, f"s{n}@wick.com", ["shop@alias.test"], make_message(From=f"s{n}@wick.com", To="shop@alias.test"))
    await sink.wait_for(3)
    assert len(await queue(runtime)) == 3
    assert await runtime.outbound.recipients_in_last_day(me.user_id) == 0
