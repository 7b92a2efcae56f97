"""APPEND: synchronising and non-synchronising literals, flags, dates, APPENDUID,
MULTIAPPEND, refusals."""

from __future__ import annotations

from tests.helpers import make_message

from .conftest import ImapDoor, in_thread, status_of, PASSWORD


async def test_append_sync_literal(imap: ImapDoor, alice: str) -> None:
    raw = make_message("appended")
    client = await imap.client()
    await client.send(f'a1 APPEND INBOX (\\Seen $Work) "05-Jan-2024 10:00:00 +0100" {{{len(raw)}}}\r\n')
    assert (await client.line()).startswith("+ ")
    await client.send(raw + b"\r\n")
    _, tagged = await client.until_tag("a1")
    assert status_of(tagged) == "OK"
    assert "[APPENDUID " in tagged and tagged.split("]")[0].endswith(" 1")
    await client.ok("SELECT INBOX")
    lines = await client.ok("FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE)")
    assert "FLAGS (\\Seen $Work" in lines[0]
    assert 'INTERNALDATE "05-Jan-2024 09:00:00 +0000"' in lines[0]
    assert f"RFC822.SIZE {len(raw)}" in lines[0]
    await client.close()


async def test_append_literal_plus_and_bare_lf(imap: ImapDoor, alice: str) -> None:
    raw = b"Subject: lf\nFrom: a@example.org\n\nbody\n"
    client = await imap.client()
    await client.send(b"a1 APPEND INBOX {%d+}\r\n" % len(raw) + raw + b"\r\n")
    _, tagged = await client.until_tag("a1")
    assert status_of(tagged) == "OK"
    await client.ok("SELECT INBOX")
    lines = await client.ok("FETCH 1 BODY.PEEK[]")
    assert "Subject: lf\r\nFrom: a@example.org\r\n\r\nbody\r\n" in lines[0]
    await client.close()


async def test_multiappend(imap: ImapDoor, alice: str) -> None:
    one, two = make_message("one"), make_message("two")
    client = await imap.client()
    await client.send(b"a1 APPEND INBOX {%d+}\r\n%s (\\Flagged) {%d+}\r\n%s\r\n" % (len(one), one, len(two), two))
    _, tagged = await client.until_tag("a1")
    assert status_of(tagged) == "OK" and "1:2]" in tagged
    await client.close()


async def test_append_refusals(imap: ImapDoor, alice: str) -> None:
    client = await imap.client()
    _, tagged = await client.command("APPEND Nope {3+}\r\nabc")
    assert tagged.split()[1:3] == ["NO", "[TRYCREATE]"]
    imap.services.max_message_size = 1000
    await client.send("a9 APPEND INBOX {5000}\r\n")
    line = await client.line()
    assert line.startswith("a9 NO [TOOBIG]")
    await client.ok("NOOP")  # the session goes on
    await client.close()


async def test_append_over_quota(imap: ImapDoor) -> None:
    await imap.user("bob", quota=100)
    raw = make_message("big", body="x" * 500)
    client = await imap.client("bob")
    _, tagged = await client.command(f"APPEND INBOX {{{len(raw)}+}}\r\n" + raw.decode())
    assert tagged.split()[1:3] == ["NO", "[OVERQUOTA]"]
    await client.close()


async def test_imaplib_append(imap: ImapDoor, alice: str) -> None:
    def run() -> tuple[str, list]:
        m = imap.imaplib()
        m.login("alice", PASSWORD)
        typ, data = m.append("INBOX", "(\\Draft)", None, make_message("via imaplib"))
        m.logout()
        return typ, data

    typ, data = await in_thread(run)
    assert typ == "OK" and b"APPENDUID" in data[0]
