"""kill -9 during a history fetch, several times: once the fetch is done, every
remote message is in postern exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from postern.serve.runtime import Runtime
from postern.storage import remote_identities as store
from tests.aliases import Person
from tests.remote.dovecot import Dovecot
from tests.remote.helpers import connect, message, subjects

COUNT = 240


def _start(runtime: Runtime, dovecot: Dovecot) -> subprocess.Popen[bytes]:
    settings = runtime.settings
    env = {
        **os.environ,
        "POSTERN_DATA_DIR": str(settings.data_dir),
        "POSTERN_DATABASE_URL": settings.database_url or "",
        "POSTERN_DOORS": "remote",
        "POSTERN_REMOTE_CA_FILE": str(dovecot.ca),
        "POSTERN_REMOTE_MIN_POLL_INTERVAL": "1",
        "POSTERN_FSYNC": "false",
        "POSTERN_HOSTNAME": settings.hostname,
    }
    if settings.database_schema:
        env["POSTERN_DATABASE_SCHEMA"] = settings.database_schema
    root = Path(__file__).resolve().parents[2]
    return subprocess.Popen([sys.executable, "-m", "tests.remote.fetch_process"], cwd=root, env=env)


async def _fetched(runtime: Runtime, identity_id: str) -> int:
    async with runtime.db.read() as conn:
        row = await store.get(conn, identity_id)
    return int(row.fetched_count)


async def test_kill_9_during_history_fetch_loses_and_duplicates_nothing(
    api: httpx.AsyncClient, ann: Person, dovecot: Dovecot, remote_user: tuple[str, str], runtime: Runtime
) -> None:
    login, password = remote_user
    await asyncio.to_thread(dovecot.append_many, login, [message(n) for n in range(COUNT)])
    identity = await connect(api, ann, dovecot, login, password, fetch_method="all", poll_interval=300, connection_required=False)
    identity_id = identity["remote_identity_id"]
    await api.patch(f"/api/v1/remote-identities/{identity_id}", json={"connection_required": True}, headers=ann.headers)
    kills = 0
    for threshold in (30, 90, 150):
        process = _start(runtime, dovecot)
        try:
            deadline = time.monotonic() + 120
            while await _fetched(runtime, identity_id) < threshold and process.poll() is None:
                assert time.monotonic() < deadline, "the fetch made no progress"
                await asyncio.sleep(0.02)
            if await _fetched(runtime, identity_id) < COUNT:
                kills += 1
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
    assert kills >= 1
    process = _start(runtime, dovecot)
    try:
        deadline = time.monotonic() + 180
        while len(await subjects(runtime, ann.user_id)) < COUNT:
            assert process.poll() is None and time.monotonic() < deadline, "the fetch did not finish"
            await asyncio.sleep(0.2)
        await asyncio.sleep(1)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    found = await subjects(runtime, ann.user_id)
    assert len(found) == COUNT and len(set(found)) == COUNT
    async with runtime.db.read() as conn:
        assert len(await store.fetched_uids(conn, identity_id, "INBOX", (await store.folder_state(conn, identity_id, "INBOX")).uidvalidity)) == COUNT
