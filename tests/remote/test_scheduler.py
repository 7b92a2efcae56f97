"""The scheduler: IDLE brings new mail within seconds, one fetch per identity across
schedulers (the lease), a remote that disappears and returns, pausing and
cancelling through the API."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from postern.remote.scheduler import RemoteScheduler
from postern.serve.runtime import Runtime
from postern.storage import remote_identities as store
from postern.storage.ids import now_ms
from tests.aliases import Person
from tests.remote.dovecot import Dovecot
from tests.remote.fake_servers import FakeImap, imap_script
from tests.remote.helpers import PATH, connect, due_now, message, state, subjects


async def _until(check, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_idle_brings_new_mail_and_pause_stops(
    api: httpx.AsyncClient, ann: Person, dovecot: Dovecot, remote_user: tuple[str, str], runtime: Runtime
) -> None:
    login, password = remote_user
    scheduler = runtime.remote_scheduler
    scheduler.idle_chunk_s = 30.0
    running = asyncio.create_task(scheduler.run())
    try:
        identity = await connect(api, ann, dovecot, login, password, poll_interval=300)
        identity_id = identity["remote_identity_id"]

        async def fetching() -> bool:
            shown = await state(api, ann, identity)
            return shown["is_fetching"] and shown["connected"]

        await _until(fetching)
        await asyncio.sleep(0.5)  # into IDLE
        dovecot.append(login, message(1))
        await _until(lambda: _has(runtime, ann.user_id, ["message 1"]))
        dovecot.append(login, message(2))
        await _until(lambda: _has(runtime, ann.user_id, ["message 1", "message 2"]))
        assert (await state(api, ann, identity))["is_fetching"] is True

        # Pausing ends the session at once (the API wakes the waiting session).
        paused = await api.patch(f"{PATH}/{identity_id}", json={"connection_required": False}, headers=ann.headers)
        assert paused.status_code == 200

        async def stopped() -> bool:
            return not (await state(api, ann, identity))["is_fetching"]

        await _until(stopped)
        dovecot.append(login, message(3))
        await asyncio.sleep(2)
        assert await subjects(runtime, ann.user_id) == ["message 1", "message 2"]
        async with runtime.db.read() as conn:
            row = await store.get(conn, identity_id)
        assert row.lease_owner is None
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def _has(runtime: Runtime, user_id: str, expected: list[str]) -> bool:
    return await subjects(runtime, user_id) == expected


async def test_one_fetch_per_identity_across_schedulers(
    api: httpx.AsyncClient, ann: Person, dovecot: Dovecot, remote_user: tuple[str, str], runtime: Runtime
) -> None:
    login, password = remote_user
    identity = await connect(api, ann, dovecot, login, password, connection_required=True)
    other = RemoteScheduler(runtime.db, runtime.settings, runtime.remote_identities, runtime.remote_scheduler.delivery, runtime.notifications)
    async with runtime.db.write() as conn:
        assert await store.claim(conn, identity["remote_identity_id"], runtime.remote_scheduler.owner, now_ms(), 60_000) is not None
    with pytest.raises(RuntimeError):
        await other.fetch_once(identity["remote_identity_id"])
    # A lease that ran out (its process died) is taken over.
    async with runtime.db.write() as conn:
        await store.update_row(conn, identity["remote_identity_id"], {"lease_until_ms": now_ms() - 1})
    await other.fetch_once(identity["remote_identity_id"])
    assert (await state(api, ann, identity))["connected"] is True


async def test_a_remote_that_disappears_and_returns(api: httpx.AsyncClient, ann: Person, runtime: Runtime) -> None:
    runtime.settings.remote_allow_plain_loopback = True
    runtime.remote_identities.connector.settings.remote_allow_plain_loopback = True
    server = FakeImap(imap_script())
    await server.start()
    port = server.port
    body = {
        "identity_id": ann.email,
        "params": {"login": "x", "password": "pw-x", "mail_protocol": "IMAP", "incomming_mail_server": "127.0.0.1", "mail_port": port, "tls": "plain", "fetch_method": "all"},
    }
    identity = (await api.post(PATH, json=body, headers=ann.headers)).json()
    await server.stop()
    await runtime.remote_scheduler.fetch_once(identity["remote_identity_id"])
    shown = await state(api, ann, identity)
    assert shown["connected"] is False and "cannot connect" in shown["last_error"]
    server = FakeImap(imap_script())
    server.server = await asyncio.start_server(server._serve, "127.0.0.1", port)
    try:
        await due_now(runtime, identity["remote_identity_id"])
        await runtime.remote_scheduler.fetch_once(identity["remote_identity_id"])
        shown = await state(api, ann, identity)
        assert shown["connected"] is True and shown["last_error"] is None and shown["fetched_count"] == 2
    finally:
        await server.stop()
