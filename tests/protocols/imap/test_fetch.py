"""FETCH and UID FETCH: every item, partials, \\Seen, sequence sets."""

from __future__ import annotations

from tests.helpers import make_message

from .conftest import ImapDoor, PASSWORD, in_thread, status_of

MULTIPART = (
    b"From: Ann <ann@example.org>\r\nTo: bob@example.com\r\nSubject: parts\r\n"
    b"Date: Wed, 02 Nov 2011 19:19:08 +0000\r\nMessage-ID: <p@example.org>\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
    b"--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n"
    b"--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n"
    b"--XX--\r\n"
)


async def test_fetch_items(imap: ImapDoor, alice: str) -> None:
    uid = await imap.deliver(alice, MULTIPART)
    client = await imap.client()
    await client.ok("SELECT INBOX")
    line = (await client.ok("FETCH 1 (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)"))[0]
    assert line.startswith(f"* 1 FETCH (UID {uid} FLAGS (\\Recent) INTERNALDATE ")
    assert f"RFC822.SIZE {len(MULTIPART)}" in line
    assert 'ENVELOPE ("Wed, 02 Nov 2011 19:19:08 +0000" "parts" (("Ann" NIL "ann" "example.org"))' in line
    line = (await client.ok("FETCH 1 BODYSTRUCTURE"))[0]
    assert '("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 5 0' in line and '"mixed"' in line
    line = (await client.ok("FETCH 1 BODY"))[0]
    assert "BODY ((" in line
    line = (await client.ok("FETCH 1 BODY.PEEK[1]"))[0]
    assert line.endswith("BODY[1] {5}\r\nhello)")
    line = (await client.ok("FETCH 1 BODY.PEEK[HEADER.FIELDS (Subject)]"))[0]
    assert "BODY[HEADER.FIELDS (SUBJECT)] {18}\r\nSubject: parts\r\n\r\n)" in line
    line = (await client.ok("FETCH 1 BODY.PEEK[]<0.4>"))[0]
    assert "BODY[]<0> {4}\r\nFrom)" in line
    line = (await client.ok("FETCH 1 (BINARY.PEEK[2] BINARY.SIZE[2])"))[0]
    assert "BINARY[2] ~{4}\r\n\x00\x01\x02\x03" in line and "BINARY.SIZE[2] 4" in line
    line = (await client.ok("FETCH 1 RFC822.HEADER"))[0]
    assert "RFC822.HEADER {" in line and "Subject: parts" in line
    # Nothing so far set \Seen; RFC822.TEXT does, and FLAGS come along.
    line = (await client.ok("FETCH 1 FLAGS"))[0]
    assert "\\Seen" not in line
    line = (await client.ok("FETCH 1 RFC822.TEXT"))[0]
    assert "FLAGS (\\Seen \\Recent)" in line
    line = (await client.ok("FETCH 1 (RFC822)"))[0]
    assert f"RFC822 {{{len(MULTIPART)}}}" in line
    await client.close()


async def test_fetch_sets_and_macros(imap: ImapDoor, alice: str) -> None:
    for n in range(5):
        await imap.deliver(alice, make_message(f"m{n}"))
    client = await imap.client()
    await client.ok("SELECT INBOX")
    lines = await client.ok("FETCH 1:* FAST")
    assert [line.split()[1] for line in lines] == ["1", "2", "3", "4", "5"]
    lines = await client.ok("FETCH 2,4:* ALL")
    assert [line.split()[1] for line in lines] == ["2", "4", "5"]
    lines = await client.ok("FETCH * FULL")
    assert len(lines) == 1 and "BODY (" in lines[0]
    _, tagged = await client.command("FETCH 9 FLAGS")
    assert status_of(tagged) == "BAD"
    lines = await client.ok("UID FETCH 3:100 FLAGS")
    assert [line.split()[1] for line in lines] == ["3", "4", "5"]
    assert all("UID " in line for line in lines)
    lines = await client.ok("UID FETCH 100:* FLAGS")  # * is the largest: 5
    assert len(lines) == 1 and "UID 5" in lines[0]
    lines = await client.ok("UID FETCH 50 FLAGS")
    assert lines == []
    await client.close()


async def test_fetch_with_imaplib(imap: ImapDoor, alice: str) -> None:
    raw = make_message("imaplib fetch")
    await imap.deliver(alice, raw)

    def run() -> bytes:
        m = imap.imaplib()
        m.login("alice", PASSWORD)
        m.select("INBOX")
        typ, data = m.uid("FETCH", "1", "(BODY.PEEK[])")
        m.logout()
        assert typ == "OK"
        return data[0][1]

    assert await in_thread(run) == raw


async def test_fetch_empty_mailbox(imap: ImapDoor, alice: str) -> None:
    client = await imap.client()
    await client.ok("SELECT INBOX")
    assert await client.ok("UID FETCH 1:* FLAGS") == []
    await client.close()
