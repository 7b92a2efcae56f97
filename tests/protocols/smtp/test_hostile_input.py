"""Hostile and malformed input on the MX door, over raw sockets: nothing crashes, what
is stored is stored byte for byte, and what must be refused is refused with a proper
code while the session goes on."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import socket
from typing import Any

import httpx
import pytest

from tests.helpers import create_user, folder_id

HOST = "127.0.0.1"
PREFIX_FIELDS = ["Return-Path", "Delivered-To", "Received", "Authentication-Results"]


class Closed(Exception):
    pass


class Wire:
    """A raw SMTP client (use from a thread)."""

    def __init__(self, port: int, timeout: float = 15):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.reader = self.sock.makefile("rb")

    def reply(self) -> list[bytes]:
        lines = [self.reader.readline()]
        if not lines[0]:
            raise Closed()
        while lines[-1][3:4] == b"-":
            lines.append(self.reader.readline())
        assert all(line.endswith(b"\r\n") for line in lines), lines
        assert all(re.match(rb"^[2-5][0-9][0-9][ -]", line) for line in lines), lines
        return [line[:-2] for line in lines]

    def command(self, line: bytes) -> bytes:
        """The last line of the reply to one command line."""
        self.sock.sendall(line + b"\r\n")
        return self.reply()[-1]

    def hello(self, name: bytes = b"client.example.org") -> None:
        assert self.reply()[-1].startswith(b"220 ")
        assert self.command(b"EHLO " + name).startswith(b"250 ")

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def stuff(body: bytes) -> bytes:
    """Dot-stuffing as the server undoes it: after every CRLF (and at the start)."""
    return re.sub(rb"(^|\r\n)\.", rb"\1..", body)


def transaction(port: int, body: bytes, rcpt: bytes = b"alice@example.com", helo: bytes = b"client.example.org") -> dict[str, Any]:
    """One message sent exactly as given (dot-stuffed), then NOOP and a second, clean
    transaction in the same session."""
    assert body.endswith(b"\r\n")
    wire = Wire(port)
    try:
        wire.hello(helo)
        out: dict[str, Any] = {}
        out["mail"] = wire.command(b"MAIL FROM:<sender@example.org>")
        out["rcpt"] = wire.command(b"RCPT TO:<" + rcpt + b">")
        out["data"] = wire.command(b"DATA")
        wire.sock.sendall(stuff(body) + b".\r\n")
        out["end"] = wire.reply()[-1]
        out["noop"] = wire.command(b"NOOP")
        out["rset"] = wire.command(b"RSET")
        out["quit"] = wire.command(b"QUIT")
        return out
    finally:
        wire.close()


async def inbox(client: httpx.AsyncClient, user_id: str) -> tuple[str, list[dict[str, Any]]]:
    folder = await folder_id(client, user_id)
    response = await client.get(f"/users/{user_id}/mailboxes/{folder}/messages")
    assert response.status_code == 200, response.text
    return folder, response.json()["results"]


async def assert_stored_exactly(client: httpx.AsyncClient, user_id: str, body: bytes) -> dict[str, Any]:
    folder, listed = await inbox(client, user_id)
    assert len(listed) == 1, listed
    base = f"/users/{user_id}/mailboxes/{folder}/messages/{listed[0]['id']}"
    stored = (await client.get(base + "/message.eml")).content
    assert stored.endswith(body), "not stored byte for byte"
    prefix = stored[: len(stored) - len(body)]
    names = [line.split(b":", 1)[0].decode() for line in prefix.split(b"\r\n") if line and line[:1] not in (b" ", b"\t")]
    assert names == PREFIX_FIELDS, prefix
    # The parsed views of the message work too.
    detail = await client.get(base)
    assert detail.status_code == 200, detail.text
    return detail.json()


def assert_no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [(r.name, r.getMessage()) for r in bad]
    assert "Traceback" not in caplog.text


def still_answers(port: int) -> bytes:
    wire = Wire(port)
    try:
        wire.hello()
        return wire.command(b"NOOP")
    finally:
        wire.close()


@pytest.fixture
async def alice(client: httpx.AsyncClient, mail_doors: Any) -> str:
    return await create_user(client, "alice", address="alice@example.com")


# --- SMTP smuggling -----------------------------------------------------------------

SMUGGLED = b"MAIL FROM:<ceo@example.com>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nowned\r\n"


LONE_DOTS = [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r", b"\r.\n", b"\n.\r", b"\r.\r", b"\r\n.\r\r\n"]


async def test_smuggling_refused(client: httpx.AsyncClient, alice: str, mail_doors: Any, caplog: pytest.LogCaptureFixture) -> None:
    def talk() -> list[dict[str, bytes]]:
        wire = Wire(mail_doors.smtp)
        try:
            wire.hello()
            results = []
            for lone_dot in LONE_DOTS:
                body = b"From: sender@example.org\r\nSubject: innocent\r\n\r\nfirst part" + lone_dot + SMUGGLED
                out = {"mail": wire.command(b"MAIL FROM:<sender@example.org>"), "rcpt": wire.command(b"RCPT TO:<alice@example.com>")}
                out["data"] = wire.command(b"DATA")
                # Sent as is: no dot-stuffing, a smuggler would not stuff its dot.
                wire.sock.sendall(body + b".\r\n")
                out["end"] = wire.reply()[-1]
                out["noop"] = wire.command(b"NOOP")  # the session goes on
                results.append(out)
            # A clean message now goes through in the same session.
            out = {"mail": wire.command(b"MAIL FROM:<sender@example.org>"), "rcpt": wire.command(b"RCPT TO:<alice@example.com>")}
            out["data"] = wire.command(b"DATA")
            wire.sock.sendall(b"Subject: clean\r\n\r\nclean\r\n.\r\n")
            out["end"] = wire.reply()[-1]
            results.append(out)
            return results
        finally:
            wire.close()

    results = await asyncio.to_thread(talk)
    for lone_dot, out in zip(LONE_DOTS, results):
        assert out["mail"].startswith(b"250") and out["rcpt"].startswith(b"250"), (lone_dot, out)
        assert out["data"].startswith(b"354")
        assert out["end"].startswith(b"554 5.5.2 "), (lone_dot, out)
        assert out["noop"].startswith(b"250")
    assert results[-1]["end"].startswith(b"250 2.0.0 "), results[-1]
    _, listed = await inbox(client, alice)
    assert [m["subject"] for m in listed] == ["clean"]
    assert_no_tracebacks(caplog)


# --- stored byte for byte ------------------------------------------------------------

LONG_HEADER = b"X-Long: " + b"\r\n\t".join(b"word%04d " % i * 8 for i in range(140)) + b"\r\n"

STORED_AS_IS = {
    "bare-lf-lines": b"From: sender@example.org\r\nSubject: bare LF\nX-Bare: yes\n\nline one\nline two\r\nmixed\r\n\nlast\n.not a dot line\r\n",
    "bare-cr": b"Subject: bare CR\r\n\r\none\rtwo\r\n\r\rthree\r\n",
    "nul-bytes": b"Subject: nul\x00inside\r\nX-Nul: \x00\x00\r\n\r\nbody\x00with\x00nuls\r\n\x00\r\n",
    "utf8-headers": "From: Jörg Müller <jörg@example.org>\r\nSubject: Grüße, 你好\r\nX-Emoji: 😀\r\n\r\nbody\r\n".encode(),
    "latin1-headers": b"From: J\xf6rg <joerg@example.org>\r\nSubject: caf\xe9 cr\xe8me\r\n\r\nsch\xf6n\r\n",
    "invalid-utf8": b"Subject: \xc3\x28 \xff\xfe \xed\xa0\x80\r\n\r\n\xf0\x28\x8c\x28\r\n",
    "long-folded-header": b"Subject: long header\r\n" + LONG_HEADER + b"\r\nbody\r\n",
    "longest-legal-line": b"Subject: 998\r\n\r\n" + b"x" * 998 + b"\r\n",
    "no-date-no-message-id": b"From: sender@example.org\r\nTo: alice@example.com\r\nSubject: bare minimum\r\n\r\nhi\r\n",
    "no-header-at-all": b"\r\njust a body\r\n",
    "header-without-colon": b"This is not a header\r\nSubject: after junk\r\n\r\nbody\r\n",
    "bad-boundary": (
        b"Subject: bad boundary\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"never-used\"\r\n\r\n"
        b"--other\r\nContent-Type: text/plain\r\n\r\npart\r\n--other--\r\n"
    ),
    "unterminated-multipart": (
        b"Subject: unterminated\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n"
        b"--b1\r\nContent-Type: multipart/alternative; boundary=b2\r\n\r\n--b2\r\nContent-Type: text/plain\r\n\r\ntext\r\n"
    ),
    "broken-base64": (
        b"Subject: broken base64\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=xyz\r\n\r\n"
        b"--xyz\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not*base64===\r\nSGVsbG8\r\n"
        b"--xyz\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=====@@@@\r\n--xyz--\r\n"
    ),
    "bad-charset-and-encoded-words": (
        b"Subject: =?x-unknown?B?SGVsbG8=?= =?utf-8?Q?broken=ZZ?= =?utf-8?B?!!!?=\r\nFrom: =?utf-8?B?invalid?= <a@example.org>\r\n"
        b"Content-Type: text/plain; charset=no-such-charset\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=ZZ=\r\n=C3\r\n"
    ),
    "duplicate-and-weird-headers": (
        b"Subject: one\r\nSubject: two\r\nFrom: a@example.org, b@example.org\r\nDate: not a date\r\n"
        b"Message-ID: <<<>>>\r\nReferences: \x01\x02\r\nTo: undisclosed-recipients:;\r\n\r\nbody\r\n"
    ),
    "dot-lines": b"Subject: dots\r\n\r\n.\r\n..\r\n...\r\n.x\r\n. space\r\nend\r\n",
}


async def test_stored_byte_for_byte(client: httpx.AsyncClient, alice: str, mail_doors: Any, caplog: pytest.LogCaptureFixture) -> None:
    names = sorted(STORED_AS_IS)

    def talk() -> list[bytes]:
        wire = Wire(mail_doors.smtp)
        try:
            wire.hello()
            ends = []
            for name in names:
                assert wire.command(b"MAIL FROM:<sender@example.org>").startswith(b"250")
                assert wire.command(b"RCPT TO:<alice@example.com>").startswith(b"250")
                assert wire.command(b"DATA").startswith(b"354")
                wire.sock.sendall(stuff(STORED_AS_IS[name]) + b".\r\n")
                ends.append(wire.reply()[-1])
            assert wire.command(b"QUIT").startswith(b"221")
            return ends
        finally:
            wire.close()

    ends = await asyncio.to_thread(talk)
    for name, end in zip(names, ends):
        assert end.startswith(b"250 2.0.0 "), (name, end)
    folder = await folder_id(client, alice)
    for uid, name in enumerate(names, start=1):  # UIDs in the order sent
        body = STORED_AS_IS[name]
        base = f"/users/{alice}/mailboxes/{folder}/messages/{uid}"
        stored = (await client.get(base + "/message.eml")).content
        assert stored.endswith(body), f"{name}: not stored byte for byte"
        prefix = stored[: len(stored) - len(body)]
        fields = [line.split(b":", 1)[0].decode() for line in prefix.split(b"\r\n") if line and line[:1] not in (b" ", b"\t")]
        assert fields == PREFIX_FIELDS, (name, prefix)
        # The parsed views of the message work too.
        detail = await client.get(base)
        assert detail.status_code == 200, (name, detail.text)
        if name == "utf8-headers":
            assert detail.json()["subject"] == "Grüße, 你好"
    listed = (await client.get(f"/users/{alice}/mailboxes/{folder}/messages", params={"limit": 100})).json()["results"]
    assert len(listed) == len(names)
    assert_no_tracebacks(caplog)


async def test_very_long_line_refused(client: httpx.AsyncClient, alice: str, mail_doors: Any, caplog: pytest.LogCaptureFixture) -> None:
    # RFC 5321 4.5.3.1.6: a text line is at most 1000 octets with its CRLF; aiosmtpd
    # answers "500 Line too long" (RFC 5321 4.5.3.1.10) once the data is complete.
    body = b"Subject: long line\r\n\r\n" + b"y" * 5000 + b"\r\nafter\r\n"
    out = await asyncio.to_thread(transaction, mail_doors.smtp, body)
    assert out["data"].startswith(b"354")
    assert out["end"].startswith(b"500 "), out
    assert b"too long" in out["end"].lower()
    assert out["noop"].startswith(b"250") and out["quit"].startswith(b"221")
    _, listed = await inbox(client, alice)
    assert listed == []
    assert_no_tracebacks(caplog)


# --- garbage and out-of-order commands ------------------------------------------------


async def test_undecodable_bytes_in_addresses_and_helo(client: httpx.AsyncClient, alice: str, mail_doors: Any, caplog: pytest.LogCaptureFixture) -> None:
    body = b"Subject: undecodable\r\n\r\nbody\r\n"

    def talk() -> list[bytes]:
        wire = Wire(mail_doors.smtp)
        try:
            wire.hello(b"h\xff\xfe.example.org")
            replies = [
                wire.command(b"MAIL FROM:<\xbb\xff@example.org>"),
                wire.command(b"MAIL FROM:<sender@ex\xffample.org>"),
                wire.command(b"MAIL FROM:<sender@example.org> SMTPUTF8"),
                wire.command(b"RCPT TO:<\xff\xfe@example.com>"),
                wire.command(b"RCPT TO:<alice@exa\xc3mple.com>"),
                wire.command(b"RCPT TO:<alice@example.com>"),
                wire.command(b"DATA"),
            ]
            wire.sock.sendall(body + b".\r\n")
            replies.append(wire.reply()[-1])
            replies.append(wire.command(b"NOOP"))
            return replies
        finally:
            wire.close()

    replies = await asyncio.to_thread(talk)
    assert replies[0].startswith(b"553 5.1.7 "), replies  # not a 500 with a traceback
    assert replies[1].startswith(b"553 5.1.7 "), replies
    assert replies[2].startswith(b"250 ")
    assert replies[3].startswith(b"550 5.1.1 "), replies
    assert replies[4].startswith(b"550 5.1.1 "), replies
    assert replies[5].startswith(b"250 ")
    assert replies[6].startswith(b"354")
    assert replies[7].startswith(b"250 2.0.0 "), replies
    assert replies[8].startswith(b"250")
    await assert_stored_exactly(client, alice, body)
    folder, listed = await inbox(client, alice)
    stored = (await client.get(f"/users/{alice}/mailboxes/{folder}/messages/{listed[0]['id']}/message.eml")).content
    assert b"Received: from h??.example.org ([127.0.0.1])" in stored

    # Control characters in HELO cannot inject a header line.
    out = await asyncio.to_thread(transaction, mail_doors.smtp, body, helo=b"evil\rX-Injected: yes\x00\x7f")
    assert out["end"].startswith(b"250")
    _, listed = await inbox(client, alice)
    stored = (await client.get(f"/users/{alice}/mailboxes/{folder}/messages/{listed[0]['id']}/message.eml")).content
    prefix = stored[: len(stored) - len(body)]
    assert b"\rX-Injected" not in prefix and b"\x00" not in prefix
    assert b"Received: from evil?X-Injected: yes?? ([127.0.0.1])" in prefix
    assert_no_tracebacks(caplog)


async def test_garbage_and_out_of_order_commands(alice: str, mail_doors: Any, caplog: pytest.LogCaptureFixture) -> None:
    def talk() -> list[bytes]:
        wire = Wire(mail_doors.smtp)
        try:
            assert wire.reply()[-1].startswith(b"220")
            lines = [
                b"MAIL FROM:<sender@example.org>",  # before EHLO
                b"EHLO",  # no name
                b"EHLO client.example.org",
                b"RCPT TO:<alice@example.com>",  # before MAIL
                b"DATA",  # before RCPT
                b"MAIL FROM:<sender@example.org>",
                b"DATA",  # still no RCPT
                b"MAIL FROM:<sender@example.org>",  # nested MAIL
                b"RCPT TO:",  # no address
                b"RCPT TO:<alice@example.com> BOGUS=PARAM",
                b"RSET",
                b"MAIL FROM:not-an-address",
                b"RCPT TO:<" + b"a" * 600 + b"@example.com>",  # over 512 octets
                b"NOOP " + b"n" * 2000,  # over the command line limit
                b"MAIL FROM:<" + b"x" * 100_000 + b"@example.org>",  # far over it
                b"\x00\x01\x02",
                b"\xff\xfe\xfd binary",
                b"",
                b"VRFY alice@example.com",
                b"EXPN staff",
                b"HELP",
                b"RSET",
                b"NOOP",
                b"HELP DATA",
            ]
            return [wire.command(line) for line in lines]
        finally:
            wire.close()

    replies = await asyncio.to_thread(talk)
    codes = [r[:3] for r in replies]
    assert codes[0] == b"503"  # MAIL before EHLO
    assert codes[1] == b"501"
    assert codes[2] == b"250"
    assert codes[3] == b"503"  # RCPT before MAIL
    assert codes[4] == b"503"  # DATA before RCPT
    assert codes[5] == b"250"
    assert codes[6] == b"503"
    assert codes[7] == b"503"  # nested MAIL
    assert codes[8] == b"501"
    assert codes[9][:1] == b"5" and codes[9] in (b"501", b"555")  # unknown RCPT parameter
    assert codes[10] == b"250"
    assert codes[11][:2] == b"55" or codes[11] == b"501"  # 553 (RFC 5321) or 501
    assert codes[12] == b"500"  # command line too long
    assert codes[13] == b"500"
    assert codes[14] == b"500"
    assert codes[15] == b"500" and codes[16] == b"500" and codes[17] == b"500"
    assert codes[18] in (b"252", b"502")  # no address verification
    assert codes[19] == b"502"
    assert codes[20] == b"250"
    assert codes[21] == b"250" and codes[22] == b"250"
    assert codes[23] == b"250" and b"DATA" in replies[23]
    assert_no_tracebacks(caplog)


async def test_too_many_unknown_commands_end_the_session_politely(mail_doors: Any, caplog: pytest.LogCaptureFixture) -> None:
    def talk() -> tuple[list[bytes], bytes]:
        wire = Wire(mail_doors.smtp)
        try:
            wire.hello()
            replies = []
            try:
                for n in range(20):
                    replies.append(wire.command(b"XYZZY%d" % n))
            except (Closed, OSError):
                pass
            return replies, wire.reader.read()
        finally:
            wire.close()

    replies, rest = await asyncio.to_thread(talk)
    assert replies[0].startswith(b"500 ")
    assert replies[-1].startswith(b"502 5.5.1 "), replies
    assert rest == b""
    assert (await asyncio.to_thread(still_answers, mail_doors.smtp)).startswith(b"250")
    assert_no_tracebacks(caplog)


# --- junk and abrupt disconnects -----------------------------------------------------


async def test_binary_junk_and_abrupt_disconnects(client: httpx.AsyncClient, alice: str, mail_doors: Any, caplog: pytest.LogCaptureFixture) -> None:
    rng = random.Random(5321)

    def junk_then_close() -> None:
        with socket.create_connection((HOST, mail_doors.smtp), timeout=15) as sock:
            sock.recv(512)
            sock.sendall(bytes(rng.randrange(256) for _ in range(20_000)))

    def disconnect_mid_data(reset: bool) -> None:
        wire = Wire(mail_doors.smtp)
        wire.hello()
        assert wire.command(b"MAIL FROM:<sender@example.org>").startswith(b"250")
        assert wire.command(b"RCPT TO:<alice@example.com>").startswith(b"250")
        assert wire.command(b"DATA").startswith(b"354")
        wire.sock.sendall(b"Subject: cut off\r\n\r\nhalf a messa")
        if reset:  # RST instead of FIN
            wire.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        wire.close()

    def disconnect_mid_command() -> None:
        with socket.create_connection((HOST, mail_doors.smtp), timeout=15) as sock:
            sock.recv(512)
            sock.sendall(b"EHLO half")

    def disconnect_before_greeting() -> None:
        socket.create_connection((HOST, mail_doors.smtp), timeout=15).close()

    await asyncio.to_thread(junk_then_close)
    await asyncio.to_thread(disconnect_mid_data, False)
    await asyncio.to_thread(disconnect_mid_data, True)
    await asyncio.to_thread(disconnect_mid_command)
    await asyncio.to_thread(disconnect_before_greeting)
    # Let the server notice every close.
    await asyncio.sleep(0.2)
    assert (await asyncio.to_thread(still_answers, mail_doors.smtp)).startswith(b"250")
    _, listed = await inbox(client, alice)
    assert listed == []
    assert_no_tracebacks(caplog)


async def test_random_lines_never_crash_the_server(alice: str, mail_doors: Any, caplog: pytest.LogCaptureFixture) -> None:
    rng = random.Random(20240601)
    alphabet = [b for b in range(256) if b not in (10, 13)]
    words = [b"MAIL FROM:", b"RCPT TO:", b"DATA", b"EHLO ", b"NOOP", b"RSET", b"<", b">", b"@", b" ", b"SIZE=", b"BODY="]
    lines = []
    for _ in range(1000):
        parts = []
        for _ in range(rng.randrange(1, 6)):
            if rng.random() < 0.3:
                parts.append(rng.choice(words))
            else:
                parts.append(bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 60))))
        line = b"".join(parts)
        if line.upper().startswith((b"DATA", b"QUIT", b"STARTTLS", b"AUTH")):
            line = b"X" + line  # commands that would change the state machine's mode
        lines.append(line)

    def talk() -> tuple[int, int]:
        answered = sessions = 0
        wire: Wire | None = None
        for line in lines:
            if wire is None:
                wire = Wire(mail_doors.smtp)
                sessions += 1
                assert wire.reply()[-1].startswith(b"220")
            reply = wire.command(line)
            answered += 1
            if reply.startswith((b"502 5.5.1", b"421")):  # too many unknown commands: goodbye
                assert wire.reader.read() == b""
                wire.close()
                wire = None
        if wire is not None:
            wire.close()
        return answered, sessions

    answered, sessions = await asyncio.to_thread(talk)
    assert answered >= 900 and sessions >= 1
    assert (await asyncio.to_thread(still_answers, mail_doors.smtp)).startswith(b"250")
    assert_no_tracebacks(caplog)
