"""Replies through reverse aliases by MX, over real sockets: a mailbox replies to the
reverse alias it was given in a forward, and the contact (the sink) gets it from the
alias with the mailbox's address nowhere in it; spoofed replies are refused with 550
and the alias's user told."""

from __future__ import annotations

import asyncio
import base64
import email
from email import policy
from typing import Any

import dkim
import httpx
import pytest
from sqlalchemy import select, update

from postern.aliases.contacts import find_or_create
from postern.config import Settings
from postern.delivery import dkim_keys
from postern.delivery.authentication import AuthenticationResults, DkimSignatureResult, DmarcResult, SpfResult
from postern.delivery.dkim_signing import dns_record_name, dns_record_value, generate_key, sign
from postern.delivery.dns import StaticResolver
from postern.delivery.router import ReverseAliasRecipient
from postern.serve.runtime import Runtime
from postern.storage.schema import aliases, contacts, mailboxes, outbound
from tests.aliases.helpers import AliasUser, activities, alias_row, contacts_of, converse, make_alias, make_user, send, until
from tests.conftest import MailDoors
from tests.helpers import create_user, folder_id, make_message
from tests.sink import SmtpSink

MAILBOX = "Alice.Smith@gmail.test"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.alias_domains = ["alias.test"]
    return settings


def parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=policy.default)  # type: ignore[return-value]


def assert_no_mailbox(raw: bytes, mailbox: str = MAILBOX) -> None:
    lowered = raw.lower()
    assert mailbox.lower().encode() not in lowered, raw.decode("utf-8", "replace")
    assert mailbox.lower().replace("@", "%40").encode() not in lowered


async def notifications(runtime: Runtime, user: AliasUser) -> list[Any]:
    return list(await runtime.notifications.all_for(user.user_id))


async def setup(runtime: Runtime, resolver: StaticResolver, sink: SmtpSink, *, spf: str = "v=spf1 ip4:127.0.0.1 -all", **mailbox: Any) -> tuple[AliasUser, int, Any]:
    """A user whose alias shop@alias.test forwards to MAILBOX, and a contact John."""
    sink.serve_domain("gmail.test")
    sink.serve_domain("wick.test")
    resolver.set("TXT", "gmail.test", [spf])
    me = await make_user(runtime, "me", mailboxes=[MAILBOX])
    if mailbox:
        async with runtime.db.write() as conn:
            await conn.execute(update(mailboxes).where(mailboxes.c.id == me.mailbox_ids[0]).values(**mailbox))
    alias_id = await make_alias(runtime, me, "shop@alias.test")
    async with runtime.db.write() as conn:
        john, _ = await find_or_create(
            conn, user_id=me.user_id, alias_id=alias_id, email="john@wick.test", name="John Wick", reverse_alias_domain="alias.test"
        )
    return me, alias_id, john


def reply_to(john: Any, *, sender: str = f"Alice Smith <{MAILBOX}>", body: str = "Thanks!\r\n", **headers: str) -> bytes:
    return make_message(
        subject="Re: your order",
        body=body,
        From=sender,
        To=f'"John Wick - john at wick.test" <{john.reverse_alias}>',
        Message_ID="<CAF0001@mail.gmail.test>",
        In_Reply_To="<order-1@wick.test>",
        **headers,
    )


