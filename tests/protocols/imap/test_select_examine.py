"""SELECT, EXAMINE, CLOSE, UNSELECT, CHECK."""

from __future__ import annotations

from tests.helpers import make_message

from .conftest import ImapDoor, status_of


async def test_select_reports_the_mailbox(imap: ImapDoor, alice: str) -> None:
    await imap.deliver(alice, make_message("one"), flags=("\\Seen",))
    await imap.deliver(alice, make_message("two"))
    client = await imap.client()
    lines, tagged = await client.command("SELECT INBOX")
    assert "[READ-WRITE]" in tagged
    text = "\n".join(lines)
    assert "* 2 EXISTS" in text
    assert "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)" in text
    assert "[PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)]" in text
    assert "[UNSEEN 2]" in text
    assert "[UIDVALIDITY " in text and "[UIDNEXT 3]" in text and "[HIGHESTMODSEQ " in text
    await client.close()


async def test_select_case_insensitive_inbox_and_missing(imap: ImapDoor, alice: str) -> None:
    client = await imap.client()
    await client.ok("SELECT inbox")
    _, tagged = await client.command("SELECT Nope")
    assert status_of(tagged) == "NO"
    # A failed SELECT leaves no mailbox selected.
    _, tagged = await client.command("FETCH 1 FLAGS")
    assert status_of(tagged) == "BAD"
    await client.close()


async def test_examine_is_read_only(imap: ImapDoor, alice: str) -> None:
    await imap.deliver(alice, make_message("one"))
    client = await imap.client()
    lines, tagged = await client.command("EXAMINE INBOX")
    assert "[READ-ONLY]" in tagged
    assert any("[PERMANENTFLAGS ()]" in line for line in lines)
    _, tagged = await client.command("STORE 1 +FLAGS (\\Seen)")
    assert status_of(tagged) == "NO"
    # Reading does not set \Seen in a read-only mailbox.
    lines = await client.ok("FETCH 1 (BODY[] FLAGS)")
    assert "\\Seen" not in lines[0]
    await client.close()


async def test_reselect_says_closed(imap: ImapDoor, alice: str) -> None:
    client = await imap.client()
    await client.ok("SELECT INBOX")
    lines = await client.ok("SELECT Drafts")
    assert lines[0] == "* OK [CLOSED] Previous mailbox closed"
    await client.close()


async def test_close_expunges_silently_and_unselect_does_not(imap: ImapDoor, alice: str) -> None:
    for subject in ("a", "b"):
        await imap.deliver(alice, make_message(subject), flags=("\\Deleted",))
    client = await imap.client()
    await client.ok("SELECT INBOX")
    lines = await client.ok("UNSELECT")
    assert lines == []
    lines = await client.ok("SELECT INBOX")
    assert "* 2 EXISTS" in lines
    lines = await client.ok("CLOSE")
    assert lines == []
    lines = await client.ok("SELECT INBOX")
    assert "* 0 EXISTS" in lines
    await client.ok("CHECK")
    await client.close()


async def test_recent(imap: ImapDoor, alice: str) -> None:
    await imap.deliver(alice, make_message("one"))
    first = await imap.client()
    lines = await first.ok("SELECT INBOX")
    assert "* 1 RECENT" in lines
    second = await imap.client()
    lines = await second.ok("SELECT INBOX")
    assert "* 0 RECENT" in lines
    lines = await first.ok("FETCH 1 FLAGS")
    assert "\\Recent" in lines[0]
    await first.close()
    await second.close()
