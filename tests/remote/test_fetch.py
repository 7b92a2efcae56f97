"""Fetching from Dovecot on loopback: IMAP and POP3, from_now and all, exactly once,
remote flags untouched, delete after fetch, UIDVALIDITY changes, a folder deleted
remotely, wrong passwords, the stop after days of failure, a message too large."""

from __future__ import annotations

import asyncio
import re

import httpx

from postern.serve.runtime import Runtime
from postern.storage.ids import now_ms
from tests.aliases import Person
from tests.remote.dovecot import Dovecot
from tests.remote.helpers import (
    connect,
    due_now,
    inbox,
    message,
    set_row,
    state,
    subjects,
)


def remote_flags(dovecot: Dovecot, login: str, folder: str = "INBOX") -> list[bytes]:
    client = dovecot.imap_client(login)
    try:
        _, count = client.select(folder, readonly=True)
        if count[0] == b"0":
            return []
        _, data = client.fetch("1:*", "(FLAGS)")
        return [d for d in data if d]
    finally:
        client.logout()


async def test_imap_from_now_fetches_new_mail_once_and_leaves_it_unread(
    api: httpx.AsyncClient, ann: Person, dovecot: Dovecot, remote_user: tuple[str, str], runtime: Runtime
) -> None:
    login, password = remote_user
    dovecot.append(login, message(1))  # there before: not fetched
    identity = await connect(api, ann, dovecot, login, password)
    assert identity["connected"] is True
    await asyncio.sleep(1.1)  # INTERNALDATE has whole seconds
    dovecot.append(login, message(2))
    dovecot.append(login, message(3))
    await runtime.remote_scheduler.fetch_once(identity["remote_identity_id"])
    assert (await state(api, ann, identity))["last_error"] is None
    assert await subjects(runtime, ann.user_id) == ["message 2", "message 3"]
    # Again: nothing new, nothing twice.
    await due_now(runtime, identity["remote_identity_id"])
    await runtime.remote_scheduler.fetch_once(identity["remote_identity_id"])
    assert await subjects(runtime, ann.user_id) == ["message 2", "message 3"]
    shown = await state(api, ann, identity)
    assert shown["connected"] is True and shown["is_fetching"] is False and shown["last_error"] is None
    assert shown["fetched_count"] == 2
    assert all(b"\\Seen" not in f for f in remote_flags(dovecot, login))
    stored = await inbox(runtime, ann.user_id)
    assert stored[0].endswith(message(2)) or stored[1].endswith(message(2))


async def test_imap_all_fetches_history_and_several_folders(
    api: httpx.AsyncClient, ann: Person, dovecot: Dovecot, remote_user: tuple[str, str], runtime: Runtime
) -> None:
    login, password = remote_user
    for n in range(1, 6):
        dovecot.append(login, message(n), flags="\\Seen" if n == 1 else "")
    dovecot.append(login, message(10), folder="Archive")
    identity = await connect(api, ann, dovecot, login, password, fetch_method="all", folders=["INBOX", "Archive"])
    await runtime.remote_scheduler.fetch_once(identity["remote_identity_id"])
    assert await subjects(runtime, ann.user_id) == [f"message {n}" for n in (1, 2, 3, 4, 5)]
    # Other folders go under a folder named after the identity.
    assert await subjects(runtime, ann.user_id, "ann@example.org/Archive") == ["message 10"]
    shown = await state(api, ann, identity)
    assert shown["history"] == {"total": 6, "fetched": 6, "done": True}
    flags = remote_flags(dovecot, login)
    assert b"\\Seen" in flags[0] and all(b"\\Seen" not in f for f in flags[1:])


async def test_uidvalidity_change_rematches_instead_of_refetching(
    api: httpx.AsyncClient, ann: Person, dovecot: Dovecot, remote_user: tuple[str, str], runtime: Runtime
) -> None:
    login, password = remote_user
    for n in range(1, 4):
        dovecot.append(login, message(n), folder="Lists")
    dovecot.append(login, message(4, message_id="<>"), folder="Lists")  # no usable Message-ID: by hash
    identity = await connect(api, ann, dovecot, login, password, fetch_method="all", folders=["Lists"])
    await runtime.remote_scheduler.fetch_once(identity["remote_identity_id"])
    assert len(await subjects(runtime, ann.user_id, "ann@example.org/Lists")) == 4
    # The folder is made again (new UIDVALIDITY) with the same mail and one new message.
    client = dovecot.imap_client(login)
    client.delete("Lists")
    client.logout()
    await asyncio.sleep(1.1)
    for n in (4, 3, 2, 1):
        dovecot.append(login, message(n, message_id="<>" if n == 4 else None), folder="Lists")
    dovecot.append(login, message(5), folder="Lists")
    await due_now(runtime, identity["remote_identity_id"])
    await runtime.remote_scheduler.fetch_once(identity["remote_identity_id"])
    assert await subjects(runtime, ann.user_id, "ann@example.org/Lists") == [f"message {n}" for n in range(1, 6)]
    await due_now(runtime, identity["remote_identity_id"])
    await runtime.remote_scheduler.fetch_once(identity["remote_identity_id"])
    assert len(await subjects(runtime, ann.user_id, "ann@example.org/Lists")) == 5


async def test_folder_deleted_remotely_is_reported_and_others_fetched(
    api: httpx.AsyncClient, ann: Person, dovecot: Dovecot, remote_user: tuple[str, str], runtime: Runtime
) -> None:
    login, password = remote_user
    dovecot.append(login, message(1))
    identity = await connect(api, ann, dovecot, login, password, fetch_method="all", folders=["INBOX", "Gone"])
    await runtime.remote_scheduler.fetch_once(identity["remote_identity_id"])
    shown = await state(api, ann, identity)
    assert await subjects(runtime, ann.user_id) == ["message 1"]
    assert shown["connected"] is True and "Gone" in shown["last_error"]


