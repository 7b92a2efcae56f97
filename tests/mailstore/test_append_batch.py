"""The batch append's statements on the driver's own connection (``storage/append_batch``:
sqlite3, inline or through aiosqlite's thread, and asyncpg) store exactly what the
same batches store through SQLAlchemy: the same outcomes, UIDs, MODSEQs, threads,
counters, usage, reference counts and rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from postern.mailstore.service import AppendRequest, AppendResult, MailStore
from postern.serve.runtime import Runtime
from postern.storage.append_batch import (
    AsyncpgRows,
    SqlAlchemyRows,
    SqliteRows,
    append_rows,
)
from postern.storage.database import Database
from postern.storage.schema import (
    blobs,
    folders,
    message_events,
    messages,
    thread_refs,
    threads,
    users,
)
from tests.helpers import make_message
from tests.mailstore.test_service import (
    UNKNOWN_ID,
    assert_consistent,
    folder,
    key_of,
    new_user,
)

LONG_REF = "<" + "r" * 300 + "@example.org>"


def message(tag: str, subject: str, message_id: str, body: str = "Hi there.\r\n", **headers: str) -> bytes:
    # The tag makes every set's bytes its own (blobs are shared by content).
    return make_message(subject, f"{body}{tag}\r\n", Message_ID=message_id, **headers)


async def store_script(mailstore: MailStore, runtime: Runtime, tag: str) -> dict[str, Any]:
    """The same batches for a new set of users; what they left, without ids or times."""
    alice = await new_user(runtime, f"alice-{tag}")
    small = await new_user(runtime, f"small-{tag}", quota=900)
    inbox, archive, small_inbox = await folder(runtime, alice), await folder(runtime, alice, "Archive"), await folder(runtime, small)
    first = message(tag, "Hello", "<a@x>")
    batches = [
        [
            AppendRequest(alice, inbox, first, ["\\Seen", "$label", "$label"]),
            AppendRequest(alice, inbox, message(tag, "Re: Hello", "<b@x>", In_Reply_To="<a@x>")),  # joins by reference
            AppendRequest(alice, inbox, message(tag, "Re: Hello", "<c@x>")),  # joins by subject, in the batch
            AppendRequest(alice, None, first, folder_path="Archive", prefix=b"Delivered-To: a\r\n"),  # the same blob again
            AppendRequest(alice, UNKNOWN_ID, message(tag, "lost", "<d@x>")),
            AppendRequest(alice, None, message(tag, "nowhere", "<e@x>"), folder_path="No such"),
            AppendRequest(alice, inbox, message(tag, "Long", "<f@x>", References=LONG_REF)),
            AppendRequest(small, small_inbox, message(tag, "fits", "<g@x>", "a" * 300 + "\r\n"), event={"source": "LMTP"}),
            AppendRequest(small, small_inbox, message(tag, "over", "<h@x>", "b" * 400 + "\r\n")),
            AppendRequest(small, small_inbox, message(tag, "grace", "<i@x>", "c" * 400 + "\r\n"), quota_grace=True),
        ],
        [
            AppendRequest(alice, archive, message(tag, "Re: Long", "<j@x>", References=LONG_REF)),  # the cut ref
            AppendRequest(alice, inbox, message(tag, "RE: hello", "<k@x>")),  # a stored thread, by subject
            AppendRequest(alice, inbox, message(tag, "Other", "<a@x>")),  # a known Message-ID
        ],
    ]
    outcomes: list[Any] = []
    for batch in batches:
        staged = [await mailstore.stage([request]) for request in batch]
        for results in await mailstore.commit(staged):
            outcome = results[0]
            outcomes.append(
                (outcome.folder_id == inbox, outcome.uid, outcome.modseq, outcome.size)
                if isinstance(outcome, AppendResult)
                else (type(outcome).__name__, getattr(outcome, "code", None))
            )
    await assert_consistent(runtime, alice)
    await assert_consistent(runtime, small)
    folder_name = {inbox: "INBOX", archive: "Archive", small_inbox: "small"}
    async with runtime.db.read() as conn:
        rows = list(
            await conn.execute(
                select(messages).where(messages.c.user_id.in_([alice, small])).order_by(messages.c.folder_id, messages.c.uid)
            )
        )
        thread_number: dict[str, int] = {}
        stored = []
        for row in sorted(rows, key=lambda r: (folder_name[r.folder_id], r.uid)):
            values = dict(row._mapping)
            values["folder_id"] = folder_name[values["folder_id"]]
            values["thread_id"] = thread_number.setdefault(values["thread_id"], len(thread_number))
            values["blob_key"] = values["blob_key"] == key_of(first)
            for name in ("user_id", "mid", "internal_ms"):
                values.pop(name)
            values["prefix"] = bytes(values["prefix"])
            values["intro"] = values["intro"].replace(tag, "TAG")
            stored.append(values)
        refs = sorted(
            (r.ref, thread_number[r.thread_id]) for r in await conn.execute(select(thread_refs).where(thread_refs.c.user_id == alice))
        )
        subjects = sorted(
            (thread_number[r.id], r.subject) for r in await conn.execute(select(threads).where(threads.c.user_id.in_([alice, small])))
        )
        counters = sorted(
            (folder_name.get(r.id, r.path), r.uid_next, r.modseq, r.message_count, r.unseen_count, r.size_total)
            for r in await conn.execute(select(folders).where(folders.c.user_id.in_([alice, small])))
        )
        usage = [r.storage_used for r in await conn.execute(select(users).where(users.c.id.in_([alice, small])).order_by(users.c.username))]
        first_refs = (await conn.execute(select(blobs.c.refcount, blobs.c.size).where(blobs.c.key == key_of(first)))).one()
        events = [
            (r.action, r.data)
            for r in await conn.execute(select(message_events).where(message_events.c.user_id.in_([alice, small])).order_by(message_events.c.created_ms))
        ]
    return {
        "outcomes": outcomes,
        "messages": stored,
        "refs": refs,
        "subjects": subjects,
        "counters": counters,
        "usage": usage,
        "first blob": tuple(first_refs),
        "events": events,
    }


async def test_driver_paths_store_what_sqlalchemy_stores(runtime: Runtime) -> None:
    mailstore = runtime.mailstore
    mailstore.fast_batches = False
    expected = await store_script(mailstore, runtime, "sqla")
    mailstore.fast_batches = True
    assert await store_script(mailstore, runtime, "drvr") == expected

    # What the mail workers use on SQLite: statements in the event loop's thread.
    inline = Database(runtime.settings.resolved_database_url, schema=runtime.settings.database_schema, inline=True)
    try:
        other = MailStore(inline, runtime.blobs, runtime.bus, runtime.settings.max_message_size)
        assert await store_script(other, runtime, "inln") == expected
    finally:
        await inline.close()

    # The script covers what it means to: threads joined every way, refusals kept apart.
    assert [o[0] for o in expected["outcomes"]] == [True, True, True, False, "NotFound", "NotFound", True, False, "OverQuota", False, False, True, True]
    threads_of = [m["thread_id"] for m in expected["messages"] if m["folder_id"] == "INBOX"]
    assert threads_of[0] == threads_of[1] == threads_of[2] == threads_of[4] == threads_of[5]
    assert expected["first blob"][0] == 2


async def test_each_database_gets_its_drivers_path(runtime: Runtime) -> None:
    async with runtime.db.write() as conn:
        rows = await append_rows(conn)
        assert isinstance(rows, SqliteRows if runtime.db.is_sqlite else AsyncpgRows)
        assert isinstance(await append_rows(conn, fast=False), SqlAlchemyRows)
    if runtime.db.is_sqlite:
        inline = Database(runtime.settings.resolved_database_url, inline=True)
        try:
            async with inline.write() as conn:
                rows = await append_rows(conn)
                assert isinstance(rows, SqliteRows) and rows._hop is None  # no thread at all
        finally:
            await inline.close()


async def test_driver_path_rolls_back_with_the_transaction(runtime: Runtime) -> None:
    """Statements on the driver's connection belong to ``write()``'s transaction: an
    error after them leaves nothing behind."""
    alice = await new_user(runtime)
    inbox = await folder(runtime, alice)

    class Boom(Exception):
        pass

    try:
        async with runtime.db.write() as conn:
            rows = await append_rows(conn)
            await rows.add_appends({inbox: (3, 3, 300)})
            await rows.add_usage({alice: 300})
            raise Boom
    except Boom:
        pass
    async with runtime.db.read() as conn:
        head = (await conn.execute(select(folders.c.uid_next, folders.c.message_count).where(folders.c.id == inbox))).one()
        used = await conn.scalar(select(users.c.storage_used).where(users.c.id == alice))
    assert tuple(head) == (1, 0) and used == 0
    result = await runtime.mailstore.append(alice, inbox, make_message())
    assert result.uid == 1