async def test_reply_by_mx_through_a_forwarded_reverse_alias(runtime: Runtime, resolver: StaticResolver, mail_doors: MailDoors, sink: SmtpSink) -> None:
    sink.serve_domain("gmail.test")
    sink.serve_domain("wick.test")
    resolver.set("TXT", "gmail.test", ["v=spf1 ip4:127.0.0.1 -all"])
    resolver.set("TXT", "_dmarc.gmail.test", ["v=DMARC1; p=reject"])
    key, record_name, record_value = await dkim_keys.create_key(runtime.db, "alias.test", selector="s1")
    resolver.set("TXT", record_name, [record_value])
    me = await make_user(runtime, "me", mailboxes=[MAILBOX])
    alias_id = await make_alias(runtime, me, "shop@alias.test")
    # John writes to the alias; the mailbox gets it from John's reverse alias.
    await send(
        mail_doors.smtp,
        "john@wick.test",
        ["shop@alias.test"],
        make_message(From="John Wick <john@wick.test>", To="shop@alias.test", Cc="Helen <helen@wick.test>", Message_ID="<order-1@wick.test>"),
    )
    [forward] = await sink.wait_for(1)
    found = {c.email: c for c in await contacts_of(runtime, alias_id)}
    john, helen = found["john@wick.test"], found["helen@wick.test"]
    forwarded = parse(forward.data)
    assert john.reverse_alias in str(forwarded["From"])

    # The mailbox replies to John, Helen in Cc, quoting the mail (QP and HTML parts).
    html = f'<p>Sure</p><blockquote>From <a href="mailto:{MAILBOX}">{MAILBOX}</a></blockquote>'.encode()
    raw = (
        "Received: from [192.168.1.20] (home.isp.test [198.51.100.7]) by smtp.gmail.test\r\n"
        f"Return-Path: <{MAILBOX}>\r\n"
        f"From: Alice Smith <{MAILBOX}>\r\n"
        f"To: {forwarded['From']}\r\n"
        f"Cc: {forwarded['Cc']}, {MAILBOX.upper()}\r\n"
        "Subject: Re: Hello\r\n"
        "Message-ID: <CAF0001@mail.gmail.test>\r\n"
        "In-Reply-To: <order-1@wick.test>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="b1"\r\n'
        "\r\n"
        "--b1\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n"
        "\r\n"
        "Sure, caf=C3=A9 at noon.\r\n"
        f"On Tue, John Wick <{john.reverse_alias}> wrote to alice.sm=\r\nith@gmail.test:\r\n"
        "> Hi there.\r\n"
        "--b1\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
        + base64.encodebytes(html).decode().replace("\n", "\r\n")
        + "--b1--\r\n"
    ).encode()
    replies = await send(mail_doors.smtp, MAILBOX, [john.reverse_alias], raw)
    assert replies == {}
    [_, got] = await sink.wait_for(2)
    assert got.mail_from == "shop@alias.test"
    assert got.rcpt_tos == ["john@wick.test"]
    assert_no_mailbox(got.data)
    assert john.reverse_alias.encode() not in got.data and helen.reverse_alias.encode() not in got.data
    assert b"198.51.100.7" not in got.data and b"192.168.1.20" not in got.data
    message = parse(got.data)
    assert message["From"] == "shop@alias.test"
    assert message["To"] == "John Wick <john@wick.test>"
    assert [a.addr_spec for a in message["Cc"].addresses] == ["helen@wick.test", "shop@alias.test"]
    assert message["Message-ID"].endswith("@alias.test>")
    assert message["In-Reply-To"] == "<order-1@wick.test>"
    plain, html_part = [p for p in message.walk() if not p.is_multipart()]
    assert "Sure, café at noon." in plain.get_content()
    assert "On Tue, John Wick <john@wick.test> wrote to shop@alias.test:" in plain.get_content()
    assert "mailto:shop@alias.test" in html_part.get_content()
    # Signed by the alias domain, and the signature verifies.
    assert message["DKIM-Signature"] is not None and "d=alias.test" in message["DKIM-Signature"]
    assert dkim.verify(got.data, dnsfunc=lambda name, timeout=5: record_value.encode() if name.decode().rstrip(".") == record_name else None)
    assert key.domain == "alias.test"

    alias = await alias_row(runtime, alias_id)
    assert (alias.nb_forward, alias.nb_reply, alias.latest_activity_action, alias.latest_contact_id) == (1, 1, "reply", john.id)
    reply = [a for a in await activities(runtime, alias_id) if a.action == "reply"]
    assert [(a.contact_id, a.mailbox_id) for a in reply] == [(john.id, me.mailbox_ids[0])]
    async with runtime.db.read() as conn:
        sent_ms = await conn.scalar(select(contacts.c.last_email_sent_ms).where(contacts.c.id == john.id))
    assert sent_ms is not None and sent_ms >= reply[0].created_ms
    assert await notifications(runtime, me) == []


