"""IMAP in the mail workers of ``postern serve`` (POSTERN_MAIL_WORKERS above 1).

The serving process deals IMAP connections out to its workers like MX and LMTP ones,
each to the worker with the fewest, so the sessions of one user land in different
processes. A change made in any of them, by the admin API in the serving process, or
by an operator's logout, must reach every selected session at once (IDLE), and a stop
ends each session with ``* BYE``. Every wait has an upper bound; nothing asserts how
long anything took.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest

from tests.e2e.crash_support import (
    admin_client,
    create_user,
    port_of,
    serve_env_in,
    serving,
)
from tests.e2e.serve_process import ServeProcess

WORKERS = 3
PASSWORD = "imap workers test password"

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc")


class Client:
    """A line-level IMAP client over a blocking socket (IDLE needs one)."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.lines = self.sock.makefile("rb")
        self.tag = 0
        assert self.line().startswith(b"* OK")

    def line(self) -> bytes:
        line = self.lines.readline()
        assert line, "the server closed the connection"
        return line

    def until(self, prefix: bytes) -> list[bytes]:
        got = []
        while True:
            line = self.line()
            got.append(line)
            if line.startswith(prefix):
                return got

    def ok(self, command: bytes) -> list[bytes]:
        self.tag += 1
        tag = b"t%d " % self.tag
        self.sock.sendall(tag + command + b"\r\n")
        got = self.until(tag)
        assert got[-1].startswith(tag + b"OK"), got
        return got

    def append(self, raw: bytes) -> list[bytes]:
        self.tag += 1
        tag = b"t%d " % self.tag
        self.sock.sendall(tag + b"APPEND INBOX {%d+}\r\n" % len(raw) + raw + b"\r\n")
        got = self.until(tag)
        assert got[-1].startswith(tag + b"OK"), got
        return got

    def idle(self) -> None:
        self.tag += 1
        self.idle_tag = b"t%d " % self.tag
        self.sock.sendall(self.idle_tag + b"IDLE\r\n")
        self.until(b"+ ")

    def done(self) -> None:
        self.sock.sendall(b"DONE\r\n")
        assert self.until(self.idle_tag)[-1].startswith(self.idle_tag + b"OK")

    def close(self) -> None:
        self.sock.close()


def message(subject: str) -> bytes:
    return f"From: a@remote.example\r\nTo: ann@example.com\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n".encode()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    with serve_env_in(tmp_path, POSTERN_MAIL_WORKERS=str(WORKERS), POSTERN_DOORS="http,lmtp,imap") as values:
        yield values


@pytest.fixture
def server(env: dict[str, str]) -> Iterator[ServeProcess]:
    with serving(env) as process:
        yield process


def logged_in(env: dict[str, str], folder: bytes | None = b"INBOX") -> Client:
    client = Client(port_of(env, "IMAP"))
    client.ok(b'LOGIN ann "' + PASSWORD.encode() + b'"')
    if folder is not None:
        client.ok(b"SELECT " + folder)
    return client


def test_sessions_in_different_workers_see_each_others_changes(env: dict[str, str], server: ServeProcess) -> None:
    assert "IMAP" in server.output and "processes for LMTP and IMAP" in server.output, server.output
    with admin_client(env) as api:
        create_user(api, "ann", PASSWORD)
    # Three connections at once, one per worker (each goes to the one with the fewest).
    watcher, writer, other = logged_in(env), logged_in(env), logged_in(env)
    try:
        writer.append(message("first"))
        watcher.ok(b"NOOP")
        watcher.idle()
        writer.append(message("second"))
        assert watcher.until(b"* 2 EXISTS")
        writer.ok(b"NOOP")
        writer.ok(b"STORE 1 +FLAGS (\\Flagged)")
        fetched = watcher.until(b"* 1 FETCH")[-1]
        assert b"\\Flagged" in fetched, fetched
        other.ok(b"NOOP")
        other.ok(b"STORE 2 +FLAGS (\\Deleted)")
        other.ok(b"EXPUNGE")
        assert watcher.until(b"* 2 EXPUNGE")
        watcher.done()
        status = watcher.ok(b"STATUS INBOX (MESSAGES)")
        assert any(b"MESSAGES 1" in line for line in status), status
    finally:
        for client in (watcher, writer, other):
            client.close()
    assert server.stop() == 0, server.errors


