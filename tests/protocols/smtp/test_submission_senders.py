"""The submission check of the author fields (issue 14, item 3), over a real
submission socket: it reads the header as every consumer does (the obsolete ``From :``
is a From; every address parser's reading counts), so a message with two From fields,
or a From, Sender, Resent-From or Resent-Sender that names someone else, is refused
with 550 5.7.1 and nothing is stored or queued. What is accepted shows the same single
sender in the IMAP ENVELOPE and in the admin API."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from postern.mime.imap_envelope import envelope
from postern.serve.runtime import Runtime
from tests.helpers import create_user
from tests.protocols.smtp.test_submission import (
    PASSWORD,
    connect,
    in_thread,
    listing,
    queue_rows,
    source,
)

HEAD = b"To: carol@remote.org\r\nSubject: hello\r\nDate: Wed, 02 Nov 2011 19:19:08 +0000\r\nMessage-ID: <m1@example.com>\r\n"
BODY = b"\r\nHi.\r\n"

FORGED = [
    # The finding: an obsolete-syntax From before a good one.
    b'From : "Bob (boss)" <bob@example.com>\r\nFrom: alice@example.com\r\n',
    b"From\t: bob@example.com\r\nFrom: alice@example.com\r\n",
    b"From: alice@example.com\r\nFROM : bob@example.com\r\n",
    # Two From fields, even both Alice's: readers disagree on which one counts.
    b"From: alice@example.com\r\nFrom: Alice <alice@example.com>\r\n",
    # Someone else in a Resent- or Sender field.
    b"From: alice@example.com\r\nResent-From: bob@example.com\r\n",
    b"From: alice@example.com\r\nResent-Sender : bob@example.com\r\n",
    b"From: alice@example.com\r\nSender : bob@example.com\r\n",
    # Addresses some reader sees though another does not.
    b"From: bob@example.com <alice@example.com>\r\n",
    b"From: alice@example.com, bob@example.com\r\n",
    # A From no reader finds an address in.
    b"From: undisclosed-recipients:;\r\n",
    # A From after a line that is not a field is still in the header (Dovecot's rule).
    b"From: alice@example.com\r\nnot a field\r\nFrom: bob@example.com\r\n",
]


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> str:
    user = await create_user(client, "alice", address="alice@example.com", name="Alice")
    await create_user(client, "bob", address="bob@example.com")
    return user


def _send_all(port: int, messages: list[bytes]) -> list[tuple[int, bytes]]:
    smtp = connect(port)
    try:
        smtp.login("alice", PASSWORD)
        replies = []
        for raw in messages:
            assert smtp.mail("alice@example.com")[0] == 250
            assert smtp.rcpt("carol@remote.org")[0] == 250
            replies.append(smtp.data(raw))
        return replies
    finally:
        smtp.quit()


async def test_forged_author_fields_are_refused(
    mail_doors: Any, sink: Any, client: httpx.AsyncClient, runtime: Runtime, alice: str
) -> None:
    sink.serve_domain("remote.org")
    replies = await in_thread(
        lambda: _send_all(
            mail_doors.submission, [fields + HEAD + BODY for fields in FORGED]
        )
    )
    for fields, (code, message) in zip(FORGED, replies, strict=True):
        assert code == 550 and b"5.7.1" in message, (fields, code, message)
    assert await queue_rows(runtime) == []
    assert await listing(client, alice, "Sent Mail") == []
    assert sink.received == []


async def test_one_obsolete_from_of_ones_own_is_accepted_and_read_alike(
    mail_doors: Any, sink: Any, client: httpx.AsyncClient, runtime: Runtime, alice: str
) -> None:
    sink.serve_domain("remote.org")
    raw = b'From : "Alice A." <alice@example.com>\r\n' + HEAD + BODY
    [(code, message)] = await in_thread(lambda: _send_all(mail_doors.submission, [raw]))
    assert code == 250, message
    [sent] = await listing(client, alice, "Sent Mail")
    assert sent["from"]["address"] == "alice@example.com"

    # The IMAP ENVELOPE of the stored copy names the same single sender.
    stored = await source(client, alice, "Sent Mail", sent["id"])
    # Written again without the obsolete space: DKIM signing (dkimpy does not see a
    # "From :" field at all) and every other reader then see the same From.
    assert stored.startswith(b'From: "Alice A." <alice@example.com>\r\n'), stored[:80]
    [author] = envelope(stored).from_ or ()
    assert (author.name, author.mailbox, author.host) == (
        b"Alice A.",
        b"alice",
        b"example.com",
    )