async def test_reply_to_a_contact_hosted_here(runtime: Runtime, resolver: StaticResolver, mail_doors: MailDoors, sink: SmtpSink, client: httpx.AsyncClient) -> None:
    me, alias_id, _ = await setup(runtime, resolver, sink)
    bob = await create_user(client, "bob", address="bob@example.com")
    async with runtime.db.write() as conn:
        contact, _ = await find_or_create(conn, user_id=me.user_id, alias_id=alias_id, email="bob@example.com", name=None, reverse_alias_domain="alias.test")
    await send(mail_doors.smtp, MAILBOX, [contact.reverse_alias], reply_to(contact, body=f"From {MAILBOX}\r\n"))
    inbox = await folder_id(client, bob)

    async def arrived() -> Any:
        response = await client.get(f"/users/{bob}/mailboxes/{inbox}/messages")
        return response.json()["results"]

    [listed] = await until(arrived)
    response = await client.get(f"/users/{bob}/mailboxes/{inbox}/messages/{listed['id']}/message.eml")
    assert_no_mailbox(response.content)
    assert parse(response.content)["From"] == "shop@alias.test"
    assert b"198.51.100" not in response.content and b"client.example.org" not in response.content
    assert (await alias_row(runtime, alias_id)).nb_reply == 1
    async with runtime.db.read() as conn:
        assert list(await conn.execute(select(outbound))) == []


async def test_reply_from_a_stranger_is_refused(runtime: Runtime, resolver: StaticResolver, mail_doors: MailDoors, sink: SmtpSink) -> None:
    me, alias_id, john = await setup(runtime, resolver, sink)
    resolver.set("TXT", "evil.test", ["v=spf1 ip4:127.0.0.1 -all"])
    rcpt, data = await converse(mail_doors.smtp, "mallory@evil.test", john.reverse_alias, reply_to(john, sender="mallory@evil.test"))
    assert rcpt[0] == 250
    assert data is not None and data[0] == 550 and b"5.7.1" in data[1]
    assert MAILBOX.lower().encode() not in data[1].lower()
    [note] = await notifications(runtime, me)
    assert "shop@alias.test" in note.title
    assert "mallory@evil.test" in note.message and "john@wick.test" in note.message
    assert MAILBOX.lower() not in note.message.lower()
    assert (await alias_row(runtime, alias_id)).nb_reply == 0
    assert sink.received == []


@pytest.mark.parametrize(
    ("case", "spf_record", "dmarc", "message_sender"),
    [
        ("spf fail", "v=spf1 ip4:192.0.2.1 -all", None, None),
        ("dmarc fail", "v=spf1 ?all", "v=DMARC1; p=reject", None),
        ("from forged", "v=spf1 ip4:127.0.0.1 -all", None, "Alice <other@gmail.test>"),
    ],
)
async def test_spoofed_replies_are_refused(
    runtime: Runtime, resolver: StaticResolver, mail_doors: MailDoors, sink: SmtpSink, case: str, spf_record: str, dmarc: str | None, message_sender: str | None
) -> None:
    me, alias_id, john = await setup(runtime, resolver, sink, spf=spf_record)
    if dmarc:
        resolver.set("TXT", "_dmarc.gmail.test", [dmarc])
    raw = reply_to(john, sender=message_sender) if message_sender else reply_to(john)
    rcpt, data = await converse(mail_doors.smtp, MAILBOX, john.reverse_alias, raw)
    assert rcpt[0] == 250, case
    assert data is not None and data[0] == 550 and b"5.7.1" in data[1], (case, data)
    [note] = await notifications(runtime, me)
    assert "refused" in note.message
    assert (await alias_row(runtime, alias_id)).nb_reply == 0
    assert sink.received == []


