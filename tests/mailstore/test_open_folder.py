"""What SELECT opens a folder with (``ImapView.open``), read in one snapshot: the
folder row, its UIDs, the first unseen one and the keywords in use; and the folder
APPEND looks up, and the UIDs added since a session last looked."""

from __future__ import annotations

import pytest

from postern.accounts.service import NewUser
from postern.errors import NotFound
from postern.mailstore.imap_view import ImapView
from postern.serve.runtime import Runtime
from tests.helpers import make_message


async def test_open_reads_uids_first_unseen_and_keywords(runtime: Runtime) -> None:
    view = ImapView(runtime.mailstore)
    user = await runtime.accounts.create_user(NewUser(username="alice", password=None))
    inbox = (await runtime.mailstore.folder_by_path(user, "INBOX")).id
    flags = [("\\Seen", "$Work"), ("\\Seen",), (), ("$Later", "$Work"), ("\\Flagged",)]
    for n, message_flags in enumerate(flags):
        await runtime.mailstore.append(user, inbox, make_message(f"m{n}"), message_flags)
    await runtime.mailstore.delete_messages(user, inbox, [1])

    opened = await view.open(user, "inbox")
    assert opened.folder.id == inbox and opened.folder.path == "INBOX" and opened.folder.subscribed is True
    assert opened.uids == [2, 3, 4, 5]
    assert opened.first_unseen_uid == 3
    assert opened.keywords == ["$Later", "$Work"]  # each once, in UID order
    assert opened.folder.uid_next == 6 and opened.folder.message_count == 4

    empty = await view.open(user, "Archive")
    assert (empty.uids, empty.first_unseen_uid, empty.keywords) == ([], None, [])
    assert await view.uids_after(inbox, 3) == [4, 5]
    assert (await view.folder_at(user, "inbox")).id == inbox


async def test_open_finds_only_the_users_own_folders(runtime: Runtime) -> None:
    view = ImapView(runtime.mailstore)
    alice = await runtime.accounts.create_user(NewUser(username="alice", password=None))
    await runtime.accounts.create_user(NewUser(username="bob", password=None))
    await runtime.mailstore.create_folder(alice, "Projects")
    bob = (await runtime.accounts.find_login("bob")).id  # type: ignore[union-attr]
    for path in ("Projects", "Nowhere"):
        with pytest.raises(NotFound):
            await view.open(bob, path)
        with pytest.raises(NotFound):
            await view.folder_at(bob, path)
    with pytest.raises(NotFound):
        await view.open("not an id", "INBOX")
