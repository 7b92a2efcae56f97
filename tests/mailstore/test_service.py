"""The mailstore service called directly: the append path, events, garbage collection
of messages and blobs, and counters that always agree with a recount."""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import func, select

from postern.accounts.service import NewUser
from postern.errors import DomainError, NotFound, NotPermitted, OverQuota, TooLarge
from postern.events import (
    Event,
    FolderCreated,
    FolderDeleted,
    FolderRenamed,
    MessageAdded,
    MessagesChanged,
    MessagesExpunged,
)
from postern.mailstore.service import AppendRequest, AppendResult, MailStore
from postern.serve.runtime import Runtime
from postern.storage import messages as message_store
from postern.storage.folders import UNCLEAN_STOP_MARGIN
from postern.storage.ids import now_ms
from postern.storage.schema import blobs, folders, messages, users
from tests.helpers import make_message

UNKNOWN_ID = "0123456789abcdef01234567"


# Helpers -------------------------------------------------------------------------------


async def new_user(runtime: Runtime, username: str = "alice", **fields: Any) -> str:
    return await runtime.accounts.create_user(NewUser(username=username, password=None, **fields))


async def folder(runtime: Runtime, user: str, path: str = "INBOX") -> str:
    return (await runtime.mailstore.folder_by_path(user, path)).id


async def refcount(runtime: Runtime, key: str) -> int | None:
    async with runtime.db.read() as conn:
        row = (await conn.execute(select(blobs.c.refcount).where(blobs.c.key == key))).first()
    return None if row is None else int(row.refcount)


async def storage_used(runtime: Runtime, user: str) -> int:
    async with runtime.db.read() as conn:
        return int(await conn.scalar(select(users.c.storage_used).where(users.c.id == user)))


async def folder_uids(runtime: Runtime, folder_id: str) -> list[int]:
    async with runtime.db.read() as conn:
        return list((await conn.scalars(select(messages.c.uid).where(messages.c.folder_id == folder_id).order_by(messages.c.uid))).all())


