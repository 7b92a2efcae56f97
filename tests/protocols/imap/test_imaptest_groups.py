"""Regression tests for the imaptest compliance groups postern once failed, one (or a
few) per group, over a real socket: each names the imaptest group it stands for."""

from __future__ import annotations

import re

from tests.helpers import make_message

from .conftest import ImapDoor, RawClient, status_of


async def _binary_lines(client: RawClient, text: str) -> list[bytes]:
    """Send a command and collect its raw response bytes (literals may hold NUL)."""
    tag = client.next_tag()
    await client.send(f"{tag} {text}\r\n")
    out: list[bytes] = []
    while True:
        line = await client.reader.readline()
        m = re.search(rb"~?\{(\d+)\}\r\n$", line)
        if m:
            line += await client.reader.readexactly(int(m.group(1)))
            line += await client.reader.readline()
        out.append(line)
        if line.startswith(tag.encode() + b" "):
            return out


async def test_append_binary_literal8(imap: ImapDoor, alice: str) -> None:
    """append-binary: a literal8 APPEND's binary part is stored base64-encoded:
    BODY[1] carries no NUL, BINARY[1] gives back the bytes sent (bare LFs too)."""
    raw = (
        b"From: user@domain.org\r\nMime-Version: 1.0\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\n\x00-\xe4\n\r\n\n"
    )
    client = await imap.client()
    await client.send(b"a1 APPEND INBOX ~{%d+}\r\n" % len(raw) + raw + b"\r\n")
    _, tagged = await client.until_tag("a1")
    assert status_of(tagged) == "OK", tagged
    await client.ok("SELECT INBOX")
    lines = await _binary_lines(client, "FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1])")
    assert b"BINARY.SIZE[1] 7" in lines[0], lines
    assert b"BINARY[1] ~{7}\r\n\x00-\xe4\n\r\n\n" in lines[0], lines
    lines = await _binary_lines(client, "FETCH 1 (BODY.PEEK[1])")
    assert b"\x00" not in lines[0], lines  # base64 text, in a plain literal
    assert b"AC3kCg0KCg==" in lines[0], lines
    await client.close()


QP_MESSAGE = (
    b"From: user@domain.org\r\nMime-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="foo\r\n bar"\r\n\r\nRoot MIME prologue\r\n\r\n'
    b"--foo bar\r\nContent-Type: text/x-myown; charset=us-ascii\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"hello  \r\nbar=\r\n\r\nfoo\t=\r\nbar\r\nfoo\t \t= \r\n=62\r\nfoo = \t\r\nbar\r\nfoo =\r\n=62\r\n"
    b"foo  \r\nbar=\r\n\r\nfoo_bar\r\n\r\n--foo bar--\r\nRoot MIME epilogue\r\n"
)
QP_DECODED = b"hello\r\nbar\r\nfoo\tbar\r\nfoo\t \tb\r\nfoo bar\r\nfoo b\r\nfoo\r\nbar\r\nfoo_bar\r\n"


async def test_fetch_binary_quoted_printable(imap: ImapDoor, alice: str) -> None:
    """fetch-binary-mime-qp: trailing white space dropped, soft line breaks joined;
    partial fetches count in the decoded bytes."""
    await imap.deliver(alice, QP_MESSAGE)
    client = await imap.client()
    await client.ok("SELECT INBOX")
    lines = await client.ok("FETCH 1 (BINARY.SIZE[1])")
    assert lines == [f"* 1 FETCH (BINARY.SIZE[1] {len(QP_DECODED)})"]
    assert len(QP_DECODED) == 65
    for start, length in ((0, 10), (10, 10), (15, 10), (40, 100)):
        raw = await _binary_lines(client, f"FETCH 1 (BINARY.PEEK[1]<{start}.{length}>)")
        want = QP_DECODED[start : start + length]
        assert raw[0].startswith(f"* 1 FETCH (BINARY[1]<{start}> ".encode()), raw
        assert want in raw[0], (want, raw)
    await client.close()