def test_admin_api_changes_and_logout_reach_sessions_in_workers(env: dict[str, str], server: ServeProcess) -> None:
    with admin_client(env) as api:
        user, folders = create_user(api, "ann", PASSWORD)
        first, second = logged_in(env), logged_in(env)
        try:
            first.idle()
            second.idle()
            uploaded = api.post(
                f"/users/{user}/mailboxes/{folders['INBOX']}/messages", json={"raw": message("uploaded").decode()}
            )
            assert uploaded.status_code == 200, uploaded.text
            assert first.until(b"* 1 EXISTS")
            assert second.until(b"* 1 EXISTS")
            logout = api.put(f"/users/{user}/logout", json={"reason": "Maintenance"})
            assert logout.status_code == 200, logout.text
            for client in (first, second):
                bye = client.until(b"* BYE")[-1]
                assert b"Maintenance" in bye, bye
        finally:
            first.close()
            second.close()
    assert server.stop() == 0, server.errors


def test_a_stop_says_bye_to_sessions_in_workers(env: dict[str, str], server: ServeProcess) -> None:
    with admin_client(env) as api:
        create_user(api, "ann", PASSWORD)
    clients = [logged_in(env) for _ in range(WORKERS)]
    try:
        clients[0].idle()
        assert server.stop() == 0, server.errors
        for client in clients:
            assert client.until(b"* BYE")
    finally:
        for client in clients:
            client.close()


def login_everywhere(env: dict[str, str], login: str, password: str) -> list[bytes]:
    """LOGIN on WORKERS connections held open together, so that each is in another
    worker (each new one goes to the worker with the fewest); the tagged answers."""
    clients = [Client(port_of(env, "IMAP")) for _ in range(WORKERS)]
    try:
        answers = []
        for client in clients:
            client.tag += 1
            tag = b"t%d " % client.tag
            client.sock.sendall(tag + b'LOGIN %s "%s"\r\n' % (login.encode(), password.encode()))
            answers.append(client.until(tag)[-1])
        return answers
    finally:
        for client in clients:
            client.close()


def test_credential_changes_reach_logins_remembered_in_workers(env: dict[str, str], server: ServeProcess) -> None:
    """A login remembered by every worker (the same password again skips argon2id) stops
    working at once when the password changes through the admin API in the serving
    process, when the account is disabled, when 2FA is turned on and when the
    application password is deleted."""
    ok, no = b"OK", b"NO"

    def statuses(password: str) -> list[bytes]:
        return [answer.split()[1] for answer in login_everywhere(env, "ann", password)]

    with admin_client(env) as api:
        user, _ = create_user(api, "ann", PASSWORD)
        for _ in range(2):
            assert statuses(PASSWORD) == [ok] * WORKERS
        assert api.put(f"/users/{user}", json={"password": "the new password"}).status_code == 200
        assert statuses(PASSWORD) == [no] * WORKERS
        assert statuses("the new password") == [ok] * WORKERS

        assert api.put(f"/users/{user}", json={"disabled": True}).status_code == 200
        assert statuses("the new password") == [no] * WORKERS
        assert api.put(f"/users/{user}", json={"disabled": False}).status_code == 200
        assert statuses("the new password") == [ok] * WORKERS

        created = api.post(f"/users/{user}/asps", json={"description": "phone", "scopes": ["imap"]})
        assert created.status_code == 200, created.text
        asp = created.json()["password"]
        assert statuses(asp) == [ok] * WORKERS
        assert api.delete(f"/users/{user}/asps/{created.json()['id']}").status_code == 200
        assert statuses(asp) == [no] * WORKERS

        setup = api.post(f"/users/{user}/2fa/totp/setup", json={})
        assert setup.status_code == 200, setup.text
        enabled = api.post(f"/users/{user}/2fa/totp/enable", json={"token": pyotp.TOTP(setup.json()["seed"]).now()})
        assert enabled.status_code == 200, enabled.text
        assert statuses("the new password") == [no] * WORKERS