def key_of(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def drain(subscription: Any) -> list[Event]:
    events = []
    while not subscription.queue.empty():
        events.append(subscription.queue.get_nowait())
    return events


async def assert_consistent(runtime: Runtime, user: str) -> None:
    """Every folder's counters equal a recount; the user's usage and every blob's
    reference count equal what the message rows say."""
    async with runtime.db.read() as conn:
        rows = list(await conn.execute(select(folders).where(folders.c.user_id == user)))
        for row in rows:
            recount = await message_store.count_messages(conn, row.id)
            assert (row.message_count, row.unseen_count, row.size_total) == recount, row.path
        used = await conn.scalar(select(func.coalesce(func.sum(messages.c.size), 0)).where(messages.c.user_id == user))
        assert await conn.scalar(select(users.c.storage_used).where(users.c.id == user)) == used
        refs = dict((await conn.execute(select(messages.c.blob_key, func.count()).group_by(messages.c.blob_key))).all())
        counted = dict((await conn.execute(select(blobs.c.key, blobs.c.refcount))).all())
        for key, count in refs.items():
            assert counted.get(key) == count, key
        for key, count in counted.items():
            assert count == refs.get(key, 0), key


# append_many -----------------------------------------------------------------------------


async def test_append_returns_the_stored_message(runtime: Runtime) -> None:
    user = await new_user(runtime)
    inbox = await folder(runtime, user)
    raw = make_message("service")
    result = await runtime.mailstore.append(user, inbox, raw, ["\\Seen"])
    assert isinstance(result, AppendResult)
    assert (result.user_id, result.folder_id, result.uid, result.size, result.blob_key) == (user, inbox, 1, len(raw), key_of(raw))
    row = await runtime.mailstore.get_message(user, inbox, 1)
    assert row.modseq == result.modseq
    assert row.seen is True
    assert await runtime.mailstore.message_bytes(row) == raw
    folder_row = await runtime.mailstore.get_folder(user, inbox)
    assert folder_row.uidvalidity == result.uidvalidity
    assert folder_row.modseq >= result.modseq
    assert await runtime.blobs.get(result.blob_key) == raw


@pytest.mark.parametrize(
    ("flags", "expected", "keywords"),
    [
        ([], {"seen": False, "flagged": False, "draft": False, "deleted": False, "answered": False}, []),
        (["\\Seen", "\\Flagged"], {"seen": True, "flagged": True, "draft": False, "deleted": False, "answered": False}, []),
        (["\\SEEN", "\\draft", "\\ANSWERED"], {"seen": True, "flagged": False, "draft": True, "deleted": False, "answered": True}, []),
        (["\\Deleted", "$Label1", "$Label1", "Work"], {"seen": False, "flagged": False, "draft": False, "deleted": True, "answered": False}, ["$Label1", "Work"]),
        (["\\Recent", "\\Unknown"], {"seen": False, "flagged": False, "draft": False, "deleted": False, "answered": False}, []),
    ],
)
async def test_append_flags(runtime: Runtime, flags: list[str], expected: dict[str, bool], keywords: list[str]) -> None:
    import orjson

    user = await new_user(runtime)
    inbox = await folder(runtime, user)
    await runtime.mailstore.append(user, inbox, make_message(), flags)
    row = await runtime.mailstore.get_message(user, inbox, 1)
    assert {name: getattr(row, name) for name in expected} == expected
    assert orjson.loads(row.keywords) == keywords
    assert (await runtime.mailstore.get_folder(user, inbox)).unseen_count == (0 if expected["seen"] else 1)


async def test_append_many_mixed_requests(runtime: Runtime) -> None:
    alice = await new_user(runtime, "alice")
    small = await new_user(runtime, "small", quota=300)
    inbox = await folder(runtime, alice)
    archive = await folder(runtime, alice, "Archive")
    small_inbox = await folder(runtime, small)
    good = [make_message(f"good {i}") for i in range(4)]
    bad_folder = make_message("lost 1")
    bad_user = make_message("lost 2")
    foreign = make_message("lost 3")
    fits = make_message("fits", "a" * 50 + "\r\n")
    over = make_message("over", "b" * 100 + "\r\n")
    assert len(fits) <= 300 < len(fits) + len(over)
    requests = [
        AppendRequest(alice, inbox, good[0]),
        AppendRequest(alice, UNKNOWN_ID, bad_folder),
        AppendRequest(alice, archive, good[1], ["\\Seen"]),
        AppendRequest(small, small_inbox, fits),
        AppendRequest(small, small_inbox, over),
        AppendRequest(UNKNOWN_ID, inbox, bad_user),
        AppendRequest(alice, small_inbox, foreign),
        AppendRequest(alice, "not-an-id", bad_folder),
        AppendRequest(alice, inbox, good[2]),
        AppendRequest(alice, inbox, good[3]),
    ]
    with runtime.bus.subscribe(alice) as alice_events, runtime.bus.subscribe(small) as small_events:
        results = await runtime.mailstore.append_many(requests)
    assert len(results) == len(requests)
    ok = [r for r in results if isinstance(r, AppendResult)]
    assert [(r.folder_id, r.uid) for r in ok] == [(inbox, 1), (archive, 1), (small_inbox, 1), (inbox, 2), (inbox, 3)]
    for index in (1, 7):
        assert isinstance(results[index], NotFound) and results[index].code == "NoSuchMailbox"
    assert isinstance(results[5], NotFound) and results[5].code == "UserNotFound"
    assert isinstance(results[6], NotFound) and results[6].code == "NoSuchMailbox"
    assert isinstance(results[4], OverQuota)
    # The good ones are stored, the others left nothing behind but (at most) orphan blobs.
    assert await folder_uids(runtime, inbox) == [1, 2, 3]
    assert await folder_uids(runtime, archive) == [1]
    assert await folder_uids(runtime, small_inbox) == [1]
    assert await storage_used(runtime, alice) == sum(len(g) for g in good)
    assert await storage_used(runtime, small) == len(fits)
    for raw in (bad_folder, bad_user, foreign, over):
        assert await refcount(runtime, key_of(raw)) is None
    for raw in good:
        assert await refcount(runtime, key_of(raw)) == 1
    await assert_consistent(runtime, alice)
    await assert_consistent(runtime, small)
    assert [(e.folder_id, e.uid) for e in drain(alice_events)] == [(inbox, 1), (archive, 1), (inbox, 2), (inbox, 3)]
    assert [(e.folder_id, e.uid) for e in drain(small_events)] == [(small_inbox, 1)]
    # The orphans are swept and collected; the stored messages keep their bytes.
    assert await runtime.mailstore.sweep_orphan_blobs() == 4
    _, removed = await runtime.mailstore.collect_garbage()
    assert removed == 4
    assert sorted([k async for k in runtime.blobs.keys()]) == sorted(key_of(r) for r in [*good, fits])


async def test_append_many_quota_within_one_batch(runtime: Runtime) -> None:
    raws = [make_message(f"q{i}", "x" * 100 + "\r\n") for i in range(3)]
    user = await new_user(runtime, quota=len(raws[0]) * 2)
    inbox = await folder(runtime, user)
    results = await runtime.mailstore.append_many([AppendRequest(user, inbox, raw) for raw in raws])
    assert [type(r) for r in results] == [AppendResult, AppendResult, OverQuota]
    assert await storage_used(runtime, user) == len(raws[0]) * 2
    await assert_consistent(runtime, user)


async def test_append_too_large(runtime: Runtime) -> None:
    user = await new_user(runtime)
    inbox = await folder(runtime, user)
    store = MailStore(runtime.db, runtime.blobs, runtime.bus, max_message_size=500)
    small = make_message("small")
    large = make_message("large", "z" * 600)
    results = await store.append_many([AppendRequest(user, inbox, large), AppendRequest(user, inbox, small)])
    assert isinstance(results[0], TooLarge)
    assert isinstance(results[1], AppendResult) and results[1].uid == 1
    assert not await runtime.blobs.exists(key_of(large))
    with pytest.raises(TooLarge):
        await store.append(user, inbox, large)
    await assert_consistent(runtime, user)


async def test_append_raises_for_a_single_failure(runtime: Runtime) -> None:
    user = await new_user(runtime)
    with pytest.raises(NotFound):
        await runtime.mailstore.append(user, UNKNOWN_ID, make_message())
    with pytest.raises(NotFound):
        await runtime.mailstore.append(UNKNOWN_ID, UNKNOWN_ID, make_message())


async def test_append_many_empty(runtime: Runtime) -> None:
    assert await runtime.mailstore.append_many([]) == []


async def test_append_many_same_bytes_in_one_batch(runtime: Runtime) -> None:
    user = await new_user(runtime)
    inbox = await folder(runtime, user)
    raw = make_message("dup")
    results = await runtime.mailstore.append_many([AppendRequest(user, inbox, raw) for _ in range(3)])
    assert [r.uid for r in results if isinstance(r, AppendResult)] == [1, 2, 3]
    assert await refcount(runtime, key_of(raw)) == 3
    assert [k async for k in runtime.blobs.keys()] == [key_of(raw)]
    await assert_consistent(runtime, user)


# Events -------------------------------------------------------------------------------------


@pytest.fixture
def journal(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Records write transactions (begin, commit, rollback) and publications, in order;
    a publication while a write transaction is open fails the test at once."""
    log: list[tuple[str, Any]] = []
    state = {"open": 0}
    original_write = runtime.db.write
    original_publish = runtime.bus.publish

    @asynccontextmanager
    async def write() -> AsyncIterator[Any]:
        state["open"] += 1
        log.append(("begin", None))
        try:
            async with original_write() as conn:
                yield conn
        except BaseException:
            state["open"] -= 1
            log.append(("rollback", None))
            raise
        state["open"] -= 1
        log.append(("commit", None))

    def publish(events: Any) -> None:
        events = list(events)
        assert state["open"] == 0, f"published inside a transaction: {events}"
        if events:
            log.append(("publish", events))
        original_publish(events)

    monkeypatch.setattr(runtime.db, "write", write)
    monkeypatch.setattr(runtime.bus, "publish", publish)
    return log


def published(log: list[tuple[str, Any]]) -> list[Event]:
    return [event for kind, events in log if kind == "publish" for event in events]


def assert_published_after_commit(log: list[tuple[str, Any]]) -> None:
    last = None
    for kind, _ in log:
        if kind == "publish":
            assert last == "commit", log
        elif kind in ("begin", "commit", "rollback"):
            last = kind


async def test_message_events(runtime: Runtime, journal: list[tuple[str, Any]]) -> None:
    user = await new_user(runtime)
    other_user = await new_user(runtime, "bob")
    inbox = await folder(runtime, user)
    archive = await folder(runtime, user, "Archive")
    store = runtime.mailstore
    with runtime.bus.subscribe(user) as sub, runtime.bus.subscribe(other_user) as other:
        added = [await store.append(user, inbox, make_message(f"e{i}")) for i in range(4)]
        events = drain(sub)
        assert events == [MessageAdded(user, inbox, r.uid, r.modseq) for r in added]
        assert [e.uid for e in events] == [1, 2, 3, 4]
        assert [e.modseq for e in events] == sorted({e.modseq for e in events})  # strictly ascending
        for result in added:
            assert (await store.get_message(user, inbox, result.uid)).modseq == result.modseq

        matched, moved = await store.update_messages(user, inbox, [(1, 2)], flags={"seen": True})
        assert (matched, moved) == (2, None)
        [changed] = drain(sub)
        assert isinstance(changed, MessagesChanged)
        assert (changed.folder_id, changed.uids) == (inbox, (1, 2))
        folder_row = await store.get_folder(user, inbox)
        assert changed.modseq == folder_row.modseq > added[-1].modseq
        for uid in (1, 2):
            assert (await store.get_message(user, inbox, uid)).modseq == changed.modseq
        assert (await store.get_message(user, inbox, 3)).modseq == added[2].modseq

        # Setting flags to the values they have changes no message: no event.
        await store.update_messages(user, inbox, [(1, 2)], flags={"seen": True})
        assert drain(sub) == []

        await store.update_messages(user, inbox, [(3, 3)], flags={}, expires_ms=now_ms() + 10**9)
        [changed] = drain(sub)
        assert isinstance(changed, MessagesChanged) and changed.uids == (3,)

        _, moved = await store.update_messages(user, inbox, [(2, 3)], flags={}, move_to=archive)
        assert moved == [(2, 1), (3, 2)]
        events = drain(sub)
        expunged = [e for e in events if isinstance(e, MessagesExpunged)]
        arrived = [e for e in events if isinstance(e, MessageAdded)]
        assert len(expunged) == 1 and len(events) == 3
        assert (expunged[0].folder_id, expunged[0].uids) == (inbox, (2, 3))
        assert expunged[0].modseq == (await store.get_folder(user, inbox)).modseq
        assert [(e.folder_id, e.uid) for e in arrived] == [(archive, 1), (archive, 2)]
        for event in arrived:
            assert (await store.get_message(user, archive, event.uid)).modseq == event.modseq

        await store.delete_messages(user, inbox, [4])
        [gone] = drain(sub)
        assert isinstance(gone, MessagesExpunged)
        assert (gone.folder_id, gone.uids) == (inbox, (4,))
        assert gone.modseq == (await store.get_folder(user, inbox)).modseq

        assert drain(other) == []
    assert_published_after_commit(journal)


async def test_folder_events(runtime: Runtime, journal: list[tuple[str, Any]]) -> None:
    user = await new_user(runtime)
    store = runtime.mailstore
    with runtime.bus.subscribe(user) as sub:
        leaf = await store.create_folder(user, "A/B/C")
        events = drain(sub)
        assert all(isinstance(e, FolderCreated) for e in events)
        assert [e.path for e in events] == ["A", "A/B", "A/B/C"]
        assert events[-1].folder_id == leaf
        a = events[0].folder_id

        await store.create_folder(user, "A/D")
        assert [(type(e), e.path) for e in drain(sub)] == [(FolderCreated, "A/D")]

        await store.update_folder(user, a, path="X/Y")
        events = drain(sub)
        renamed = sorted((e.old_path, e.path) for e in events if isinstance(e, FolderRenamed))
        assert renamed == [("A", "X/Y"), ("A/B", "X/Y/B"), ("A/B/C", "X/Y/B/C"), ("A/D", "X/Y/D")]
        assert [e.path for e in events if isinstance(e, FolderCreated)] == ["X"]

        await store.update_folder(user, a, subscribed=False)
        assert drain(sub) == []

        await store.delete_folder(user, leaf)
        assert drain(sub) == [FolderDeleted(user, leaf, "X/Y/B/C")]
    assert_published_after_commit(journal)


async def test_failures_publish_nothing(runtime: Runtime, journal: list[tuple[str, Any]]) -> None:
    user = await new_user(runtime)
    store = runtime.mailstore
    inbox = await folder(runtime, user)
    await store.append(user, inbox, make_message())
    await store.create_folder(user, "Exists")
    journal.clear()
    with runtime.bus.subscribe(user) as sub:
        # WildDuck's answer for protected folders: 400 NotPermitted (issue 17).
        with pytest.raises(NotPermitted):
            await store.delete_folder(user, inbox)
        with pytest.raises(DomainError):
            await store.create_folder(user, "Exists")
        with pytest.raises(NotPermitted):
            await store.update_folder(user, inbox, path="Elsewhere")
        with pytest.raises(NotFound):
            await store.update_messages(user, inbox, [(1, 1)], flags={"seen": True}, move_to=UNKNOWN_ID)
        with pytest.raises(NotFound):
            await store.update_messages(user, inbox, [(5, 9)], flags={"seen": True})
        with pytest.raises(NotFound):
            await store.delete_messages(user, inbox, [7])
        assert drain(sub) == []
    assert published(journal) == []
    # The failed move rolled back its flag change too.
    assert (await store.get_message(user, inbox, 1)).seen is False


async def test_subscription_closes(runtime: Runtime) -> None:
    user = await new_user(runtime)
    inbox = await folder(runtime, user)
    sub = runtime.bus.subscribe(user)
    sub.close()
    await runtime.mailstore.append(user, inbox, make_message())
    assert sub.queue.empty()


# Garbage collection ------------------------------------------------------------------------


async def expire(runtime: Runtime, user: str, folder_id: str, uid: int, when: int | None = None) -> None:
    await runtime.mailstore.update_messages(user, folder_id, [(uid, uid)], flags={}, expires_ms=when if when is not None else now_ms() - 1000)


async def test_collect_garbage_expires_messages_and_removes_blobs(runtime: Runtime) -> None:
    user = await new_user(runtime)
    inbox = await folder(runtime, user)
    doomed = make_message("doomed")
    future = make_message("future")
    kept = make_message("kept")
    for raw in (doomed, future, kept):
        await runtime.mailstore.append(user, inbox, raw)
    await expire(runtime, user, inbox, 1)
    await expire(runtime, user, inbox, 2, now_ms() + 3600_000)
    with runtime.bus.subscribe(user) as sub:
        expired, removed = await runtime.mailstore.collect_garbage()
        assert (expired, removed) == (1, 1)
        [event] = drain(sub)
        assert isinstance(event, MessagesExpunged) and event.uids == (1,)
    assert await folder_uids(runtime, inbox) == [2, 3]
    assert not await runtime.blobs.exists(key_of(doomed))
    assert await refcount(runtime, key_of(doomed)) is None
    assert await runtime.blobs.get(key_of(future)) == future
    assert await storage_used(runtime, user) == len(future) + len(kept)
    await assert_consistent(runtime, user)
    # Nothing more to do the second time.
    assert await runtime.mailstore.collect_garbage() == (0, 0)


async def test_collect_garbage_keeps_blobs_still_referenced(runtime: Runtime) -> None:
    alice = await new_user(runtime, "alice")
    bob = await new_user(runtime, "bob")
    raw = make_message("shared")
    a_inbox = await folder(runtime, alice)
    b_inbox = await folder(runtime, bob)
    a_archive = await folder(runtime, alice, "Archive")
    await runtime.mailstore.append(alice, a_inbox, raw)
    await runtime.mailstore.append(alice, a_archive, raw)
    await runtime.mailstore.append(bob, b_inbox, raw)
    assert await refcount(runtime, key_of(raw)) == 3
    await expire(runtime, alice, a_inbox, 1)
    await runtime.mailstore.delete_messages(alice, a_archive, [1])
    assert await runtime.mailstore.collect_garbage() == (1, 0)
    assert await refcount(runtime, key_of(raw)) == 1
    assert await runtime.blobs.get(key_of(raw)) == raw
    row = await runtime.mailstore.get_message(bob, b_inbox, 1)
    assert await runtime.mailstore.message_bytes(row) == raw
    await runtime.mailstore.delete_messages(bob, b_inbox, [1])
    assert await runtime.mailstore.collect_garbage() == (0, 1)
    assert not await runtime.blobs.exists(key_of(raw))


async def test_collect_garbage_in_batches(runtime: Runtime) -> None:
    user = await new_user(runtime)
    inbox = await folder(runtime, user)
    archive = await folder(runtime, user, "Archive")
    for i in range(7):
        await runtime.mailstore.append(user, inbox if i % 2 else archive, make_message(f"b{i}"))
    await runtime.mailstore.update_messages(user, inbox, [(1, None)], flags={}, expires_ms=now_ms() - 1)
    await runtime.mailstore.update_messages(user, archive, [(1, None)], flags={}, expires_ms=now_ms() - 1)
    total_expired = total_removed = 0
    for _ in range(10):
        expired, removed = await runtime.mailstore.collect_garbage(batch=2)
        total_expired += expired
        total_removed += removed
        if (expired, removed) == (0, 0):
            break
    assert (total_expired, total_removed) == (7, 7)
    assert [k async for k in runtime.blobs.keys()] == []
    await assert_consistent(runtime, user)


async def test_retention_expiry_is_collected(runtime: Runtime) -> None:
    user = await new_user(runtime)
    short = await runtime.mailstore.create_folder(user, "Short", retention_ms=1)
    await runtime.mailstore.append(user, short, make_message("brief"), internal_ms=now_ms() - 10_000)
    assert await runtime.mailstore.collect_garbage() == (1, 1)
    assert await folder_uids(runtime, short) == []


async def test_bytes_collected_then_appended_again_are_readable(runtime: Runtime) -> None:
    user = await new_user(runtime)
    inbox = await folder(runtime, user)
    raw = make_message("phoenix")
    await runtime.mailstore.append(user, inbox, raw)
    await runtime.mailstore.delete_messages(user, inbox, [1])
    assert await runtime.mailstore.collect_garbage() == (0, 1)
    assert not await runtime.blobs.exists(key_of(raw))
    result = await runtime.mailstore.append(user, inbox, raw)
    row = await runtime.mailstore.get_message(user, inbox, result.uid)
    assert await runtime.mailstore.message_bytes(row) == raw
    assert await refcount(runtime, key_of(raw)) == 1


async def test_append_racing_the_collector_keeps_its_bytes(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """put_many() finds the file, then the collector deletes the row and the file
    before the append's transaction: the append must write the file again."""
    user = await new_user(runtime)
    inbox = await folder(runtime, user)
    raw = make_message("race")
    await runtime.mailstore.append(user, inbox, raw)
    await runtime.mailstore.delete_messages(user, inbox, [1])
    assert await refcount(runtime, key_of(raw)) == 0
    assert await runtime.blobs.exists(key_of(raw))

    original = runtime.mailstore.blobs.put_many
    collected: list[tuple[int, int]] = []

    async def put_many_then_collect(items: Any) -> list[str]:
        keys = await original(items)
        if not collected:
            collected.append(await runtime.mailstore.collect_garbage())
        return keys

    monkeypatch.setattr(runtime.mailstore.blobs, "put_many", put_many_then_collect)
    result = await runtime.mailstore.append(user, inbox, raw)
    assert collected == [(0, 1)]  # the collector did remove row and file in between
    row = await runtime.mailstore.get_message(user, inbox, result.uid)
    assert await runtime.mailstore.message_bytes(row) == raw
    assert await runtime.blobs.get(key_of(raw)) == raw
    assert await refcount(runtime, key_of(raw)) == 1
    # And the collector leaves it alone from now on.
    assert await runtime.mailstore.collect_garbage() == (0, 0)
    assert await runtime.blobs.exists(key_of(raw))


async def test_append_revives_unreferenced_row(runtime: Runtime) -> None:
    user = await new_user(runtime)
    inbox = await folder(runtime, user)
    raw = make_message("revived")
    await runtime.mailstore.append(user, inbox, raw)
    await runtime.mailstore.delete_messages(user, inbox, [1])
    assert await refcount(runtime, key_of(raw)) == 0
    await runtime.mailstore.append(user, inbox, raw)
    assert await refcount(runtime, key_of(raw)) == 1
    assert await runtime.mailstore.collect_garbage() == (0, 0)
    assert await runtime.blobs.get(key_of(raw)) == raw


async def test_sweep_orphan_blobs(runtime: Runtime) -> None:
    user = await new_user(runtime)
    inbox = await folder(runtime, user)
    stored = make_message("stored")
    await runtime.mailstore.append(user, inbox, stored)
    orphan_keys = [await runtime.blobs.put(b"orphan %d" % i) for i in range(3)]
    # Not yet known to any row: the collector alone does not see them.
    assert await runtime.mailstore.collect_garbage() == (0, 0)
    assert all([await runtime.blobs.exists(k) for k in orphan_keys])
    assert await runtime.mailstore.sweep_orphan_blobs() == 3
    for key in orphan_keys:
        assert await refcount(runtime, key) == 0
    # A second sweep finds nothing new.
    assert await runtime.mailstore.sweep_orphan_blobs() == 0
    assert await runtime.mailstore.collect_garbage() == (0, 3)
    for key in orphan_keys:
        assert not await runtime.blobs.exists(key)
        assert await refcount(runtime, key) is None
    assert await runtime.blobs.get(key_of(stored)) == stored
    assert await refcount(runtime, key_of(stored)) == 1


async def test_swept_orphan_appended_before_collection_survives(runtime: Runtime) -> None:
    user = await new_user(runtime)
    inbox = await folder(runtime, user)
    raw = make_message("late commit")
    await runtime.blobs.put(raw)
    assert await runtime.mailstore.sweep_orphan_blobs() == 1
    await runtime.mailstore.append(user, inbox, raw)
    assert await refcount(runtime, key_of(raw)) == 1
    assert await runtime.mailstore.collect_garbage() == (0, 0)
    row = await runtime.mailstore.get_message(user, inbox, 1)
    assert await runtime.mailstore.message_bytes(row) == raw


async def test_delete_folder_releases_everything(runtime: Runtime) -> None:
    user = await new_user(runtime)
    inbox = await folder(runtime, user)
    doomed = await runtime.mailstore.create_folder(user, "Doomed")
    shared = make_message("shared")
    alone = make_message("alone")
    await runtime.mailstore.append(user, inbox, shared)
    await runtime.mailstore.append(user, doomed, shared)
    await runtime.mailstore.append(user, doomed, alone)
    await runtime.mailstore.delete_folder(user, doomed)
    assert await storage_used(runtime, user) == len(shared)
    assert await refcount(runtime, key_of(shared)) == 1
    assert await refcount(runtime, key_of(alone)) == 0
    assert await runtime.mailstore.collect_garbage() == (0, 1)
    assert await runtime.blobs.exists(key_of(shared))
    await assert_consistent(runtime, user)


# Counters always agree with a recount ------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_counters_match_recount_after_random_operations(runtime: Runtime, seed: int) -> None:
    rng = random.Random(seed)
    store = runtime.mailstore
    user = await new_user(runtime, quota=10**9)
    folder_ids = [await folder(runtime, user), await folder(runtime, user, "Archive"), await store.create_folder(user, "Work/Projects")]
    # A few distinct bodies, so that blobs are shared between messages.
    bodies = [make_message(f"body {i}", "text " * rng.randint(1, 50) + "\r\n") for i in range(6)]
    present: dict[str, set[int]] = {f: set() for f in folder_ids}

    def some_uids(folder_id: str) -> list[tuple[int, int | None]]:
        uids = sorted(present[folder_id])
        shape = rng.random()
        if not uids or shape < 0.2:
            return [(rng.randint(1, 60), None)]
        if shape < 0.6:
            picked = rng.sample(uids, rng.randint(1, min(4, len(uids))))
            return [(u, u) for u in picked]
        low = rng.choice(uids)
        return [(low, low + rng.randint(0, 5))]

    def selected(folder_id: str, ranges: list[tuple[int, int | None]]) -> set[int]:
        return {u for u in present[folder_id] for start, end in ranges if start <= u and (end is None or u <= end)}

    for step in range(60):
        action = rng.choices(["append", "batch", "flags", "move", "delete", "expire"], weights=[5, 1, 4, 2, 2, 1])[0]
        source = rng.choice(folder_ids)
        if action == "append":
            flags = ["\\Seen"] if rng.random() < 0.5 else []
            result = await store.append(user, source, rng.choice(bodies), flags)
            present[source].add(result.uid)
        elif action == "batch":
            requests = [AppendRequest(user, rng.choice(folder_ids), rng.choice(bodies), rng.choice([[], ["\\Seen"]])) for _ in range(rng.randint(2, 5))]
            for result in await store.append_many(requests):
                assert isinstance(result, AppendResult)
                present[result.folder_id].add(result.uid)
        elif action == "flags":
            ranges = some_uids(source)
            flag_values = {name: rng.random() < 0.5 for name in rng.sample(["seen", "flagged", "deleted"], rng.randint(1, 3))}
            if selected(source, ranges):
                await store.update_messages(user, source, ranges, flags=flag_values)
            else:
                with pytest.raises(NotFound):
                    await store.update_messages(user, source, ranges, flags=flag_values)
        elif action == "move":
            ranges = some_uids(source)
            target = rng.choice([f for f in folder_ids if f != source])
            hit = selected(source, ranges)
            if hit:
                _, pairs = await store.update_messages(user, source, ranges, flags={"seen": True} if rng.random() < 0.3 else {}, move_to=target)
                assert pairs is not None and sorted(old for old, _ in pairs) == sorted(hit)
                present[source] -= hit
                present[target] |= {new for _, new in pairs}
            else:
                with pytest.raises(NotFound):
                    await store.update_messages(user, source, ranges, flags={}, move_to=target)
        elif action == "delete":
            if present[source]:
                uid = rng.choice(sorted(present[source]))
                assert await store.delete_messages(user, source, [uid]) == 1
                present[source].discard(uid)
        else:
            if present[source]:
                uid = rng.choice(sorted(present[source]))
                await expire(runtime, user, source, uid)
                expired, _ = await store.collect_garbage()
                assert expired == 1
                present[source].discard(uid)
        for folder_id in folder_ids:
            assert set(await folder_uids(runtime, folder_id)) == present[folder_id], (step, action)
        await assert_consistent(runtime, user)

    # Whatever is left, its bytes are readable, and collection keeps them.
    await store.collect_garbage()
    for folder_id in folder_ids:
        for uid in present[folder_id]:
            row = await store.get_message(user, folder_id, uid)
            assert await store.message_bytes(row) in bodies
    await assert_consistent(runtime, user)


async def test_counters_move_on_after_an_unclean_stop(runtime: Runtime) -> None:
    """Every folder of every user moves on by the margin and the largest folder's
    message count; the next append takes the next UID and MODSEQ after the gap."""
    alice, bob = await new_user(runtime, "alice"), await new_user(runtime, "bob")
    alice_inbox, bob_inbox = await folder(runtime, alice), await folder(runtime, bob)
    for n in range(3):
        await runtime.mailstore.append(alice, alice_inbox, make_message(f"alice {n}"))
    before = {f.id: (f.uid_next, f.modseq) for user in (alice, bob) for f in await runtime.mailstore.list_folders(user)}
    assert len(before) > 2  # every special-use folder of both users too

    gap = await runtime.mailstore.advance_counters_after_unclean_stop()
    assert gap == UNCLEAN_STOP_MARGIN + 3
    after = {f.id: (f.uid_next, f.modseq) for user in (alice, bob) for f in await runtime.mailstore.list_folders(user)}
    assert after == {id_: (uid_next + gap, modseq + gap) for id_, (uid_next, modseq) in before.items()}

    result = await runtime.mailstore.append(bob, bob_inbox, make_message("bob after the gap"))
    assert (result.uid, result.modseq) == (after[bob_inbox][0], after[bob_inbox][1] + 1)
    assert await folder_uids(runtime, alice_inbox) == [1, 2, 3]  # the messages themselves stay
    await assert_consistent(runtime, alice)
