"""LIST (with LIST-EXTENDED, SPECIAL-USE, LIST-STATUS), LSUB, STATUS, NAMESPACE,
SUBSCRIBE, QUOTA."""

from __future__ import annotations

from tests.helpers import make_message

from .conftest import ImapDoor, status_of


async def test_list_all(imap: ImapDoor, alice: str) -> None:
    client = await imap.client()
    lines = await client.ok('LIST "" "*"')
    assert lines[0] == '* LIST (\\HasNoChildren) "/" "INBOX"'
    assert '* LIST (\\HasNoChildren \\Sent) "/" "Sent Mail"' in lines
    assert '* LIST (\\HasNoChildren \\Trash) "/" "Trash"' in lines
    assert len(lines) == 6
    await client.close()


async def test_list_delimiter_and_hierarchy(imap: ImapDoor, alice: str) -> None:
    client = await imap.client()
    lines = await client.ok('LIST "" ""')
    assert lines == ['* LIST (\\Noselect) "/" ""']
    await client.ok("CREATE Work/Projects/Big")
    lines = await client.ok('LIST "" "Work/%"')
    assert lines == ['* LIST (\\HasChildren) "/" "Work/Projects"']
    lines = await client.ok('LIST "Work/" "*"')
    assert '* LIST (\\HasNoChildren) "/" "Work/Projects/Big"' in lines
    lines = await client.ok('LIST "" "%"')
    assert '* LIST (\\HasChildren) "/" "Work"' in lines
    lines = await client.ok('LIST "" "inbox"')
    assert lines == ['* LIST (\\HasNoChildren) "/" "INBOX"']
    await client.close()


async def test_list_utf7_names(imap: ImapDoor, alice: str) -> None:
    client = await imap.client()
    await client.ok('CREATE "&ZeVnLIqe-"')  # 日本語
    lines = await client.ok('LIST "" "&ZeVnLIqe-"')
    assert lines == ['* LIST (\\HasNoChildren) "/" "&ZeVnLIqe-"']
    folder = await imap.runtime.mailstore.folder_by_path(alice, "日本語")
    assert folder.path == "日本語"
    await client.close()


async def test_list_extended_and_status(imap: ImapDoor, alice: str) -> None:
    await imap.deliver(alice, make_message("one"))
    client = await imap.client()
    lines = await client.ok('LIST (SPECIAL-USE) "" "*"')
    assert all("INBOX" not in line for line in lines) and len(lines) == 5
    await client.ok("UNSUBSCRIBE Junk")
    lines = await client.ok('LIST (SUBSCRIBED) "" "*"')
    assert all("Junk" not in line for line in lines)
    assert all("\\Subscribed" in line for line in lines)
    lines = await client.ok('LIST "" "INBOX" RETURN (STATUS (MESSAGES UNSEEN UIDNEXT))')
    assert lines[1] == "* STATUS \"INBOX\" (MESSAGES 1 UNSEEN 1 UIDNEXT 2)"
    lines = await client.ok('LIST "" ("INBOX" "Trash") RETURN (CHILDREN SUBSCRIBED)')
    assert len(lines) == 2
    await client.close()


async def test_lsub_and_subscribe(imap: ImapDoor, alice: str) -> None:
    client = await imap.client()
    await client.ok("CREATE Lists/a")  # CREATE subscribes nothing (RFC 3501 §6.3.3)
    await client.ok("SUBSCRIBE Lists/a")
    lines = await client.ok('LSUB "" "*"')
    assert '* LSUB () "/" "Lists/a"' in lines
    assert all('"/" Lists\r' not in line and not line.endswith('"/" "Lists"') for line in lines)
    lines = await client.ok('LSUB "" "%"')
    assert '* LSUB (\\Noselect) "/" "Lists"' in lines
    # Any name may be subscribed; one that is no mailbox is listed \Noselect.
    await client.ok("SUBSCRIBE Nope")
    assert '* LSUB (\\Noselect) "/" "Nope"' in await client.ok('LSUB "" "*"')
    await client.close()


async def test_status(imap: ImapDoor, alice: str) -> None:
    await imap.deliver(alice, make_message("one"), flags=("\\Seen", "\\Deleted"))
    await imap.deliver(alice, make_message("two"))
    client = await imap.client()
    lines = await client.ok("STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ SIZE DELETED APPENDLIMIT)")
    line = lines[0]
    assert line.startswith("* STATUS \"INBOX\" (MESSAGES 2 RECENT 2 UIDNEXT 3 UIDVALIDITY ")
    assert "UNSEEN 1" in line and "DELETED 1" in line and "HIGHESTMODSEQ" in line and "SIZE " in line
    _, tagged = await client.command("STATUS Nope (MESSAGES)")
    assert tagged.split()[1:3] == ["NO", "[NONEXISTENT]"]
    _, tagged = await client.command("STATUS INBOX (BOGUS)")
    assert status_of(tagged) == "BAD"
    await client.close()


async def test_namespace_and_quota(imap: ImapDoor, alice: str) -> None:
    await imap.deliver(alice, make_message("one", body="x" * 5000))
    client = await imap.client()
    lines = await client.ok("NAMESPACE")
    assert lines == ['* NAMESPACE (("" "/")) NIL NIL']
    lines = await client.ok("GETQUOTAROOT INBOX")
    assert lines[0] == '* QUOTAROOT \"INBOX\" \"\"'
    assert lines[1].startswith('* QUOTA "" (STORAGE 5 ')
    lines = await client.ok('GETQUOTA ""')
    assert lines[0].startswith('* QUOTA "" (STORAGE')
    _, tagged = await client.command('SETQUOTA "" (STORAGE 10)')
    assert status_of(tagged) == "NO"
    await client.close()
