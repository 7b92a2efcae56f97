"""The IMAP operations of the mailstore (``ImapView``) called directly: flag stores
with UNCHANGEDSINCE, COPY with quota and blob references, EXPUNGE of \\Deleted
messages, changes and tombstones since a MODSEQ, and the events they publish."""

from __future__ import annotations

import pytest

from postern.accounts.service import NewUser
from postern.errors import OverQuota
from postern.events import MessageAdded, MessagesChanged, MessagesExpunged
from postern.mailstore.imap_view import ImapView
from postern.serve.runtime import Runtime
from postern.storage import messages as message_store
from tests.helpers import make_message


async def _setup(runtime: Runtime, count: int = 3, **fields: object) -> tuple[ImapView, str, str]:
    user = await runtime.accounts.create_user(NewUser(username="alice", password=None, **fields))  # type: ignore[arg-type]
    inbox = (await runtime.mailstore.folder_by_path(user, "INBOX")).id
    for n in range(count):
        await runtime.mailstore.append(user, inbox, make_message(f"m{n}"))
    return ImapView(runtime.mailstore), user, inbox


async def test_store_flags_and_counters(runtime: Runtime) -> None:
    view, user, inbox = await _setup(runtime)
    with runtime.bus.subscribe(user) as sub:
        outcome = await view.store_flags(user, inbox, [(1, 2)], "add", ["\\Seen", "$Work", "\\Recent", "\\Bogus"])
        event = sub.queue.get_nowait()
    assert isinstance(event, MessagesChanged) and event.uids == (1, 2) and event.modseq == outcome.modseq
    assert [m.flags for m in outcome.messages] == [("\\Seen", "$Work"), ("\\Seen", "$Work")]
    assert (await runtime.mailstore.folder_by_path(user, "INBOX")).unseen_count == 1
    again = await view.store_flags(user, inbox, [(1, 2)], "add", ["\\Seen"])
    assert again.modseq is None  # nothing changed, no new MODSEQ
    removed = await view.store_flags(user, inbox, [(1, 1)], "remove", ["$WORK", "\\Seen"])
    assert removed.messages[0].flags == ()
    guarded = await view.store_flags(user, inbox, [(1, 3)], "replace", ["\\Flagged"], unchanged_since=outcome.modseq)
    assert guarded.modified == [1]
    assert [m.flags for m in await view.messages(inbox, [(1, None)])] == [(), ("\\Flagged",), ("\\Flagged",)]
    assert {m.uid for m in await view.changed_since(inbox, outcome.modseq)} == {1, 2, 3}


async def test_copy_counts_quota_and_blob_references(runtime: Runtime) -> None:
    view, user, inbox = await _setup(runtime)
    archive = (await runtime.mailstore.folder_by_path(user, "Archive")).id
    with runtime.bus.subscribe(user) as sub:
        uidvalidity, pairs = await view.copy(user, inbox, [1, 3, 99], archive)
        events = [sub.queue.get_nowait() for _ in range(2)]
    assert pairs == [(1, 1), (3, 2)] and uidvalidity > 0
    assert all(isinstance(e, MessageAdded) for e in events)
    folder = await runtime.mailstore.folder_by_path(user, "Archive")
    assert folder.message_count == 2
    # Deleting the originals leaves the copies readable.
    await runtime.mailstore.delete_messages(user, inbox, [1, 3])
    await runtime.mailstore.collect_garbage()
    copies = await view.messages(archive, [(1, None)])
    assert b"Subject: m0" in await view.raw(copies[0])
    async with runtime.db.read() as conn:
        assert await message_store.count_messages(conn, archive) == (2, 2, sum(m.size for m in copies))


async def test_copy_over_quota(runtime: Runtime) -> None:
    view, user, inbox = await _setup(runtime, 1)
    used, _ = await view.quota(user)
    async with runtime.db.write() as conn:
        from sqlalchemy import update

        from postern.storage.schema import users

        await conn.execute(update(users).where(users.c.id == user).values(quota_allowed=used + 10))
    archive = (await runtime.mailstore.folder_by_path(user, "Archive")).id
    with pytest.raises(OverQuota):
        await view.copy(user, inbox, [1], archive)


async def test_expunge_deleted_and_tombstones(runtime: Runtime) -> None:
    view, user, inbox = await _setup(runtime, 4)
    await view.store_flags(user, inbox, [(1, 3)], "add", ["\\Deleted"])
    before = (await runtime.mailstore.folder_by_path(user, "INBOX")).modseq
    with runtime.bus.subscribe(user) as sub:
        assert await view.expunge_deleted(user, inbox, [2, 3, 4]) == [2, 3]
        event = sub.queue.get_nowait()
    assert isinstance(event, MessagesExpunged) and event.uids == (2, 3)
    assert await view.vanished_since(inbox, before) == [2, 3]
    assert await view.expunge_deleted(user, inbox) == [1]
    assert await view.vanished_since(inbox, 0) == [1, 2, 3]
    opened = await view.open(user, "inbox")
    assert opened.uids == [4] and opened.first_unseen_uid == 4
