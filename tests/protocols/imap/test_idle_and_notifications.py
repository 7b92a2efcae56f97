"""Changes made anywhere reach every selected session: IDLE pushes them at once;
otherwise they come with the next command, EXPUNGE only where RFC 3501 §7.4.1
allows it."""

from __future__ import annotations

import asyncio
import smtplib

import httpx

from tests.conftest import MailDoors
from tests.helpers import make_message

from .conftest import ImapDoor, in_thread


async def _idle(client) -> None:  # type: ignore[no-untyped-def]
    await client.send("i1 IDLE\r\n")
    assert (await client.line()).startswith("+ ")


async def test_idle_sees_lmtp_delivery(imap: ImapDoor, alice: str, mail_doors: MailDoors) -> None:
    client = await imap.client()
    await client.ok("SELECT INBOX")
    await _idle(client)

    def deliver() -> None:
        with smtplib.LMTP("127.0.0.1", mail_doors.lmtp) as lmtp:
            lmtp.sendmail("sender@example.org", ["alice@example.com"], make_message("by LMTP"))

    await in_thread(deliver)
    assert await client.line() == "* 1 EXISTS"
    assert await client.line() == "* 1 RECENT"
    await client.send("DONE\r\n")
    _, tagged = await client.until_tag("i1")
    assert tagged.startswith("i1 OK")
    await client.close()


async def test_idle_sees_mailstore_append_and_admin_flag_change(imap: ImapDoor, alice: str, client: httpx.AsyncClient) -> None:
    await imap.deliver(alice, make_message("first"))
    imap_client = await imap.client()
    await imap_client.ok("SELECT INBOX")
    await _idle(imap_client)
    await imap.deliver(alice, make_message("second"))
    assert await imap_client.line() == "* 2 EXISTS"
    assert (await imap_client.line()).endswith("RECENT")
    folder = await imap.folder_id(alice)
    response = await client.put(f"/users/{alice}/mailboxes/{folder}/messages/1", json={"flagged": True})
    assert response.status_code == 200, response.text
    line = await imap_client.line()
    assert line.startswith("* 1 FETCH (UID 1 FLAGS (\\Flagged")
    await imap_client.send("DONE\r\n")
    await imap_client.until_tag("i1")
    await imap_client.close()


async def test_expunge_in_another_session(imap: ImapDoor, alice: str) -> None:
    for n in range(3):
        await imap.deliver(alice, make_message(f"m{n}"))
    watcher = await imap.client()
    await watcher.ok("SELECT INBOX")
    actor = await imap.client()
    await actor.ok("SELECT INBOX")
    await actor.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    # The flag change reaches the watcher with its next command.
    lines = await watcher.ok("NOOP")
    assert lines == ["* 2 FETCH (UID 2 FLAGS (\\Deleted \\Recent))"]
    await actor.ok("EXPUNGE")
    # Not during FETCH (sequence numbers must stay put) ...
    lines, tagged = await watcher.command("FETCH 1:3 UID")
    assert [line.split()[1] for line in lines] == ["1", "3"]
    assert tagged.split()[1:3] == ["NO", "[EXPUNGEISSUED]"]
    assert not any("EXPUNGE" in line for line in lines)
    # ... nor SEARCH, but at NOOP.
    lines = await watcher.ok("SEARCH ALL")
    assert lines == ["* SEARCH 1 2 3"] or lines == ["* SEARCH 1 3"]
    lines = await watcher.ok("NOOP")
    assert lines == ["* 2 EXPUNGE"]
    lines = await watcher.ok("SEARCH ALL")
    assert lines == ["* SEARCH 1 2"]
    await watcher.close()
    await actor.close()


async def test_expunge_pushed_during_idle(imap: ImapDoor, alice: str) -> None:
    for n in range(2):
        await imap.deliver(alice, make_message(f"m{n}"))
    watcher = await imap.client()
    await watcher.ok("SELECT INBOX")
    await _idle(watcher)
    actor = await imap.client()
    await actor.ok("SELECT INBOX")
    await actor.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert (await watcher.line()).startswith("* 1 FETCH (UID 1 FLAGS (\\Deleted")
    await actor.ok("EXPUNGE")
    assert await watcher.line() == "* 1 EXPUNGE"
    await watcher.send("DONE\r\n")
    await watcher.until_tag("i1")
    await watcher.close()
    await actor.close()


async def test_uid_fetch_may_get_expunge_and_new_mail_on_noop(imap: ImapDoor, alice: str) -> None:
    await imap.deliver(alice, make_message("one"), flags=("\\Deleted",))
    watcher = await imap.client()
    await watcher.ok("SELECT INBOX")
    await imap.runtime.mailstore.delete_messages(alice, await imap.folder_id(alice), [1])
    await imap.deliver(alice, make_message("two"))
    lines = await watcher.ok("UID FETCH 1:* FLAGS")
    assert "* 1 EXPUNGE" in lines and "* 1 EXISTS" in lines
    await watcher.close()


async def test_idle_without_selection_and_auto_logout(imap: ImapDoor, alice: str) -> None:
    client = await imap.client()
    imap.services.timeout = 0.5
    await _idle(client)
    line = await client.line(timeout=5)
    assert line.startswith("* BYE") and "Autologout" in line
    await client.close()


async def test_other_sessions_appends_show_as_exists(imap: ImapDoor, alice: str) -> None:
    watcher = await imap.client()
    await watcher.ok("SELECT INBOX")
    actor = await imap.client()
    await actor.ok("APPEND INBOX {5+}\r\nab: c")
    await asyncio.sleep(0)
    lines = await watcher.ok("NOOP")
    assert lines[0] == "* 1 EXISTS"
    await watcher.close()
    await actor.close()