async def test_require_reply_authentication(runtime: Runtime, resolver: StaticResolver, mail_doors: MailDoors, sink: SmtpSink) -> None:
    # SPF neutral, no DKIM: enough for an ordinary mailbox ...
    me, alias_id, john = await setup(runtime, resolver, sink, spf="v=spf1 ?all", require_reply_authentication=True)
    rcpt, data = await converse(mail_doors.smtp, MAILBOX, john.reverse_alias, reply_to(john))
    assert data is not None and data[0] == 550 and b"SPF or DKIM must pass" in data[1]
    assert len(await notifications(runtime, me)) == 1
    # ... and with a DKIM signature of the mailbox's domain that verifies, accepted.
    key = generate_key("gmail.test", "g1")
    resolver.set("TXT", dns_record_name(key), [dns_record_value(key)])
    raw = reply_to(john)
    signed = sign(raw, key) + raw
    rcpt, data = await converse(mail_doors.smtp, MAILBOX, john.reverse_alias, signed)
    assert data is not None and data[0] == 250, data
    [got] = await sink.wait_for(1)
    assert_no_mailbox(got.data)
    # The mailbox's signature is gone (it would not verify, and it names the mailbox's domain).
    assert b"d=gmail.test" not in got.data
    # SPF pass alone is enough too.
    resolver.set("TXT", "gmail.test", ["v=spf1 ip4:127.0.0.1 -all"])
    rcpt, data = await converse(mail_doors.smtp, MAILBOX, john.reverse_alias, reply_to(john))
    assert data is not None and data[0] == 250, data
    await sink.wait_for(2)
    assert (await alias_row(runtime, alias_id)).nb_reply == 2


async def test_disabled_alias_cannot_reply(runtime: Runtime, resolver: StaticResolver, mail_doors: MailDoors, sink: SmtpSink) -> None:
    me, alias_id, john = await setup(runtime, resolver, sink)
    async with runtime.db.write() as conn:
        await conn.execute(update(aliases).where(aliases.c.id == alias_id).values(enabled=False))
    rcpt, data = await converse(mail_doors.smtp, MAILBOX, john.reverse_alias, reply_to(john))
    assert rcpt[0] == 250
    assert data is not None and data[0] == 550 and b"disabled" in data[1]
    [note] = await notifications(runtime, me)
    assert "disabled" in note.message
    assert sink.received == []


async def test_unknown_reverse_alias_is_refused_at_rcpt(runtime: Runtime, resolver: StaticResolver, mail_doors: MailDoors, sink: SmtpSink) -> None:
    await setup(runtime, resolver, sink)
    rcpt, data = await converse(mail_doors.smtp, MAILBOX, "ra+zzzzzzzzzzzzzzzzzzzzzzzzzz@alias.test", b"")
    assert rcpt[0] == 550 and data is None


# deliver_reply directly: the decisions on given authentication results.


def results(*, spf: str = "pass", dkim: tuple[DkimSignatureResult, ...] = (), dmarc: str = "none", dkim_aligned: bool = False) -> AuthenticationResults:
    return AuthenticationResults(
        SpfResult(spf, "gmail.test"),
        dkim,
        DmarcResult(dmarc, "gmail.test", "reject" if dmarc == "fail" else "none", spf == "pass", dkim_aligned),
        "gmail.test",
    )


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        (None, "250"),
        (results(), "250"),
        (results(spf="softfail"), "250"),
        (results(spf="fail"), "550"),
        (results(spf="softfail", dmarc="fail"), "550"),
        # A signature of the mailbox's domain that fails, and nothing aligned passing.
        (results(spf="neutral", dkim=(DkimSignatureResult("fail", "gmail.test", "s"),)), "550"),
        (results(spf="neutral", dkim=(DkimSignatureResult("pass", "gmail.test", "s"),), dkim_aligned=True), "250"),
        (results(spf="neutral", dkim=(DkimSignatureResult("fail", "other.test", "s"),)), "250"),
    ],
)
async def test_deliver_reply_decisions(runtime: Runtime, resolver: StaticResolver, sink: SmtpSink, auth: AuthenticationResults | None, expected: str) -> None:
    me, alias_id, john = await setup(runtime, resolver, sink)
    recipient = ReverseAliasRecipient(john.reverse_alias, john.reverse_alias_key, me.user_id, alias_id, john.id)
    reply = await runtime.alias_replies.deliver_reply(
        data=reply_to(john), mail_from=MAILBOX, recipient=recipient, auth=auth, via="MX", client_ip="192.0.2.9", helo="client.test"
    )
    assert reply.startswith(expected), reply
    assert len(await notifications(runtime, me)) == (1 if expected == "550" else 0)


