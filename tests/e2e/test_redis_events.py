"""Two ``postern serve`` processes on one store, sharing change events through Redis
(POSTERN_REDIS_URL): a change made through one reaches the IMAP sessions of the other
at once, IDLE included, and an operator's logout on one ends the sessions on both.

The two processes share the database (the test's PostgreSQL schema, or one SQLite
file), the blob store and the server key, as the machines of one site would. Each
has its own Redis channel name per test, so runs never hear each other. With
CI=true, an unreachable Redis fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.crash_support import admin_client, create_user, new_schema, port_of, serve_env
from tests.e2e.serve_process import ServeProcess, drop_schema, free_port
from tests.e2e.test_imap_workers import Client

REDIS_URL = os.environ.get("POSTERN_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
PASSWORD = "redis events test password"


def _redis_reachable() -> bool:
    host_port = REDIS_URL.split("//", 1)[1].split("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port or 6379)), timeout=2):
            return True
    except OSError:
        return False


if not _redis_reachable():
    if os.environ.get("CI"):
        raise RuntimeError(f"Redis is not reachable at {REDIS_URL}; CI runs these tests against a real Redis")
    pytest.skip(f"Redis is not reachable at {REDIS_URL}", allow_module_level=True)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """The environments of two processes of one site."""
    schema = new_schema()
    shared = tmp_path / "shared"
    shared.mkdir()
    common = {
        "POSTERN_REDIS_URL": REDIS_URL,
        "POSTERN_SECRET_KEY": secrets.token_urlsafe(32),
        "POSTERN_BLOB_STORE": str(shared / "blobs"),
        # Separate channels per test run: other tests' processes are never heard.
        "POSTERN_EVENT_CHANNEL": f"postern:test:{secrets.token_hex(6)}",
    }
    first = serve_env(tmp_path / "a", free_port(), schema)
    second = serve_env(tmp_path / "b", free_port(), schema)
    if not schema:
        common["POSTERN_DATABASE_URL"] = f"sqlite+aiosqlite:///{shared / 'postern.db'}"
    for env in (first, second):
        env.update(common, POSTERN_DOORS="http,lmtp,imap", POSTERN_MAIL_WORKERS="2")
    try:
        yield first, second
    finally:
        if schema:
            drop_schema(schema)


def test_changes_on_one_process_reach_imap_sessions_on_the_other(site: tuple[dict[str, str], dict[str, str]]) -> None:
    env_a, env_b = site
    a = ServeProcess(env_a)
    try:
        assert a.wait_ready(), a.errors
        assert "through Redis" in a.output
        b = ServeProcess(env_b)
        try:
            assert b.wait_ready(), b.errors
            with admin_client(env_a) as api_a:
                user, folders = create_user(api_a, "ann", PASSWORD)
            on_b = Client(port_of(env_b, "IMAP"))
            on_b.ok(b'LOGIN ann "' + PASSWORD.encode() + b'"')
            on_b.ok(b"SELECT INBOX")
            on_b.idle()
            with admin_client(env_a) as api_a:
                raw = "From: a@remote.example\r\nSubject: across\r\n\r\nbody\r\n"
                uploaded = api_a.post(f"/users/{user}/mailboxes/{folders['INBOX']}/messages", json={"raw": raw, "unseen": True})
                assert uploaded.status_code == 200, uploaded.text
                assert on_b.until(b"* 1 EXISTS")
                flagged = api_a.put(f"/users/{user}/mailboxes/{folders['INBOX']}/messages/1", json={"flagged": True})
                assert flagged.status_code == 200, flagged.text
                fetched = on_b.until(b"* 1 FETCH")[-1]
                assert b"\\Flagged" in fetched, fetched
                logout = api_a.put(f"/users/{user}/logout", json={"reason": "Moving house"})
                assert logout.status_code == 200, logout.text
                assert b"Moving house" in on_b.until(b"* BYE")[-1]
            on_b.close()
            assert b.stop() == 0, b.errors
        finally:
            if b.proc.poll() is None:
                b.kill9()
        assert a.stop() == 0, a.errors
    finally:
        if a.proc.poll() is None:
            a.kill9()
