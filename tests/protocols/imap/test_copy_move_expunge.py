"""COPY, MOVE (with COPYUID), EXPUNGE, UID EXPUNGE."""

from __future__ import annotations

from tests.helpers import make_message

from .conftest import ImapDoor, status_of


async def _messages(imap: ImapDoor, alice: str, count: int = 4) -> None:
    for n in range(count):
        await imap.deliver(alice, make_message(f"m{n}"))


async def test_copy(imap: ImapDoor, alice: str) -> None:
    await _messages(imap, alice)
    client = await imap.client()
    await client.ok("SELECT INBOX")
    await client.ok("STORE 2 +FLAGS ($Keep \\Flagged)")
    lines, tagged = await client.command("COPY 2:3 Archive")
    assert status_of(tagged) == "OK"
    folder = await imap.runtime.mailstore.folder_by_path(alice, "Archive")
    assert f"[COPYUID {folder.uidvalidity} 2:3 1:2]" in tagged
    lines = await client.ok("STATUS Archive (MESSAGES UNSEEN)")
    assert lines == ['* STATUS "Archive" (MESSAGES 2 UNSEEN 2)']
    await client.ok("EXAMINE Archive")
    lines = await client.ok("FETCH 1 (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert "$Keep" in lines[0] and "Subject: m1" in lines[0]
    _, tagged = await client.command("COPY 1 Nope")
    assert tagged.split()[1:3] == ["NO", "[TRYCREATE]"]
    user, _ = await imap.runtime.accounts.get_user(alice)
    assert user.storage_used > 0
    await client.close()


async def test_move(imap: ImapDoor, alice: str) -> None:
    await _messages(imap, alice)
    client = await imap.client()
    await client.ok("SELECT INBOX")
    lines, tagged = await client.command("MOVE 2,4 Archive")
    assert status_of(tagged) == "OK"
    assert lines[0].startswith("* OK [COPYUID ") and " 2,4 1:2]" in lines[0]
    assert lines[1:] == ["* 2 EXPUNGE", "* 3 EXPUNGE"]
    lines = await client.ok("UID FETCH 1:* FLAGS")
    assert [line.split()[4] for line in lines] == ["1", "3"]
    lines, tagged = await client.command("UID MOVE 3 Archive")
    assert lines[1:] == ["* 2 EXPUNGE"]
    assert status_of(tagged) == "OK"
    await client.close()


async def test_expunge(imap: ImapDoor, alice: str) -> None:
    await _messages(imap, alice, 5)
    client = await imap.client()
    await client.ok("SELECT INBOX")
    await client.ok("STORE 2,3,5 +FLAGS.SILENT (\\Deleted)")
    lines = await client.ok("EXPUNGE")
    assert lines == ["* 2 EXPUNGE", "* 2 EXPUNGE", "* 3 EXPUNGE"]
    lines = await client.ok("SEARCH ALL")
    assert lines == ["* SEARCH 1 2"]
    user, _ = await imap.runtime.accounts.get_user(alice)
    folder = await imap.runtime.mailstore.folder_by_path(alice, "INBOX")
    assert folder.message_count == 2
    await client.close()


async def test_uid_expunge(imap: ImapDoor, alice: str) -> None:
    await _messages(imap, alice, 4)
    client = await imap.client()
    await client.ok("SELECT INBOX")
    await client.ok("STORE 1:4 +FLAGS.SILENT (\\Deleted)")
    lines = await client.ok("UID EXPUNGE 2:3")
    assert lines == ["* 2 EXPUNGE", "* 2 EXPUNGE"]
    lines = await client.ok("UID SEARCH ALL")
    assert lines == ["* SEARCH 1 4"]
    await client.close()


async def test_expunge_read_only(imap: ImapDoor, alice: str) -> None:
    await _messages(imap, alice, 1)
    client = await imap.client()
    await client.ok("EXAMINE INBOX")
    _, tagged = await client.command("EXPUNGE")
    assert status_of(tagged) == "NO"
    await client.close()


async def test_expunge_with_nothing_deleted_and_after_another_session_deleted(imap: ImapDoor, alice: str) -> None:
    """An EXPUNGE that finds no \\Deleted message is answered from a read; one that
    follows another session's completed STORE \\Deleted removes the message."""
    await _messages(imap, alice, 3)
    first, second = await imap.client(), await imap.client()
    await first.ok("SELECT INBOX")
    await second.ok("SELECT INBOX")
    assert not any("EXPUNGE" in line for line in await first.ok("EXPUNGE"))
    await first.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    # UID EXPUNGE of a set without the deleted message removes nothing.
    assert not any("EXPUNGE" in line for line in await second.ok("UID EXPUNGE 1,3"))
    lines = await second.ok("EXPUNGE")
    assert "* 2 EXPUNGE" in lines
    assert "* 2 EXPUNGE" in await first.ok("NOOP")
    assert await first.ok("SEARCH ALL") == ["* SEARCH 1 2"]
    for client in (first, second):
        await client.close()
