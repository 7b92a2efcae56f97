"""CREATE (with special use), DELETE, RENAME."""

from __future__ import annotations

from tests.helpers import make_message

from .conftest import ImapDoor, status_of


async def test_create_and_delete(imap: ImapDoor, alice: str) -> None:
    client = await imap.client()
    await client.ok("CREATE Projects/")
    lines = await client.ok('LIST "" Projects')
    assert lines == ['* LIST (\\HasNoChildren) "/" "Projects"']
    _, tagged = await client.command("CREATE Projects")
    assert tagged.split()[1:3] == ["NO", "[ALREADYEXISTS]"]
    _, tagged = await client.command("CREATE INBOX")
    assert status_of(tagged) == "NO"
    await client.ok("DELETE Projects")
    assert await client.ok('LIST "" Projects') == []
    _, tagged = await client.command("DELETE Projects")
    assert tagged.split()[1:3] == ["NO", "[NONEXISTENT]"]
    _, tagged = await client.command("DELETE INBOX")
    assert status_of(tagged) == "NO"
    _, tagged = await client.command("DELETE Trash")
    assert tagged.split()[1:3] == ["NO", "[CANNOT]"]
    await client.close()


async def test_create_special_use(imap: ImapDoor, alice: str) -> None:
    client = await imap.client()
    await client.ok("CREATE Everything (USE (\\All))")
    lines = await client.ok('LIST "" Everything')
    assert lines == ['* LIST (\\HasNoChildren \\All) "/" "Everything"']
    _, tagged = await client.command("CREATE Bin (USE (\\Trash))")
    assert tagged.split()[1:3] == ["NO", "[USEATTR]"]
    await client.close()


async def test_rename_keeps_messages_and_children(imap: ImapDoor, alice: str) -> None:
    client = await imap.client()
    await client.ok("CREATE Old/Child")
    folder = await imap.folder_id(alice, "Old")
    await imap.runtime.mailstore.append(alice, folder, make_message("kept"))
    await client.ok("RENAME Old New")
    lines = await client.ok('LIST "" "New*"')
    assert '* LIST (\\HasChildren) "/" "New"' in lines
    assert '* LIST (\\HasNoChildren) "/" "New/Child"' in lines
    lines = await client.ok("STATUS New (MESSAGES)")
    assert lines == ["* STATUS \"New\" (MESSAGES 1)"]
    _, tagged = await client.command("RENAME Nope Other")
    assert status_of(tagged) == "NO"
    _, tagged = await client.command("RENAME New Trash")
    assert tagged.split()[1:3] == ["NO", "[ALREADYEXISTS]"]
    await client.close()


async def test_delete_selected_mailbox(imap: ImapDoor, alice: str) -> None:
    client = await imap.client()
    await client.ok("CREATE Temp")
    await client.ok("SELECT Temp")
    lines = await client.ok("DELETE Temp")
    assert "* OK [CLOSED] Mailbox deleted" in lines
    _, tagged = await client.command("FETCH 1 FLAGS")
    assert status_of(tagged) == "BAD"
    await client.close()


async def test_mailbox_deleted_by_another_session(imap: ImapDoor, alice: str) -> None:
    first = await imap.client()
    second = await imap.client()
    await first.ok("CREATE Temp")
    await second.ok("SELECT Temp")
    await first.ok("DELETE Temp")
    _, tagged = await second.command("NOOP")
    line = await second.line()
    assert line.startswith("* BYE")
    await first.close()
    await second.close()
