"""Incoming mail over the MX door, spoken to with smtplib (and swaks) over real sockets.

The server runs in the test's event loop: every blocking client runs in a thread.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import smtplib
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from postern.delivery.dkim_signing import (
    dns_record_name,
    dns_record_value,
    generate_key,
    sign,
)
from postern.delivery.dns import StaticResolver
from postern.protocols.smtp.handlers import InboundHandler
from postern.protocols.smtp.server import HEADER_ROOM, start_listener
from postern.serve.runtime import Runtime
from postern.serve.server import bound_port
from postern.storage.schema import blobs, outbound
from tests.helpers import create_user, folder_id, make_message

HOST = "127.0.0.1"
PREFIX_FIELDS = ["Return-Path", "Delivered-To", "Received", "Authentication-Results"]


# --- helpers ---------------------------------------------------------------------


def smtp_conversation(port: int, script: Callable[[smtplib.SMTP], Any], helo: str = "client.example.org") -> Any:
    """Run ``script`` against a fresh EHLO'd connection (call through asyncio.to_thread)."""
    with smtplib.SMTP(HOST, port, local_hostname=helo, timeout=15) as smtp:
        smtp.ehlo(helo)
        return script(smtp)


async def converse(port: int, script: Callable[[smtplib.SMTP], Any], helo: str = "client.example.org") -> Any:
    return await asyncio.to_thread(smtp_conversation, port, script, helo)


def transaction(mail_from: str, rcpts: list[str], data: bytes, mail_options: tuple[str, ...] = ()) -> Callable[[smtplib.SMTP], dict[str, Any]]:
    """MAIL, every RCPT, then DATA if any recipient was accepted; every reply kept."""

    def script(smtp: smtplib.SMTP) -> dict[str, Any]:
        replies: dict[str, Any] = {"mail": smtp.mail(mail_from, list(mail_options)), "rcpt": {}}
        for rcpt in rcpts:
            replies["rcpt"][rcpt] = smtp.rcpt(rcpt)
        if any(code == 250 for code, _ in replies["rcpt"].values()):
            replies["data"] = smtp.data(data)
        replies["noop"] = smtp.noop()
        return replies

    return script


async def messages(client: httpx.AsyncClient, user_id: str, path: str = "INBOX") -> tuple[str, list[dict[str, Any]]]:
    folder = await folder_id(client, user_id, path)
    response = await client.get(f"/users/{user_id}/mailboxes/{folder}/messages")
    assert response.status_code == 200, response.text
    return folder, response.json()["results"]


async def stored_source(client: httpx.AsyncClient, user_id: str, folder: str, uid: int) -> bytes:
    response = await client.get(f"/users/{user_id}/mailboxes/{folder}/messages/{uid}/message.eml")
    assert response.status_code == 200, response.text
    return response.content


def split_prefix(stored: bytes, sent: bytes) -> list[tuple[str, str]]:
    """The header fields postern put in front of exactly the bytes that were sent."""
    assert stored.endswith(sent), "the stored message does not end with the bytes sent"
    prefix = stored[: len(stored) - len(sent)]
    assert prefix.endswith(b"\r\n")
    fields: list[tuple[str, str]] = []
    for line in prefix[:-2].split(b"\r\n"):
        text = line.decode("utf-8")
        if text[:1] in (" ", "\t"):
            name, value = fields[-1]
            fields[-1] = (name, value + " " + text.strip())
        else:
            name, colon, value = text.partition(":")
            assert colon, f"not a header field: {text!r}"
            fields.append((name, value.strip()))
    return fields


def unfolded_header(stored: bytes, name: str) -> list[str]:
    head = stored.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    head = re.sub(r"\r\n[ \t]+", " ", head)
    prefix = name.lower() + ":"
    return [line[len(prefix):].strip() for line in head.split("\r\n") if line.lower().startswith(prefix)]


async def queued_rows(runtime: Runtime) -> int:
    async with runtime.db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(outbound))).scalar_one())


