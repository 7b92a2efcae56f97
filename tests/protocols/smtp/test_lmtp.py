"""The LMTP door (RFC 2033): LHLO, and one reply per accepted recipient after DATA."""

from __future__ import annotations

import asyncio
import smtplib
import socket
from typing import Any

import httpx

from tests.helpers import create_user, folder_id, make_message

HOST = "127.0.0.1"


class Wire:
    """A raw LMTP/SMTP client over a socket (use from a thread)."""

    def __init__(self, port: int):
        self.sock = socket.create_connection((HOST, port), timeout=15)
        self.reader = self.sock.makefile("rb")

    def reply(self) -> list[bytes]:
        lines = [self.reader.readline()]
        while lines[-1][3:4] == b"-":
            lines.append(self.reader.readline())
        assert all(line.endswith(b"\r\n") for line in lines), lines
        return [line[:-2] for line in lines]

    def command(self, line: bytes) -> list[bytes]:
        self.sock.sendall(line + b"\r\n")
        return self.reply()

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


async def inbox(client: httpx.AsyncClient, user_id: str) -> tuple[str, list[dict[str, Any]]]:
    folder = await folder_id(client, user_id)
    response = await client.get(f"/users/{user_id}/mailboxes/{folder}/messages")
    assert response.status_code == 200, response.text
    return folder, response.json()["results"]


async def test_lhlo_and_one_reply_per_recipient_in_rcpt_order(client: httpx.AsyncClient, mail_doors: Any) -> None:
    alice = await create_user(client, "alice", address="alice@example.com")
    bob = await create_user(client, "bob", address="bob@example.com", quota=500)
    carol = await create_user(client, "carol", address="carol@example.com")
    sent = make_message(subject="LMTP", body=("l" * 70 + "\r\n") * 12)

    def talk() -> dict[str, Any]:
        wire = Wire(mail_doors.lmtp)
        try:
            out: dict[str, Any] = {"greeting": wire.reply()}
            out["lhlo"] = wire.command(b"LHLO client.example.org")
            out["mail"] = wire.command(b"MAIL FROM:<sender@example.org>")
            out["rcpt"] = [
                wire.command(b"RCPT TO:<alice@example.com>"),
                wire.command(b"RCPT TO:<nobody@example.com>"),
                wire.command(b"RCPT TO:<bob@example.com>"),
                wire.command(b"RCPT TO:<carol@example.com>"),
            ]
            out["data"] = wire.command(b"DATA")
            wire.sock.sendall(sent + b".\r\n")
            out["replies"] = [wire.reply() for _ in range(3)]
            out["noop"] = wire.command(b"NOOP")
            out["quit"] = wire.command(b"QUIT")
            return out
        finally:
            wire.close()

    out = await asyncio.to_thread(talk)
    assert out["greeting"][0].startswith(b"220 ")
    assert out["lhlo"][0].startswith(b"250-")
    assert b"250-PIPELINING" in out["lhlo"]  # RFC 2033 section 5
    assert all(not line.startswith(b"250-AUTH") for line in out["lhlo"])
    assert out["mail"][0].startswith(b"250 ")
    assert [r[0][:9] for r in out["rcpt"]] == [b"250 2.1.5", b"550 5.1.1", b"250 2.1.5", b"250 2.1.5"]
    assert out["data"][0].startswith(b"354 ")
    # Exactly one line for each accepted recipient, in RCPT order: alice, bob, carol.
    assert [len(r) for r in out["replies"]] == [1, 1, 1]
    first, second, third = (r[0] for r in out["replies"])
    assert first.startswith(b"250 2.0.0 ")
    assert second.startswith(b"552 5.2.2 ")
    assert third.startswith(b"250 2.0.0 ")
    assert out["noop"][0].startswith(b"250")
    assert out["quit"][0].startswith(b"221")

    _, listed = await inbox(client, alice)
    assert [m["subject"] for m in listed] == ["LMTP"]
    _, listed = await inbox(client, bob)
    assert listed == []
    _, listed = await inbox(client, carol)
    assert [m["subject"] for m in listed] == ["LMTP"]