async def test_delete_after_fetch(api: httpx.AsyncClient, ann: Person, dovecot: Dovecot, remote_user: tuple[str, str], runtime: Runtime) -> None:
    login, password = remote_user
    for n in range(1, 4):
        dovecot.append(login, message(n))
    identity = await connect(api, ann, dovecot, login, password, fetch_method="all", keep_on_server=False)
    await runtime.remote_scheduler.fetch_once(identity["remote_identity_id"])
    assert len(await subjects(runtime, ann.user_id)) == 3
    assert remote_flags(dovecot, login) == []


async def test_pop3_by_uidl_from_now_all_and_delete(
    api: httpx.AsyncClient, ann: Person, dovecot: Dovecot, remote_user: tuple[str, str], runtime: Runtime
) -> None:
    login, password = remote_user
    dovecot.append(login, message(1))
    dovecot.append(login, message(2))
    later = await connect(api, ann, dovecot, login, password, mail_protocol="POP3")
    await runtime.remote_scheduler.fetch_once(later["remote_identity_id"])
    assert await subjects(runtime, ann.user_id) == []
    dovecot.append(login, message(3))
    await due_now(runtime, later["remote_identity_id"])
    await runtime.remote_scheduler.fetch_once(later["remote_identity_id"])
    assert await subjects(runtime, ann.user_id) == ["message 3"]
    # Renumbered by a deletion on the server: still known by UIDL.
    client = dovecot.imap_client(login)
    client.select("INBOX")
    client.store("1", "+FLAGS", "\\Deleted")
    client.expunge()
    client.logout()
    dovecot.append(login, message(4))
    await due_now(runtime, later["remote_identity_id"])
    await runtime.remote_scheduler.fetch_once(later["remote_identity_id"])
    assert await subjects(runtime, ann.user_id) == ["message 3", "message 4"]

    everything = await connect(api, ann, dovecot, login, password, mail_protocol="POP3", tls="starttls", mail_port=dovecot.pop3, fetch_method="all", keep_on_server=False)
    await runtime.remote_scheduler.fetch_once(everything["remote_identity_id"])
    assert await subjects(runtime, ann.user_id) == ["message 2", "message 3", "message 3", "message 4", "message 4"]
    assert remote_flags(dovecot, login) == []


async def test_wrong_password_backs_off_and_stops_after_days(
    api: httpx.AsyncClient, ann: Person, dovecot: Dovecot, remote_user: tuple[str, str], runtime: Runtime
) -> None:
    login, _ = remote_user
    identity = await connect(api, ann, dovecot, login, "wrong")
    identity_id = identity["remote_identity_id"]
    await runtime.remote_scheduler.fetch_once(identity_id)
    shown = await state(api, ann, identity)
    assert shown["connected"] is False and "refused" in shown["last_error"] and shown["is_fetching"] is False
    await due_now(runtime, identity_id)
    before = now_ms()
    await runtime.remote_scheduler.fetch_once(identity_id)
    async with runtime.db.read() as conn:
        from postern.storage import remote_identities as store

        row = await store.get(conn, identity_id)
    assert row.failures == 2 and row.next_fetch_ms >= before + 50_000  # 30 s, then 60 s
    await set_row(runtime, identity_id, failing_since_ms=now_ms() - 3 * 86400 * 1000 - 1)
    await due_now(runtime, identity_id)
    await runtime.remote_scheduler.fetch_once(identity_id)
    shown = await state(api, ann, identity)
    assert shown["stopped"] is True and shown["connection_required"] is False
    notes = await runtime.notifications.all_for(ann.user_id)
    assert any("stopped" in n.title for n in notes)
    assert "wrong" not in str([n.message for n in notes])
    # The user fixes the password and starts it again.
    fixed = await api.patch(
        f"/api/v1/remote-identities/{identity_id}", json={"connection_required": True, "params": {"password": remote_user[1]}}, headers=ann.headers
    )
    assert fixed.json()["stopped"] is False
    await runtime.remote_scheduler.fetch_once(identity_id)
    assert (await state(api, ann, identity))["connected"] is True


async def test_a_message_too_large_is_skipped_and_reported(
    api: httpx.AsyncClient, ann: Person, dovecot: Dovecot, remote_user: tuple[str, str], runtime: Runtime
) -> None:
    login, password = remote_user
    big = message(1, body="x" * 76 + "\r\n") * 1
    big = big.replace(b"\r\n\r\n", b"\r\n\r\n" + (b"y" * 998 + b"\r\n") * 31_000, 1)  # about 30 MB
    dovecot.append(login, big)
    dovecot.append(login, message(2))
    runtime.remote_identities.connector.settings = runtime.settings.model_copy(update={"max_message_size": 20 * 1024 * 1024})
    identity = await connect(api, ann, dovecot, login, password, fetch_method="all")
    await runtime.remote_scheduler.fetch_once(identity["remote_identity_id"])
    assert await subjects(runtime, ann.user_id) == ["message 2"]
    shown = await state(api, ann, identity)
    assert re.search(r"larger than allowed", shown["last_error"])
    # With a limit that fits, a 30 MB message comes whole.
    runtime.remote_identities.connector.settings = runtime.settings
    other = await connect(api, ann, dovecot, login, password, fetch_method="all")
    await runtime.remote_scheduler.fetch_once(other["remote_identity_id"])
    stored = [m for m in await inbox(runtime, ann.user_id) if b"message 1" in m[:400]]
    assert len(stored) == 1 and stored[0] == big
