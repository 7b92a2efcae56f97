"""STORE and UID STORE: +FLAGS, -FLAGS, FLAGS, .SILENT, keywords."""

from __future__ import annotations

from tests.helpers import make_message

from .conftest import ImapDoor, status_of


async def _three(imap: ImapDoor, alice: str) -> None:
    for n in range(3):
        await imap.deliver(alice, make_message(f"m{n}"))


async def test_store_modes(imap: ImapDoor, alice: str) -> None:
    await _three(imap, alice)
    client = await imap.client()
    await client.ok("SELECT INBOX")
    lines = await client.ok("STORE 1:2 +FLAGS (\\Seen \\Flagged $Label1)")
    assert lines == [
        # a new keyword is announced before a FETCH uses it (RFC 3501 §7.2.6)
        "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1)",
        "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1 \\*)] Flags permitted",
        "* 1 FETCH (FLAGS (\\Flagged \\Seen $Label1 \\Recent))",
        "* 2 FETCH (FLAGS (\\Flagged \\Seen $Label1 \\Recent))",
    ]
    lines = await client.ok("STORE 1 -FLAGS (\\Flagged $label1)")
    assert lines == ["* 1 FETCH (FLAGS (\\Seen \\Recent))"]
    lines = await client.ok("STORE 2 FLAGS (\\Answered)")
    assert lines == ["* 2 FETCH (FLAGS (\\Answered \\Recent))"]
    lines = await client.ok("STORE 3 +FLAGS.SILENT (\\Deleted)")
    assert lines == []
    lines = await client.ok("UID STORE 3 +FLAGS \\Draft")
    assert lines == ["* 3 FETCH (UID 3 FLAGS (\\Deleted \\Draft \\Recent))"]
    lines = await client.ok("FETCH 1:3 FLAGS")
    assert [line.split("FLAGS ")[1] for line in lines] == ["(\\Seen \\Recent))", "(\\Answered \\Recent))", "(\\Deleted \\Draft \\Recent))"]
    # Counters follow: one message is \Seen.
    folder = await imap.runtime.mailstore.folder_by_path(alice, "INBOX")
    assert folder.unseen_count == 2
    lines = await client.ok("SELECT INBOX")
    assert any("$Label1" not in line for line in lines)
    await client.close()


async def test_store_keywords_in_flags_list(imap: ImapDoor, alice: str) -> None:
    await _three(imap, alice)
    client = await imap.client()
    await client.ok("SELECT INBOX")
    await client.ok("STORE 1 +FLAGS ($Important)")
    lines = await client.ok("SELECT INBOX")
    assert "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Important)" in lines
    await client.close()


async def test_store_errors(imap: ImapDoor, alice: str) -> None:
    await _three(imap, alice)
    client = await imap.client()
    await client.ok("SELECT INBOX")
    _, tagged = await client.command("STORE 1 +FLAGS (\\Seen")
    assert status_of(tagged) == "BAD"
    _, tagged = await client.command("STORE 1 BOGUS (\\Seen)")
    assert status_of(tagged) == "BAD"
    _, tagged = await client.command("STORE 7 +FLAGS (\\Seen)")
    assert status_of(tagged) == "BAD"
    assert await client.ok("UID STORE 70 +FLAGS (\\Seen)") == []
    await client.close()