@pytest.fixture
async def small_door(runtime: Runtime) -> AsyncIterator[int]:
    """An MX listener of our own, with a small size limit and at most 2 recipients."""
    handler = InboundHandler(runtime.router, runtime.inbound, lmtp=False, max_recipients=2)
    server = await start_listener(
        "smtp",
        HOST,
        0,
        handler,
        hostname=runtime.settings.hostname,
        max_message_size=16384,
        tls_context=None,
        timeout=30,
        connections_per_ip=5,
    )
    try:
        yield bound_port(server)
    finally:
        server.close()
        await server.wait_closed()


# --- one and many recipients ---------------------------------------------------------


async def test_one_recipient_lands_in_inbox(client: httpx.AsyncClient, mail_doors: Any) -> None:
    uid = await create_user(client, "alice", address="alice@example.com")
    sent = make_message(subject="Hello over SMTP", body="Hi Alice,\r\n.leading dot survives\r\nbye\r\n")
    replies = await converse(mail_doors.smtp, transaction("sender@example.org", ["alice@example.com"], sent))
    assert replies["mail"][0] == 250
    assert replies["rcpt"]["alice@example.com"][0] == 250
    code, text = replies["data"]
    assert code == 250 and text.startswith(b"2.0.0 "), replies["data"]

    folder, listed = await messages(client, uid)
    assert len(listed) == 1
    assert listed[0]["subject"] == "Hello over SMTP"
    assert listed[0]["from"] == {"name": "Sender Name", "address": "sender@example.org"}

    stored = await stored_source(client, uid, folder, listed[0]["id"])
    fields = split_prefix(stored, sent)
    assert [name for name, _ in fields] == PREFIX_FIELDS
    values = dict(fields)
    assert values["Return-Path"] == "<sender@example.org>"
    assert values["Delivered-To"] == "alice@example.com"
    received = values["Received"]
    assert received.startswith("from client.example.org ([127.0.0.1]) by mx.example.com (postern) with ESMTP id ")
    assert "for <alice@example.com>;" in received
    assert values["Authentication-Results"].startswith("mx.example.com;")
    assert "spf=none" in values["Authentication-Results"]

    # The message's timeline: one STORE event.
    queue_id = text.decode().rsplit(" ", 1)[-1]
    assert queue_id in received
    response = await client.get(f"/users/{uid}/mailboxes/{folder}/messages/{listed[0]['id']}/events")
    assert response.status_code == 200, response.text
    (event,) = [e for e in response.json()["events"] if e["action"] == "STORE"]
    assert event["source"] == "MX"
    assert event["origin"] == "127.0.0.1"
    assert event["originhost"] == "client.example.org"
    assert event["transtype"] == "ESMTP"
    assert event["from"] == "sender@example.org"
    assert event["to"] == ["alice@example.com"]
    assert event["queueId"] == queue_id
    assert event["authentication"]["spf"]["result"] == "none"


async def test_null_sender_accepted(client: httpx.AsyncClient, resolver: StaticResolver, mail_doors: Any) -> None:
    """Bounces come from the null reverse-path, which every MX must accept (RFC 5321
    4.5.5); SPF then checks the HELO name (RFC 7208 2.4)."""
    uid = await create_user(client, "alice", address="alice@example.com")
    resolver.set("TXT", "client.example.org", ["v=spf1 ip4:127.0.0.1 -all"])
    sent = make_message(subject="Undelivered Mail Returned to Sender", From="MAILER-DAEMON@client.example.org")

    def script(smtp: smtplib.SMTP) -> dict[str, Any]:
        out = {"mail": smtp.mail(""), "rcpt": smtp.rcpt("alice@example.com")}
        out["data"] = smtp.data(sent)
        # The next transaction in the session starts afresh.
        out["mail2"] = smtp.mail("sender@example.org")
        return out

    out = await converse(mail_doors.smtp, script)
    assert out["mail"][0] == 250, out
    assert out["rcpt"][0] == 250, out
    assert out["data"][0] == 250, out
    assert out["mail2"][0] == 250, out
    folder, listed = await messages(client, uid)
    assert [m["subject"] for m in listed] == ["Undelivered Mail Returned to Sender"]
    stored = await stored_source(client, uid, folder, listed[0]["id"])
    fields = dict(split_prefix(stored, sent))
    assert fields["Return-Path"] == "<>"
    assert "spf=pass smtp.helo=client.example.org" in fields["Authentication-Results"]
    events = (await client.get(f"/users/{uid}/mailboxes/{folder}/messages/{listed[0]['id']}/events")).json()["events"]
    assert events[0]["from"] == ""


