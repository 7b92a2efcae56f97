"""Alias mail by authenticated submission, over real sockets: replies to reverse
aliases (rewritten and queued from the alias, the user's address nowhere), sending
as one's own alias, and the refusals: another user's alias, a disabled alias, another
user's reverse alias."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from postern.aliases.contacts import find_or_create
from postern.config import Settings
from postern.delivery import dkim_keys
from postern.serve.runtime import Runtime
from postern.storage.schema import aliases, outbound
from tests.aliases.helpers import AliasUser, activities, alias_row, make_alias, make_user
from tests.conftest import MailDoors
from tests.helpers import folder_id, make_message
from tests.sink import SmtpSink

PASSWORD = "correct horse battery"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.alias_domains = ["alias.test"]
    return settings


def _submit(port: int, login: str, mail_from: str, rcpts: Sequence[str], raw: bytes) -> dict[str, Any]:
    """Log in and send; the replies of MAIL, each RCPT and DATA (when it got that far)."""
    with smtplib.SMTP("127.0.0.1", port, local_hostname="laptop.home.test", timeout=30) as smtp:
        smtp.ehlo()
        smtp.login(login, PASSWORD)
        replies: dict[str, Any] = {"mail": smtp.mail(mail_from), "rcpt": [], "data": None}
        if replies["mail"][0] != 250:
            return replies
        replies["rcpt"] = [smtp.rcpt(r) for r in rcpts]
        if any(code == 250 for code, _ in replies["rcpt"]):
            replies["data"] = smtp.data(raw)
        return replies


async def submit(port: int, login: str, mail_from: str, rcpts: Sequence[str], raw: bytes) -> dict[str, Any]:
    return await asyncio.wait_for(asyncio.to_thread(_submit, port, login, mail_from, rcpts, raw), 30)


async def sent_folder(client: httpx.AsyncClient, user_id: str) -> list[dict[str, Any]]:
    folder = await folder_id(client, user_id, "Sent Mail")
    response = await client.get(f"/users/{user_id}/mailboxes/{folder}/messages")
    assert response.status_code == 200, response.text
    return response.json()["results"]


async def contact_of(runtime: Runtime, user: AliasUser, alias_id: int, email: str = "john@wick.test", name: str | None = "John Wick") -> Any:
    async with runtime.db.write() as conn:
        contact, _ = await find_or_create(conn, user_id=user.user_id, alias_id=alias_id, email=email, name=name, reverse_alias_domain="alias.test")
    return contact


async def hosted_user(runtime: Runtime, username: str) -> AliasUser:
    """A user with a hosted address that is also their (only) mailbox."""
    return await make_user(runtime, username, address=f"{username}@example.com", mailboxes=[f"{username}@example.com"])


async def test_reply_to_a_reverse_alias_by_submission(runtime: Runtime, client: httpx.AsyncClient, mail_doors: MailDoors, sink: SmtpSink) -> None:
    sink.serve_domain("wick.test")
    sink.serve_domain("elsewhere.test")
    me = await hosted_user(runtime, "me")
    alias_id = await make_alias(runtime, me, "shop@alias.test")
    async with runtime.db.write() as conn:
        await conn.execute(update(aliases).where(aliases.c.id == alias_id).values(name="The Shop"))
    john = await contact_of(runtime, me, alias_id)
    raw = make_message(
        subject="Re: order",
        body="Yes.\r\n\r\nOn Monday, me@example.com wrote:\r\n> question\r\n",
        From="Me Myself <me@example.com>",
        To=f'"John Wick - john at wick.test" <{john.reverse_alias}>',
        Cc="carol@elsewhere.test",
        Message_ID="<reply-1@example.com>",
    )
    replies = await submit(mail_doors.submission, "me", "me@example.com", [john.reverse_alias, "carol@elsewhere.test"], raw)
    assert replies["data"][0] == 250, replies
    received = await sink.wait_for(2)
    by_rcpt = {r.rcpt_tos[0]: r for r in received}
    reply = by_rcpt["john@wick.test"]
    assert reply.mail_from == "shop@alias.test"
    assert b"me@example.com" not in reply.data.lower()
    assert b"laptop.home.test" not in reply.data
    text = reply.data.decode()
    assert "From: The Shop <shop@alias.test>" in text
    assert "To: John Wick <john@wick.test>" in text
    assert "On Monday, shop@alias.test wrote:" in text
    assert "Message-ID: <reply-1@example.com>" not in text
    # An ordinary recipient beside it gets the message as written.
    carol = by_rcpt["carol@elsewhere.test"]
    assert carol.mail_from == "me@example.com" and b"From: Me Myself <me@example.com>" in carol.data
    # The Sent copy is what the user wrote; the reply is counted.
    [copy] = await sent_folder(client, me.user_id)
    assert copy["subject"] == "Re: order"
    alias = await alias_row(runtime, alias_id)
    assert (alias.nb_reply, alias.latest_activity_action, alias.latest_contact_id) == (1, "reply", john.id)
    [activity] = await activities(runtime, alias_id)
    assert (activity.action, activity.contact_id, activity.mailbox_id) == ("reply", john.id, me.mailbox_ids[0])


async def test_reply_from_a_hosted_mailbox_of_another_account(runtime: Runtime, mail_doors: MailDoors, sink: SmtpSink) -> None:
    """The alias's mailbox is a hosted address of another account (the same person):
    that account may reply through the alias's reverse aliases."""
    sink.serve_domain("wick.test")
    work = await hosted_user(runtime, "work")
    owner = await make_user(runtime, "owner", mailboxes=["work@example.com"])
    alias_id = await make_alias(runtime, owner, "shop@alias.test")
    john = await contact_of(runtime, owner, alias_id)
    raw = make_message(From="work@example.com", To=john.reverse_alias, body="hi from work@example.com\r\n")
    replies = await submit(mail_doors.submission, "work", "work@example.com", [john.reverse_alias], raw)
    assert replies["data"][0] == 250, replies
    [got] = await sink.wait_for(1)
    assert got.mail_from == "shop@alias.test" and b"work@example.com" not in got.data
    assert (await alias_row(runtime, alias_id)).nb_reply == 1
    assert work.user_id != owner.user_id


