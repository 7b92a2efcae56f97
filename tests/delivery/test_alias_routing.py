"""The router decides every recipient at RCPT: hosted address, alias (also disabled),
reverse alias, signed VERP bounce address, catch-all custom domain, or 550; and LMTP
answers each alias recipient on its own."""

from __future__ import annotations

import asyncio
import smtplib

import pytest
from sqlalchemy import update

from postern.aliases.bounces import verp_address
from postern.aliases.contacts import find_or_create
from postern.config import Settings
from postern.delivery.router import AliasRecipient, BounceRecipient, LocalRecipient, RecipientRefused, ReverseAliasRecipient
from postern.serve.runtime import Runtime
from postern.storage import alias_activities
from postern.storage.schema import users
from tests.aliases.helpers import activities, alias_row, delete_address_forever, make_alias, make_custom_domain, make_user, send
from tests.conftest import MailDoors
from tests.helpers import make_message
from tests.sink import SmtpSink


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.alias_domains = ["alias.test"]
    settings.reverse_alias_domain = "rev.test"
    return settings


async def refused(runtime: Runtime, address: str) -> str:
    with pytest.raises(RecipientRefused) as caught:
        await runtime.router.resolve(address)
    return caught.value.reply


async def test_every_kind_of_recipient(runtime: Runtime) -> None:
    me = await make_user(runtime, "me", mailboxes=["me@gmail.test"], address="me@example.com")
    alias_id = await make_alias(runtime, me, "Shop@Alias.test")
    off_id = await make_alias(runtime, me, "off@alias.test", enabled=False)
    domain_id = await make_custom_domain(runtime, me, "mine.test")
    await delete_address_forever(runtime, "gone@mine.test", me, domain_id)

    assert await runtime.router.resolve("ME@example.com") == LocalRecipient("me@example.com", "me@example.com", me.user_id)
    assert await runtime.router.resolve("shop@ALIAS.test") == AliasRecipient("shop@alias.test", "shop@alias.test", me.user_id, alias_id)
    assert (await runtime.router.resolve("off@alias.test")).alias_id == off_id
    assert await runtime.router.resolve("new@mine.test") == AliasRecipient("new@mine.test", "new@mine.test", me.user_id, None, domain_id)
    for address in ("gone@mine.test", "nobody@alias.test", "x@nowhere.test", "ra+nosuchreversealiasatallxx@rev.test", '"a@b"@alias.test', "a%b@alias.test"):
        assert (await refused(runtime, address)).startswith("550 5.1.1"), address

    async with runtime.db.write() as conn:
        contact, _ = await find_or_create(conn, user_id=me.user_id, alias_id=alias_id, email="john@wick.com", name=None, reverse_alias_domain="rev.test")
        activity_id = await alias_activities.record(conn, user_id=me.user_id, alias_id=alias_id, action="forward", contact_id=contact.id)
    assert await runtime.router.resolve(contact.reverse_alias.upper()) == ReverseAliasRecipient(
        contact.reverse_alias, contact.reverse_alias_key, me.user_id, alias_id, contact.id
    )
    verp = verp_address(runtime.server_key, activity_id, me.mailbox_ids[0], "rev.test")
    assert await runtime.router.resolve(verp) == BounceRecipient(verp, verp, me.user_id, alias_id, activity_id, me.mailbox_ids[0])
    # A VERP address is only ours on the reverse alias domain.
    assert (await refused(runtime, verp.replace("@rev.test", "@alias.test"))).startswith("550")
    assert (await refused(runtime, verp.replace("+", "+1", 1))).startswith("550")
    # The counters follow the activity recorded above.
    alias = await alias_row(runtime, alias_id)
    assert (alias.nb_forward, alias.latest_activity_action, alias.latest_contact_id) == (1, "forward", contact.id)


async def test_disabled_user(runtime: Runtime) -> None:
    me = await make_user(runtime, "me", mailboxes=["me@gmail.test"])
    await make_alias(runtime, me, "shop@alias.test")
    await make_custom_domain(runtime, me, "mine.test")
    async with runtime.db.write() as conn:
        await conn.execute(update(users).where(users.c.id == me.user_id).values(disabled=True))
    for address in ("shop@alias.test", "any@mine.test"):
        assert (await refused(runtime, address)).startswith("550 5.2.1"), address


def _lmtp(port: int, rcpts: list[str], data: bytes) -> list[tuple[int, bytes]]:
    """The replies after DATA, one per recipient (smtplib reads only the first)."""
    with smtplib.LMTP("127.0.0.1", port) as lmtp:
        lmtp.ehlo("client.example.org")
        lmtp.mail("john@wick.com")
        for rcpt in rcpts:
            assert lmtp.rcpt(rcpt)[0] == 250
        assert lmtp.docmd("DATA")[0] == 354
        lmtp.send(data + b".\r\n")
        return [lmtp.getreply() for _ in rcpts]


async def test_lmtp_and_mx_with_mixed_recipients(runtime: Runtime, mail_doors: MailDoors, sink: SmtpSink) -> None:
    sink.serve_domain("gmail.test")
    me = await make_user(runtime, "me", mailboxes=["me@gmail.test"], address="me@example.com")
    alias_id = await make_alias(runtime, me, "shop@alias.test")
    off_id = await make_alias(runtime, me, "off@alias.test", enabled=False)
    raw = make_message(From="john@wick.com", To="shop@alias.test, off@alias.test, me@example.com")
    replies = await asyncio.to_thread(_lmtp, mail_doors.lmtp, ["shop@alias.test", "off@alias.test", "me@example.com"], raw)
    assert [code for code, _ in replies] == [250, 250, 250]
    assert b"forwarded" in replies[0][1] and b"stored" in replies[2][1]
    await sink.wait_for(1)
    assert [a.action for a in await activities(runtime, alias_id)] == ["forward"]
    assert [a.action for a in await activities(runtime, off_id)] == ["block"]
    # By MX, one reply for all.
    await send(mail_doors.smtp, "john@wick.com", ["shop@alias.test", "me@example.com"], raw)
    await sink.wait_for(2)