async def test_many_recipients_share_one_blob(client: httpx.AsyncClient, runtime: Runtime, mail_doors: Any) -> None:
    users = {name: await create_user(client, name, address=f"{name}@example.com") for name in ("alice", "bob", "carol")}
    # bob twice, in another case: still one copy for him.
    rcpts = [f"{name}@example.com" for name in users] + ["BOB@Example.COM"]
    sent = make_message(subject="For all of you", To="alice@example.com, bob@example.com, carol@example.com")
    replies = await converse(mail_doors.smtp, transaction("sender@example.org", rcpts, sent))
    assert all(reply[0] == 250 for reply in replies["rcpt"].values())
    assert replies["data"][0] == 250

    keys = set()
    for name, user_id in users.items():
        folder, listed = await messages(client, user_id)
        assert [m["subject"] for m in listed] == ["For all of you"]
        stored = await stored_source(client, user_id, folder, listed[0]["id"])
        fields = dict(split_prefix(stored, sent))  # the bytes after the prefix are identical
        assert fields["Delivered-To"] == f"{name}@example.com"
        assert f"for <{name}@example.com>;" in fields["Received"]
        row = await runtime.mailstore.get_message(user_id, folder, listed[0]["id"])
        keys.add(row.blob_key)
    assert len(keys) == 1, "each recipient's copy must use the same blob"
    async with runtime.db.read() as conn:
        refcount = (await conn.execute(select(blobs.c.refcount).where(blobs.c.key == keys.pop()))).scalar_one()
    assert refcount == 3


# --- refusals at RCPT --------------------------------------------------------------


async def test_unknown_recipient_refused_known_one_accepted(client: httpx.AsyncClient, mail_doors: Any) -> None:
    uid = await create_user(client, "alice", address="alice@example.com")
    sent = make_message(subject="Only Alice")
    replies = await converse(mail_doors.smtp, transaction("sender@example.org", ["nobody@example.com", "alice@example.com"], sent))
    code, text = replies["rcpt"]["nobody@example.com"]
    assert code == 550 and text.startswith(b"5.1.1 "), replies
    assert replies["rcpt"]["alice@example.com"][0] == 250
    assert replies["data"][0] == 250
    _, listed = await messages(client, uid)
    assert [m["subject"] for m in listed] == ["Only Alice"]


def raw_rcpts(port: int, rcpts: list[bytes]) -> list[bytes]:
    """RCPT TO lines exactly as given (smtplib would rewrite some of them)."""
    with socket.create_connection((HOST, port), timeout=15) as sock:
        reader = sock.makefile("rb")

        def reply() -> bytes:
            lines = [reader.readline()]
            while lines[-1][3:4] == b"-":
                lines.append(reader.readline())
            return lines[-1].rstrip(b"\r\n")

        assert reply().startswith(b"220")
        sock.sendall(b"EHLO client.example.org\r\n")
        assert reply().startswith(b"250 ")
        sock.sendall(b"MAIL FROM:<sender@example.org>\r\n")
        assert reply().startswith(b"250 ")
        answers = []
        for rcpt in rcpts:
            sock.sendall(b"RCPT TO:" + rcpt + b"\r\n")
            answers.append(reply())
        sock.sendall(b"DATA\r\n")
        answers.append(reply())
        sock.sendall(b"QUIT\r\n")
        answers.append(reply())
        return answers


RELAY_ATTEMPTS = [
    b"<bob@other.org>",
    b"<alice@other.org>",
    b"<user%other.org@example.com>",
    b"<other.org!user@example.com>",
    b"<@example.com:bob@other.org>",
    b"<@mx.example.com,@example.com:bob@other.org>",
    b'<"bob@other.org"@example.com>',
    b'<"bob%other.org"@example.com>',
    b"<bob@[192.0.2.1]>",
    b"<postmaster@other.org>",
]


