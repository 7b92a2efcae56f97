"""Replies through a reverse alias read the author fields as authenticated submission
does (issue 14, item 3; ``mime.senders``): an obsolete ``From :`` counts as a From, and
every address parser's reading counts, by MX and by submission."""

from __future__ import annotations

import pytest

from postern.config import Settings
from postern.delivery.dns import StaticResolver
from postern.serve.runtime import Runtime
from tests.aliases.helpers import alias_row, make_alias
from tests.aliases.test_reply_flow import MAILBOX, converse, reply_to, setup
from tests.aliases.test_send_as_alias import contact_of, hosted_user, submit
from tests.conftest import MailDoors
from tests.helpers import make_message
from tests.sink import SmtpSink


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.alias_domains = ["alias.test"]
    return settings


@pytest.mark.parametrize(
    "extra",
    [
        b'From : "The Boss" <boss@gmail.test>\r\n',
        b"FROM\t: boss@gmail.test\r\n",
        f"From: {MAILBOX}\r\n".encode(),  # two From fields, even the same one
    ],
)
async def test_mx_reply_with_a_second_from_is_refused(
    runtime: Runtime,
    resolver: StaticResolver,
    mail_doors: MailDoors,
    sink: SmtpSink,
    extra: bytes,
) -> None:
    _me, alias_id, john = await setup(runtime, resolver, sink)
    raw = extra + reply_to(john)
    rcpt, data = await converse(mail_doors.smtp, MAILBOX, john.reverse_alias, raw)
    assert rcpt[0] == 250
    assert data is not None and data[0] == 550 and b"5.7.1" in data[1], data
    assert (await alias_row(runtime, alias_id)).nb_reply == 0
    assert sink.received == []


async def test_mx_reply_whose_from_some_reader_sees_as_another_is_refused(
    runtime: Runtime, resolver: StaticResolver, mail_doors: MailDoors, sink: SmtpSink
) -> None:
    _me, alias_id, john = await setup(runtime, resolver, sink)
    raw = reply_to(john, sender=f"boss@gmail.test <{MAILBOX}>")
    rcpt, data = await converse(mail_doors.smtp, MAILBOX, john.reverse_alias, raw)
    assert rcpt[0] == 250
    assert data is not None and data[0] == 550 and b"5.7.1" in data[1], data
    assert (await alias_row(runtime, alias_id)).nb_reply == 0
    assert sink.received == []


async def test_submission_reply_with_an_obsolete_from_is_refused(
    runtime: Runtime, mail_doors: MailDoors, sink: SmtpSink
) -> None:
    sink.serve_domain("wick.test")
    me = await hosted_user(runtime, "me")
    alias_id = await make_alias(runtime, me, "shop@alias.test")
    john = await contact_of(runtime, me, alias_id)
    raw = b'From : "Boss" <boss@example.com>\r\n' + make_message(
        From="me@example.com", To=john.reverse_alias
    )
    replies = await submit(
        mail_doors.submission, "me", "me@example.com", [john.reverse_alias], raw
    )
    assert replies["data"][0] == 550 and b"5.7.1" in replies["data"][1], replies
    assert (await alias_row(runtime, alias_id)).nb_reply == 0
    assert sink.received == []