async def test_with_smtplib_lmtp(client: httpx.AsyncClient, mail_doors: Any) -> None:
    alice = await create_user(client, "alice", address="alice@example.com")
    bob = await create_user(client, "bob", address="bob@example.com")
    sent = make_message(subject="Via smtplib.LMTP")

    def send() -> tuple[Any, Any, list[Any]]:
        with smtplib.LMTP(HOST, mail_doors.lmtp, local_hostname="client.example.org", timeout=15) as lmtp:
            lmtp.ehlo_or_helo_if_needed()
            features = dict(lmtp.esmtp_features)
            assert lmtp.mail("sender@example.org")[0] == 250
            rcpts = [lmtp.rcpt("alice@example.com"), lmtp.rcpt("bob@example.com")]
            # smtplib reads one reply after DATA; LMTP sends one per recipient.
            replies = [lmtp.data(sent), lmtp.getreply()]
            return features, rcpts, replies

    features, rcpts, replies = await asyncio.to_thread(send)
    assert "pipelining" in features and "8bitmime" in features
    assert [r[0] for r in rcpts] == [250, 250]
    assert [r[0] for r in replies] == [250, 250]
    assert all(r[1].startswith(b"2.0.0 ") for r in replies)
    for user_id, address in ((alice, "alice@example.com"), (bob, "bob@example.com")):
        folder, listed = await inbox(client, user_id)
        assert [m["subject"] for m in listed] == ["Via smtplib.LMTP"]
        response = await client.get(f"/users/{user_id}/mailboxes/{folder}/messages/{listed[0]['id']}/message.eml")
        stored = response.content
        assert stored.endswith(sent)
        prefix = stored[: len(stored) - len(sent)]
        assert prefix.startswith(b"Return-Path: <sender@example.org>\r\nDelivered-To: " + address.encode() + b"\r\nReceived: ")
        assert b" with LMTP id " in prefix
        # No SPF/DKIM/DMARC on LMTP: the MTA in front of it did that.
        assert b"Authentication-Results" not in prefix
        response = await client.get(f"/users/{user_id}/mailboxes/{folder}/messages/{listed[0]['id']}/events")
        assert response.status_code == 200, response.text
        (event,) = [e for e in response.json()["events"] if e["action"] == "STORE"]
        assert event["source"] == "LMTP"
        assert event["transtype"] == "LMTP"
        assert event["origin"] == "127.0.0.1"
        assert event["originhost"] == "client.example.org"
        assert event["from"] == "sender@example.org"
        assert event["to"] == [address]
        assert "authentication" not in event

    # smtplib's sendmail reads a single reply after DATA: fine with one recipient.
    def send_one() -> dict[str, Any]:
        with smtplib.LMTP(HOST, mail_doors.lmtp, local_hostname="client.example.org", timeout=15) as lmtp:
            return lmtp.sendmail("sender@example.org", ["alice@example.com"], make_message(subject="sendmail"))

    assert await asyncio.to_thread(send_one) == {}
    _, listed = await inbox(client, alice)
    assert sorted(m["subject"] for m in listed) == ["Via smtplib.LMTP", "sendmail"]