async def test_relay_attempts_refused(client: httpx.AsyncClient, runtime: Runtime, mail_doors: Any) -> None:
    await create_user(client, "alice", address="alice@example.com")
    answers = await asyncio.to_thread(raw_rcpts, mail_doors.smtp, RELAY_ATTEMPTS)
    for rcpt, answer in zip(RELAY_ATTEMPTS, answers):
        assert answer.startswith(b"550 5.1.1 "), (rcpt, answer)
    assert answers[-2].startswith(b"503 "), answers[-2]  # DATA: no recipient was accepted
    assert answers[-1].startswith(b"221")

    # Two "@": not an address at all, refused as bad syntax (553 5.1.3, RFC 5321 and
    # RFC 3463), which refuses the relay attempt just as firmly.
    attempts = [b"<bob@other.org@example.com>", b"<alice@example.com@other.org>"]
    answers = await asyncio.to_thread(raw_rcpts, mail_doors.smtp, attempts)
    assert answers[0].startswith(b"553 5.1.3 "), answers
    assert answers[1].startswith(b"553 5.1.3 "), answers
    assert answers[2].startswith(b"503 ")
    assert await queued_rows(runtime) == 0


async def test_disabled_user_refused(client: httpx.AsyncClient, mail_doors: Any) -> None:
    uid = await create_user(client, "alice", address="alice@example.com")
    response = await client.put(f"/users/{uid}", json={"disabled": True})
    assert response.status_code == 200, response.text
    replies = await converse(mail_doors.smtp, transaction("sender@example.org", ["alice@example.com"], make_message()))
    code, text = replies["rcpt"]["alice@example.com"]
    assert code == 550 and text.startswith(b"5.2.1 "), replies
    assert "data" not in replies
    _, listed = await messages(client, uid)
    assert listed == []


# --- quota, size and recipient limits -----------------------------------------------


async def test_quota(client: httpx.AsyncClient, mail_doors: Any) -> None:
    uid = await create_user(client, "tiny", address="tiny@example.com", quota=1000)
    await create_user(client, "alice", address="alice@example.com")
    sent = make_message(body=("x" * 78 + "\r\n") * 6)
    replies = await converse(
        mail_doors.smtp, transaction("sender@example.org", ["tiny@example.com", "alice@example.com"], sent, ("SIZE=5000",))
    )
    code, text = replies["rcpt"]["tiny@example.com"]
    assert code == 452 and text.startswith(b"4.2.2 "), replies
    assert replies["rcpt"]["alice@example.com"][0] == 250
    assert replies["data"][0] == 250
    _, listed = await messages(client, uid)
    assert listed == []

    # Without SIZE the recipient is accepted; the message itself is over the quota.
    sent = make_message(body=("y" * 78 + "\r\n") * 25)
    replies = await converse(mail_doors.smtp, transaction("sender@example.org", ["tiny@example.com"], sent))
    assert replies["rcpt"]["tiny@example.com"][0] == 250
    code, text = replies["data"]
    assert code == 552 and text.startswith(b"5.2.2 "), replies
    assert replies["noop"][0] == 250  # the session goes on
    _, listed = await messages(client, uid)
    assert listed == []
    user = (await client.get(f"/users/{uid}")).json()
    assert user["limits"]["quota"]["used"] == 0


