"""Concurrent STOREs share one transaction (``ImapView``'s group commit): each sees
the ones before it, takes a MODSEQ of its own, keeps the folder's unseen count, and
publishes its change only once committed; one whose folder is gone fails alone."""

from __future__ import annotations

import asyncio

import pytest

from postern.accounts.service import NewUser
from postern.errors import NotFound
from postern.events import MessagesChanged
from postern.mailstore.imap_view import ImapView
from postern.serve.runtime import Runtime
from tests.helpers import make_message


async def _user_with_messages(runtime: Runtime, name: str, count: int) -> tuple[str, str]:
    user = await runtime.accounts.create_user(NewUser(username=name, password=None))
    inbox = (await runtime.mailstore.folder_by_path(user, "INBOX")).id
    for n in range(count):
        await runtime.mailstore.append(user, inbox, make_message(f"{name} {n}"))
    return user, inbox


async def test_concurrent_stores_each_see_the_ones_before(runtime: Runtime) -> None:
    view = ImapView(runtime.mailstore)
    alice, inbox = await _user_with_messages(runtime, "alice", 4)
    bob, bob_inbox = await _user_with_messages(runtime, "bob", 2)
    stores = [
        view.store_flags(alice, inbox, [(1, 2)], "add", ["$One"]),
        view.store_flags(alice, inbox, [(2, 3)], "add", ["$Two", "\\Seen"]),
        view.store_flags(bob, bob_inbox, [(1, None)], "add", ["\\Flagged"]),
        view.store_flags(alice, inbox, [(2, 2)], "remove", ["$one"]),
        view.store_flags(alice, inbox, [(4, 4)], "replace", ["\\Seen"], unchanged_since=0),
    ]
    with runtime.bus.subscribe(alice) as sub:
        if runtime.db.is_sqlite:
            outcomes = await asyncio.gather(*stores)  # one batch
        else:  # each in a transaction of its own, in an order the test can not know if concurrent
            outcomes = [await store for store in stores]
        events = [sub.queue.get_nowait() for _ in range(3)]
    modseqs = [o.modseq for o in outcomes if o.modseq is not None]
    assert len(modseqs) == 4 and len({*modseqs[:2], modseqs[3]}) == 3  # alice's three changes
    assert [m.flags for m in outcomes[0].messages] == [("$One",), ("$One",)]
    assert [m.flags for m in outcomes[1].messages] == [("\\Seen", "$One", "$Two"), ("\\Seen", "$Two")]
    assert [m.flags for m in outcomes[3].messages] == [("\\Seen", "$Two")]
    assert outcomes[4].modified == [4] and outcomes[4].modseq is None
    assert all(isinstance(e, MessagesChanged) for e in events)
    assert [(e.uids, e.modseq) for e in events] == [((1, 2), modseqs[0]), ((2, 3), modseqs[1]), ((2,), modseqs[3])]
    stored = {m.uid: m for m in await view.messages(inbox, [(1, None)])}
    assert [stored[u].flags for u in (1, 2, 3, 4)] == [("$One",), ("\\Seen", "$Two"), ("\\Seen", "$Two"), ()]
    assert stored[2].modseq == modseqs[3]
    assert (await runtime.mailstore.folder_by_path(alice, "INBOX")).unseen_count == 2
    assert [m.flags for m in await view.messages(bob_inbox, [(1, None)])] == [("\\Flagged",), ("\\Flagged",)]


async def test_a_store_into_a_deleted_folder_fails_alone(runtime: Runtime) -> None:
    view = ImapView(runtime.mailstore)
    alice, inbox = await _user_with_messages(runtime, "alice", 2)
    archive = await runtime.mailstore.create_folder(alice, "Projects")
    await runtime.mailstore.delete_folder(alice, archive)
    results = await asyncio.gather(
        view.store_flags(alice, archive, [(1, None)], "add", ["\\Seen"]),
        view.store_flags(alice, inbox, [(1, None)], "add", ["\\Seen"]),
        return_exceptions=True,
    )
    assert isinstance(results[0], NotFound)
    assert not isinstance(results[1], BaseException) and results[1].modseq is not None
    # Another user's folder is no folder of this user's.
    _, bob_inbox = await _user_with_messages(runtime, "bob", 1)
    with pytest.raises(NotFound):
        await view.store_flags(alice, bob_inbox, [(1, None)], "add", ["\\Seen"])
    assert [m.flags for m in await view.messages(bob_inbox, [(1, None)])] == [()]