async def test_ehlo_helo_and_unknown_recipients_refused(client: httpx.AsyncClient, mail_doors: Any) -> None:
    await create_user(client, "alice", address="alice@example.com")

    def talk() -> list[list[bytes]]:
        wire = Wire(mail_doors.lmtp)
        try:
            wire.reply()
            answers = [wire.command(b"EHLO client.example.org"), wire.command(b"HELO client.example.org")]
            answers.append(wire.command(b"MAIL FROM:<sender@example.org>"))  # no LHLO yet
            answers.append(wire.command(b"LHLO client.example.org"))
            answers.append(wire.command(b"MAIL FROM:<sender@example.org>"))
            answers.append(wire.command(b"RCPT TO:<nobody@example.com>"))
            answers.append(wire.command(b"RCPT TO:<bob@other.org>"))
            answers.append(wire.command(b"RCPT TO:<alice%other.org@example.com>"))
            answers.append(wire.command(b"DATA"))
            return answers
        finally:
            wire.close()

    ehlo, helo, mail, lhlo, mail2, unknown, foreign, percent, data = await asyncio.to_thread(talk)
    assert ehlo[0].startswith(b"500 ")
    assert helo[0].startswith(b"500 ")
    assert mail[0].startswith(b"503 ")
    assert lhlo[-1].startswith(b"250 ")
    assert mail2[0].startswith(b"250 ")
    for refused in (unknown, foreign, percent):
        assert refused[0].startswith(b"550 5.1.1 "), refused
    assert data[0].startswith(b"503 ")  # no recipient


async def test_smuggling_refused_once_per_recipient(client: httpx.AsyncClient, mail_doors: Any) -> None:
    alice = await create_user(client, "alice", address="alice@example.com")
    bob = await create_user(client, "bob", address="bob@example.com")

    def talk() -> tuple[list[list[bytes]], list[bytes]]:
        wire = Wire(mail_doors.lmtp)
        try:
            wire.reply()
            wire.command(b"LHLO client.example.org")
            wire.command(b"MAIL FROM:<sender@example.org>")
            wire.command(b"RCPT TO:<alice@example.com>")
            wire.command(b"RCPT TO:<bob@example.com>")
            assert wire.command(b"DATA")[0].startswith(b"354")
            wire.sock.sendall(b"Subject: hi\r\n\r\nhello\r\n.\nMAIL FROM:<x@example.org>\r\n.\r\n")
            replies = [wire.reply(), wire.reply()]
            return replies, wire.command(b"NOOP")
        finally:
            wire.close()

    replies, noop = await asyncio.to_thread(talk)
    assert [r[0][:9] for r in replies] == [b"554 5.5.2", b"554 5.5.2"]
    assert noop[0].startswith(b"250")
    for user_id in (alice, bob):
        assert (await inbox(client, user_id))[1] == []


async def test_duplicate_recipient_gets_its_own_reply(client: httpx.AsyncClient, mail_doors: Any) -> None:
    """RFC 2033 section 4.2: one reply after DATA for every RCPT that got 250, so the
    same address given twice (in other cases) is answered twice, and stored once."""
    alice = await create_user(client, "alice", address="alice@example.com")
    bob = await create_user(client, "bob", address="bob@example.com")

    def talk() -> tuple[list[bytes], list[bytes], list[bytes]]:
        wire = Wire(mail_doors.lmtp)
        try:
            wire.reply()
            wire.command(b"LHLO client.example.org")
            wire.command(b"MAIL FROM:<sender@example.org>")
            rcpts = [
                wire.command(b"RCPT TO:<alice@example.com>")[0],
                wire.command(b"RCPT TO:<ALICE@Example.com>")[0],
                wire.command(b"RCPT TO:<bob@example.com>")[0],
            ]
            assert wire.command(b"DATA")[0].startswith(b"354")
            wire.sock.sendall(make_message(subject="twice") + b".\r\n")
            wire.sock.settimeout(5)  # a missing reply must not hang the test
            replies = [wire.reply()[0] for _ in range(3)]
            return rcpts, replies, wire.command(b"NOOP")
        finally:
            wire.close()

    rcpts, replies, noop = await asyncio.to_thread(talk)
    assert all(r.startswith(b"250 ") for r in rcpts), rcpts
    assert all(r.startswith(b"250 2.0.0 ") for r in replies), replies
    assert noop[0].startswith(b"250")
    for user_id in (alice, bob):
        assert [m["subject"] for m in (await inbox(client, user_id))[1]] == ["twice"]