async def test_reply_to_another_users_reverse_alias_is_refused(runtime: Runtime, client: httpx.AsyncClient, mail_doors: MailDoors, sink: SmtpSink) -> None:
    sink.serve_domain("wick.test")
    owner = await make_user(runtime, "owner", mailboxes=["owner@gmail.test"])
    alias_id = await make_alias(runtime, owner, "shop@alias.test")
    john = await contact_of(runtime, owner, alias_id)
    mallory = await hosted_user(runtime, "mallory")
    raw = make_message(From="mallory@example.com", To=john.reverse_alias)
    replies = await submit(mail_doors.submission, "mallory", "mallory@example.com", [john.reverse_alias], raw)
    assert replies["data"][0] == 550, replies
    [note] = await runtime.notifications.all_for(owner.user_id)
    assert "mallory@example.com" in note.message and "shop@alias.test" in note.message
    assert await sent_folder(client, mallory.user_id) == []
    assert (await alias_row(runtime, alias_id)).nb_reply == 0
    async with runtime.db.read() as conn:
        assert list(await conn.execute(select(outbound))) == []
    assert sink.received == []


async def test_reply_through_a_disabled_alias_is_refused(runtime: Runtime, mail_doors: MailDoors, sink: SmtpSink) -> None:
    me = await hosted_user(runtime, "me")
    alias_id = await make_alias(runtime, me, "shop@alias.test", enabled=False)
    john = await contact_of(runtime, me, alias_id)
    replies = await submit(mail_doors.submission, "me", "me@example.com", [john.reverse_alias], make_message(From="me@example.com", To=john.reverse_alias))
    assert replies["data"][0] == 550 and b"disabled" in replies["data"][1], replies
    assert sink.received == []


async def test_send_as_own_alias(runtime: Runtime, resolver: Any, client: httpx.AsyncClient, mail_doors: MailDoors, sink: SmtpSink) -> None:
    sink.serve_domain("shop.test")
    _, record_name, record_value = await dkim_keys.create_key(runtime.db, "alias.test", selector="s1")
    resolver.set("TXT", record_name, [record_value])
    me = await hosted_user(runtime, "me")
    await make_alias(runtime, me, "shop@alias.test")
    raw = make_message(subject="Newsletter unsubscribe", From="Me <shop@alias.test>", To="support@shop.test")
    replies = await submit(mail_doors.submission, "me", "shop@alias.test", ["support@shop.test"], raw)
    assert replies["mail"][0] == 250 and replies["data"][0] == 250, replies
    [got] = await sink.wait_for(1)
    assert got.mail_from == "shop@alias.test" and got.rcpt_tos == ["support@shop.test"]
    assert b"d=alias.test" in got.data
    [copy] = await sent_folder(client, me.user_id)
    assert copy["subject"] == "Newsletter unsubscribe"


async def test_never_as_someone_elses_alias(runtime: Runtime, mail_doors: MailDoors, sink: SmtpSink) -> None:
    sink.serve_domain("shop.test")
    owner = await make_user(runtime, "owner", mailboxes=["owner@gmail.test"])
    await make_alias(runtime, owner, "theirs@alias.test")
    me = await hosted_user(runtime, "me")
    await make_alias(runtime, me, "off@alias.test", enabled=False)
    # MAIL FROM another user's alias, or a disabled one of one's own.
    for address in ("theirs@alias.test", "off@alias.test", "nobody@alias.test"):
        replies = await submit(mail_doors.submission, "me", address, ["support@shop.test"], make_message(From=address, To="support@shop.test"))
        assert replies["mail"][0] == 553, (address, replies)
    # The header From naming another user's alias, MAIL FROM one's own address.
    raw = make_message(From="theirs@alias.test", To="support@shop.test")
    replies = await submit(mail_doors.submission, "me", "me@example.com", ["support@shop.test"], raw)
    assert replies["data"][0] == 550, replies
    assert sink.received == []
    assert me.user_id != owner.user_id
