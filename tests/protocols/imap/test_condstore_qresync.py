"""CONDSTORE (MODSEQ, CHANGEDSINCE, UNCHANGEDSINCE, HIGHESTMODSEQ) and QRESYNC
(SELECT ... QRESYNC, VANISHED, VANISHED (EARLIER))."""

from __future__ import annotations

import re

from tests.helpers import make_message

from .conftest import ImapDoor, status_of


def _highest(lines: list[str]) -> int:
    for line in lines:
        m = re.search(r"\[HIGHESTMODSEQ (\d+)\]", line)
        if m:
            return int(m.group(1))
    raise AssertionError(lines)


async def _messages(imap: ImapDoor, alice: str, count: int = 4) -> None:
    for n in range(count):
        await imap.deliver(alice, make_message(f"m{n}"))


async def test_condstore_fetch_and_store(imap: ImapDoor, alice: str) -> None:
    await _messages(imap, alice)
    client = await imap.client()
    lines = await client.ok("SELECT INBOX (CONDSTORE)")
    highest = _highest(lines)
    lines = await client.ok("FETCH 1:* (MODSEQ)")
    modseqs = [int(re.search(r"MODSEQ \((\d+)\)", line).group(1)) for line in lines]
    assert max(modseqs) == highest
    lines = await client.ok("STORE 2 +FLAGS (\\Seen)")
    stored = int(re.search(r"MODSEQ \((\d+)\)", lines[0]).group(1))
    assert stored > highest
    lines = await client.ok(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {highest})")
    assert len(lines) == 1 and lines[0].startswith("* 2 FETCH") and f"MODSEQ ({stored})" in lines[0]
    # UNCHANGEDSINCE: message 2 changed after `highest`, so it is not touched.
    lines, tagged = await client.command(f"STORE 1:2 (UNCHANGEDSINCE {highest}) +FLAGS (\\Flagged)")
    assert status_of(tagged) == "OK" and "[MODIFIED 2]" in tagged
    assert len(lines) == 1 and lines[0].startswith("* 1 FETCH")
    lines, tagged = await client.command(f"UID STORE 2 (UNCHANGEDSINCE {stored}) -FLAGS (\\Seen)")
    assert "[MODIFIED" not in tagged
    lines = await client.ok(f"SEARCH MODSEQ {stored}")
    assert lines[0].startswith("* SEARCH 1 2 (MODSEQ ")
    lines = await client.ok("STATUS INBOX (HIGHESTMODSEQ)")
    assert "HIGHESTMODSEQ" in lines[0]
    await client.close()


async def test_qresync_select_reports_vanished_and_changes(imap: ImapDoor, alice: str) -> None:
    await _messages(imap, alice)
    client = await imap.client()
    await client.ok("ENABLE QRESYNC")
    lines = await client.ok("SELECT INBOX")
    highest = _highest(lines)
    uidvalidity = int(re.search(r"UIDVALIDITY (\d+)", "\n".join(lines)).group(1))
    await client.ok("UNSELECT")
    other = await imap.client()
    await other.ok("SELECT INBOX")
    await other.ok("STORE 3 +FLAGS (\\Answered)")
    await other.ok("STORE 1,2 +FLAGS.SILENT (\\Deleted)")
    await other.ok("EXPUNGE")
    lines = await client.ok(f"SELECT INBOX (QRESYNC ({uidvalidity} {highest} 1:4))")
    assert "* VANISHED (EARLIER) 1:2" in lines
    fetches = [line for line in lines if "FETCH" in line]
    assert len(fetches) == 1 and "UID 3" in fetches[0] and "\\Answered" in fetches[0]
    # A wrong UIDVALIDITY: no resynchronisation data.
    lines = await client.ok(f"SELECT INBOX (QRESYNC (1 {highest}))")
    assert not any("VANISHED" in line for line in lines)
    # Expunges by others now come as VANISHED.
    await other.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    await other.ok("EXPUNGE")
    lines = await client.ok("NOOP")
    assert "* VANISHED 3" in lines
    lines = await client.ok(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {highest} VANISHED)")
    assert lines[0] == "* VANISHED (EARLIER) 1:3"
    await client.close()
    await other.close()


async def test_qresync_needs_enable(imap: ImapDoor, alice: str) -> None:
    client = await imap.client()
    _, tagged = await client.command("SELECT INBOX (QRESYNC (1 1))")
    assert status_of(tagged) == "BAD"
    lines = await client.ok("ENABLE QRESYNC CONDSTORE")
    assert lines == ["* ENABLED QRESYNC CONDSTORE"]
    await client.close()


async def test_tombstones_written_on_every_delete_path(imap: ImapDoor, alice: str) -> None:
    await _messages(imap, alice, 3)
    store = imap.runtime.mailstore
    inbox = await imap.folder_id(alice)
    archive = await imap.folder_id(alice, "Archive")
    await store.delete_messages(alice, inbox, [1])
    await store.update_messages(alice, inbox, [(2, 2)], flags={}, move_to=archive)
    view = imap.services.view
    assert await view.vanished_since(inbox, 0) == [1, 2]
    await view.expunge_deleted(alice, inbox)  # nothing is \Deleted
    assert await view.vanished_since(inbox, 0) == [1, 2]