async def test_recipient_and_size_limits(client: httpx.AsyncClient, small_door: int) -> None:
    ids = [await create_user(client, name, address=f"{name}@example.com") for name in ("alice", "bob", "carol")]
    rcpts = ["alice@example.com", "bob@example.com", "carol@example.com"]
    replies = await converse(small_door, transaction("sender@example.org", rcpts, make_message(subject="Limited")))
    assert replies["rcpt"]["alice@example.com"][0] == 250
    assert replies["rcpt"]["bob@example.com"][0] == 250
    code, text = replies["rcpt"]["carol@example.com"]
    assert code == 452 and text.startswith(b"4.5.3 "), replies
    assert replies["data"][0] == 250
    counts = [len((await messages(client, user_id))[1]) for user_id in ids]
    assert counts == [1, 1, 0]

    # SIZE: advertised, checked at MAIL when declared, and enforced on the data.
    uid = ids[0]
    limit = 16384 - HEADER_ROOM

    def script(smtp: smtplib.SMTP) -> dict[str, Any]:
        out: dict[str, Any] = {"size": smtp.esmtp_features.get("size")}
        out["declared"] = smtp.mail("sender@example.org", [f"SIZE={limit + 1}"])
        smtp.rset()
        out["mail"] = smtp.mail("sender@example.org", [f"SIZE={limit}"])
        out["rcpt"] = smtp.rcpt("alice@example.com")
        out["data"] = smtp.data(make_message(body="z" * 70 + "\r\n" + ("z" * 70 + "\r\n") * (limit // 72)))
        out["noop"] = smtp.noop()
        return out

    out = await converse(small_door, script)
    assert out["size"] == str(limit)
    assert out["declared"][0] == 552
    assert out["mail"][0] == 250 and out["rcpt"][0] == 250
    assert out["data"][0] == 552, out
    assert out["noop"][0] == 250
    _, listed = await messages(client, uid)
    assert len(listed) == 1  # only the message of the first part


async def test_extensions_advertised(mail_doors: Any, runtime: Runtime) -> None:
    features = await converse(mail_doors.smtp, lambda smtp: dict(smtp.esmtp_features))
    assert features["size"] == str(runtime.settings.max_message_size - HEADER_ROOM)
    for extension in ("size", "8bitmime", "smtputf8", "pipelining", "starttls"):
        assert extension in features, features
    # The MX door takes no logins: no (empty) AUTH line.
    assert "auth" not in features, features


async def test_pipelined_transaction(client: httpx.AsyncClient, mail_doors: Any) -> None:
    uid = await create_user(client, "alice", address="alice@example.com")
    sent = make_message(subject="Pipelined")

    def pipelined() -> list[bytes]:
        with socket.create_connection((HOST, mail_doors.smtp), timeout=15) as sock:
            reader = sock.makefile("rb")
            assert reader.readline().startswith(b"220")
            sock.sendall(b"EHLO client.example.org\r\n")
            while reader.readline()[3:4] == b"-":
                pass
            # RFC 2920: MAIL, RCPT and DATA in one packet.
            sock.sendall(b"MAIL FROM:<sender@example.org>\r\nRCPT TO:<nobody@example.com>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n")
            replies = [reader.readline() for _ in range(4)]
            sock.sendall(sent + b".\r\nQUIT\r\n")
            replies += [reader.readline(), reader.readline()]
            return replies

    replies = await asyncio.to_thread(pipelined)
    assert [r[:3] for r in replies] == [b"250", b"550", b"250", b"354", b"250", b"221"], replies
    _, listed = await messages(client, uid)
    assert [m["subject"] for m in listed] == ["Pipelined"]


# --- 8-bit and international mail ---------------------------------------------------


async def test_smtputf8_to_an_international_address(client: httpx.AsyncClient, mail_doors: Any) -> None:
    uid = await create_user(client, "jorg", address="jörg@bücher.example")
    sent = "From: Zoë <zoë@example.org>\r\nTo: jörg@bücher.example\r\nSubject: Grüße aus Köln\r\n\r\nHallo Jörg, 你好\r\n".encode()
    replies = await converse(mail_doors.smtp, transaction("zoë@example.org", ["jörg@bücher.example"], sent, ("SMTPUTF8", "BODY=8BITMIME")))
    assert replies["mail"][0] == 250
    assert replies["rcpt"]["jörg@bücher.example"][0] == 250
    assert replies["data"][0] == 250
    folder, listed = await messages(client, uid)
    assert [m["subject"] for m in listed] == ["Grüße aus Köln"]
    stored = await stored_source(client, uid, folder, listed[0]["id"])
    fields = dict(split_prefix(stored, sent))
    assert fields["Return-Path"] == "<zoë@example.org>"
    assert fields["Delivered-To"] == "jörg@bücher.example"

    # The A-label form of the domain names the same mailbox.
    again = make_message(subject="A-label")
    replies = await converse(mail_doors.smtp, transaction("sender@example.org", ["jörg@xn--bcher-kva.example"], again, ("SMTPUTF8",)))
    assert replies["rcpt"]["jörg@xn--bcher-kva.example"][0] == 250
    assert replies["data"][0] == 250
    _, listed = await messages(client, uid)
    assert sorted(m["subject"] for m in listed) == ["A-label", "Grüße aus Köln"]

    # An 8-bit latin-1 body with BODY=8BITMIME, stored as sent.
    uid = await create_user(client, "alice", address="alice@example.com")
    sent = b"From: sender@example.org\r\nTo: alice@example.com\r\nSubject: latin-1\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGr\xfc\xdfe \xe0 vous\r\n"
    replies = await converse(mail_doors.smtp, transaction("sender@example.org", ["alice@example.com"], sent, ("BODY=8BITMIME",)))
    assert replies["data"][0] == 250
    folder, listed = await messages(client, uid)
    stored = await stored_source(client, uid, folder, listed[0]["id"])
    split_prefix(stored, sent)


# --- SPF, DKIM, DMARC -------------------------------------------------------------


def publish_sender_domain(resolver: StaticResolver, domain: str = "example.org") -> Any:
    key = generate_key(domain, selector="sel1")
    resolver.set("TXT", domain, ["v=spf1 ip4:127.0.0.1 -all"])
    resolver.set("TXT", dns_record_name(key), [dns_record_value(key)])
    resolver.set("TXT", f"_dmarc.{domain}", ["v=DMARC1; p=reject"])
    return key


async def test_spf_dkim_dmarc_pass(client: httpx.AsyncClient, resolver: StaticResolver, mail_doors: Any) -> None:
    uid = await create_user(client, "alice", address="alice@example.com")
    key = publish_sender_domain(resolver)
    message = make_message(subject="Signed")
    sent = sign(message, key) + message
    replies = await converse(mail_doors.smtp, transaction("sender@example.org", ["alice@example.com"], sent))
    assert replies["data"][0] == 250
    folder, listed = await messages(client, uid)
    stored = await stored_source(client, uid, folder, listed[0]["id"])
    results = dict(split_prefix(stored, sent))["Authentication-Results"]
    assert results.startswith("mx.example.com;")
    assert "spf=pass smtp.mailfrom=sender@example.org" in results
    assert "dkim=pass header.d=example.org header.s=sel1" in results
    assert "dmarc=pass (p=reject) header.from=example.org" in results

    # The same domain, from an address its SPF does not list and unsigned: fail.
    resolver.set("TXT", "example.org", ["v=spf1 ip4:192.0.2.1 -all"])
    replies = await converse(mail_doors.smtp, transaction("sender@example.org", ["alice@example.com"], make_message(subject="Unsigned")))
    assert replies["data"][0] == 250
    _, listed = await messages(client, uid)
    stored = await stored_source(client, uid, folder, listed[0]["id"])  # newest first
    results = unfolded_header(stored, "Authentication-Results")[0]
    assert "spf=fail" in results and "dkim=none" in results and "dmarc=fail (p=reject)" in results


async def test_forged_from_fails_dmarc_but_is_stored(client: httpx.AsyncClient, resolver: StaticResolver, mail_doors: Any) -> None:
    uid = await create_user(client, "alice", address="alice@example.com")
    publish_sender_domain(resolver)
    resolver.set("TXT", "_dmarc.bank.example", ["v=DMARC1; p=reject"])
    sent = make_message(subject="Urgent wire transfer", From="The CEO <ceo@bank.example>")
    replies = await converse(mail_doors.smtp, transaction("sender@example.org", ["alice@example.com"], sent))
    assert replies["data"][0] == 250  # acting on it is the alias code's job
    folder, listed = await messages(client, uid)
    stored = await stored_source(client, uid, folder, listed[0]["id"])
    results = dict(split_prefix(stored, sent))["Authentication-Results"]
    assert "spf=pass" in results
    assert "dkim=none" in results
    assert "dmarc=fail (p=reject) header.from=bank.example" in results
    events = (await client.get(f"/users/{uid}/mailboxes/{folder}/messages/{listed[0]['id']}/events")).json()["events"]
    dmarc = events[0]["authentication"]["dmarc"]
    assert dmarc["result"] == "fail" and dmarc["policy"] == "reject" and dmarc["domain"] == "bank.example"


FORGED = [
    b"Authentication-Results: mx.example.com; spf=pass smtp.mailfrom=ceo@bank.example\r\n",
    b"authentication-results: MX.EXAMPLE.COM ; dkim=pass header.d=bank.example\r\n",
    # Folded before the authserv-id (RFC 5322 folding white space).
    b"Authentication-Results:\r\n\tmx.example.com; dmarc=pass header.from=bank.example\r\n",
    # With a version (RFC 8601 section 2.2: authserv-id [ CFWS authres-version ]).
    b"Authentication-Results: mx.example.com 1; spf=pass smtp.mailfrom=ceo@bank.example\r\n",
    # With a comment before the authserv-id.
    b"Authentication-Results: (checked) mx.example.com; spf=pass\r\n",
    # The authserv-id is a value: it may be a quoted-string.
    b'Authentication-Results: "mx.example.com"; spf=pass\r\n',
    b"aUtHeNtIcAtIoN-rEsUlTs: mx.example.com; spf=pass\r\n",
]


async def test_forged_authentication_results_removed(client: httpx.AsyncClient, mail_doors: Any) -> None:
    uid = await create_user(client, "alice", address="alice@example.com")
    foreign = b"Authentication-Results: relay.example.net;\r\n\tspf=pass smtp.mailfrom=sender@example.org\r\n"
    message = make_message(subject="Trust me")
    sent = FORGED[0] + foreign + b"".join(FORGED[1:]) + message
    replies = await converse(mail_doors.smtp, transaction("sender@example.org", ["alice@example.com"], sent))
    assert replies["data"][0] == 250
    folder, listed = await messages(client, uid)
    stored = await stored_source(client, uid, folder, listed[0]["id"])
    # Exactly what was sent, minus every forged field: the other server's result stays.
    fields = split_prefix(stored, foreign + message)
    assert [name for name, _ in fields] == PREFIX_FIELDS
    results = unfolded_header(stored, "Authentication-Results")
    assert len(results) == 2, results
    assert results[0].startswith("mx.example.com;") and "spf=none" in results[0]  # postern's own verdict
    assert results[1] == "relay.example.net; spf=pass smtp.mailfrom=sender@example.org"


# --- swaks --------------------------------------------------------------------------


async def test_swaks(client: httpx.AsyncClient, mail_doors: Any) -> None:
    swaks = shutil.which("swaks")
    if swaks is None:
        if os.environ.get("CI"):
            pytest.fail("swaks is not installed (CI installs it with apt)")
        pytest.skip("swaks is not installed")
    uid = await create_user(client, "alice", address="alice@example.com")
    process = await asyncio.create_subprocess_exec(
        swaks,
        "--server", f"{HOST}:{mail_doors.smtp}",
        "--helo", "swaks.example.org",
        "--from", "sender@example.org",
        "--to", "alice@example.com",
        "--header", "Subject: Sent with swaks",
        "--body", "Hello from swaks.",
        "--timeout", "15",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, output.decode(errors="replace")
    assert b"<-  250 2.0.0 Ok: stored as" in output
    folder, listed = await messages(client, uid)
    assert [m["subject"] for m in listed] == ["Sent with swaks"]
    stored = await stored_source(client, uid, folder, listed[0]["id"])
    assert b"Hello from swaks." in stored
    assert b"Received: from swaks.example.org ([127.0.0.1])" in stored

    # swaks to an unknown address: refused at RCPT.
    process = await asyncio.create_subprocess_exec(
        swaks, "--server", f"{HOST}:{mail_doors.smtp}", "--from", "sender@example.org", "--to", "nobody@example.com",
        "--timeout", "15", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode != 0
    assert b"<** 550 5.1.1" in output