async def test_deliver_reply_for_a_contact_gone(runtime: Runtime, resolver: StaticResolver, sink: SmtpSink) -> None:
    me, alias_id, john = await setup(runtime, resolver, sink)
    recipient = ReverseAliasRecipient(john.reverse_alias, john.reverse_alias_key, me.user_id, alias_id, john.id + 1000)
    reply = await runtime.alias_replies.deliver_reply(
        data=reply_to(john), mail_from=MAILBOX, recipient=recipient, auth=None, via="MX", client_ip="192.0.2.9", helo="client.test"
    )
    assert reply.startswith("550 5.1.1")
    # Another user's contact through this user's recipient: not found either.
    other = await make_user(runtime, "other", mailboxes=["other@gmail.test"])
    recipient = ReverseAliasRecipient(john.reverse_alias, john.reverse_alias_key, other.user_id, alias_id, john.id)
    reply = await runtime.alias_replies.deliver_reply(
        data=reply_to(john), mail_from=MAILBOX, recipient=recipient, auth=None, via="MX", client_ip="192.0.2.9", helo="client.test"
    )
    assert reply.startswith("550 5.1.1")


async def test_reply_to_two_contacts_at_once(runtime: Runtime, resolver: StaticResolver, mail_doors: MailDoors, sink: SmtpSink) -> None:
    me, alias_id, john = await setup(runtime, resolver, sink)
    async with runtime.db.write() as conn:
        helen, _ = await find_or_create(conn, user_id=me.user_id, alias_id=alias_id, email="helen@wick.test", name=None, reverse_alias_domain="alias.test")
    # Another user's reverse alias in Cc is not this user's to resolve: left as written.
    other = await make_user(runtime, "other", mailboxes=["other@gmail.test"])
    other_alias = await make_alias(runtime, other, "theirs@alias.test")
    async with runtime.db.write() as conn:
        stranger, _ = await find_or_create(conn, user_id=other.user_id, alias_id=other_alias, email="secret@wick.test", name=None, reverse_alias_domain="alias.test")
    raw = reply_to(john, Cc=f"{helen.reverse_alias}, {stranger.reverse_alias}")
    assert await send(mail_doors.smtp, MAILBOX, [john.reverse_alias, helen.reverse_alias], raw) == {}
    received = await sink.wait_for(2)
    assert sorted(r.rcpt_tos[0] for r in received) == ["helen@wick.test", "john@wick.test"]
    for got in received:
        assert got.mail_from == "shop@alias.test"
        assert_no_mailbox(got.data)
        message = parse(got.data)
        assert message["To"] == "John Wick <john@wick.test>"
        assert [a.addr_spec for a in message["Cc"].addresses] == ["helen@wick.test", stranger.reverse_alias]
        assert b"secret@wick.test" not in got.data
    assert (await alias_row(runtime, alias_id)).nb_reply == 2


async def test_a_reply_refused_for_good_is_notified(runtime: Runtime, resolver: StaticResolver, mail_doors: MailDoors, sink: SmtpSink) -> None:
    """The contact's server refuses the reply: the alias's user hears it in a
    notification (their own mailbox is elsewhere, not the hosted INBOX)."""
    me, _, john = await setup(runtime, resolver, sink)
    sink.rcpt_replies.append("550 5.1.1 <john@wick.test>: no such user")
    assert await send(mail_doors.smtp, MAILBOX, [john.reverse_alias], reply_to(john)) == {}

    async def notified() -> Any:
        while True:
            found = [n for n in await notifications(runtime, me) if "could not be delivered" in n.title]
            if found:
                return found
            await asyncio.sleep(0.05)

    [note] = await asyncio.wait_for(notified(), 15)
    assert "shop@alias.test" in note.title
    assert "no such user" in note.message
    assert MAILBOX.lower() not in note.message.lower()
