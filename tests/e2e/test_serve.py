"""End to end: ``postern serve`` as a real process, used over real HTTP.

Each test starts ``python -m postern serve`` on a free loopback port with a data
directory of its own (and the database the other tests use: SQLite in the data
directory, or a fresh schema of POSTERN_TEST_DATABASE_URL), reads its printout, talks
to it with httpx and stops it with a signal. Every wait has a timeout; nothing asserts
how long anything took.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.serve_process import READY_TIMEOUT, TEST_DATABASE_URL, ServeProcess, drop_schema, free_port
from tests.helpers import make_message

# The server re-reads a rotated token's digest at most every 5 s; allow twice that.
ROTATION_TIMEOUT = 15.0
TOKEN_LINE = re.compile(r"^\s*admin token:\s+(\S+)\s*$", re.MULTILINE)
NEW_TOKEN_LINE = re.compile(r"new admin token \(shown only now\): (\S+)")
Server = ServeProcess


@pytest.fixture
def server_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    # Not PYTHONUNBUFFERED: the printout must reach a pipe without it (systemd, docker logs).
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTERN_") and k != "PYTHONUNBUFFERED"}
    env.update(
        POSTERN_DATA_DIR=str(tmp_path / "data"),
        POSTERN_HTTP_LISTEN=f"127.0.0.1:{free_port()}",
        # The mail doors on ports the system picks: never in the way of another test.
        POSTERN_SMTP_LISTEN="127.0.0.1:0",
        POSTERN_LMTP_LISTEN="127.0.0.1:0",
        POSTERN_SUBMISSION_LISTEN="127.0.0.1:0",
        POSTERN_IMAP_LISTEN="127.0.0.1:0",
        POSTERN_POP3_LISTEN="127.0.0.1:0",
        POSTERN_ARGON2_TIME_COST="1",
        POSTERN_ARGON2_MEMORY_KIB="8",
        POSTERN_DOMAIN="example.com",
        # Narrow, as a terminal might be: the printout must not be wrapped.
        COLUMNS="60",
    )
    schema = None
    if TEST_DATABASE_URL:
        schema = f"t_{secrets.token_hex(6)}"
        env.update(POSTERN_DATABASE_URL=TEST_DATABASE_URL, POSTERN_DATABASE_SCHEMA=schema)
    try:
        yield env
    finally:
        if TEST_DATABASE_URL and schema:
            drop_schema(schema)


@pytest.fixture
def start(server_env: dict[str, str]) -> Iterator[Callable[..., Server]]:
    """Start a server and wait until it is ready; every one is killed at the end,
    whatever happened. Should another program take the free port first, it moves to
    another one (server_env follows)."""
    started: list[Server] = []

    def _start(ready: bool = True, **extra: str) -> Server:
        for _ in range(3):
            server = Server({**server_env, **extra})
            started.append(server)
            if not ready or server.wait_ready():
                return server
            assert "POSTERN_HTTP_LISTEN" not in extra, server.errors
            server_env["POSTERN_HTTP_LISTEN"] = f"127.0.0.1:{free_port()}"
        raise AssertionError(f"no free port to listen on\n{server.errors}")

    try:
        yield _start
    finally:
        for server in started:
            server.kill9()


def base_url(env: dict[str, str]) -> str:
    return f"http://{env['POSTERN_HTTP_LISTEN']}"


def admin_token_of(server: Server) -> str:
    match = TOKEN_LINE.search(server.output)
    assert match, server.output
    return match.group(1)


def wait_for_status(client: httpx.Client, path: str, token: str, status: int) -> httpx.Response:
    """Poll until the server answers ``status`` (for a token rotated by another process)."""
    deadline = time.monotonic() + ROTATION_TIMEOUT
    while True:
        response = client.get(path, headers={"X-Access-Token": token})
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.25)


def rotate_token(env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, "-m", "postern", "token"], check=False, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    match = NEW_TOKEN_LINE.search(result.stdout)
    assert match, result.stdout
    return match.group(1)


# The tests ---------------------------------------------------------------------------


def test_serve_end_to_end(start: Callable[..., Server], server_env: dict[str, str]) -> None:
    data_dir = Path(server_env["POSTERN_DATA_DIR"])
    server = start()
    url = base_url(server_env)
    token = admin_token_of(server)
    assert len(token) >= 32
    # Where the data lives and where it listens, each on one unbroken line.
    assert f"data directory: {data_dir.resolve()}" in server.output
    assert f"HTTP:           {url}/" in server.output
    assert "shown only now" in server.output

    with httpx.Client(base_url=url, timeout=30) as client:
        health = client.get("/health")
        assert health.status_code == 200
        assert health.json()["success"] is True

        anonymous = client.get("/users")
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]
        assert client.get("/users", headers={"X-Access-Token": "wrong"}).status_code == 403

        client.headers["X-Access-Token"] = token
        created = client.post("/users", json={"username": "alice", "password": "a long secret", "address": "alice@example.com", "name": "Alice"})
        assert created.status_code == 200, created.text
        user = created.json()["id"]

        # The query argument works as well as the header.
        boxes = client.get(f"/users/{user}/mailboxes", params={"counters": "true", "accessToken": token}, headers={"X-Access-Token": ""})
        assert boxes.status_code == 200, boxes.text
        inbox = next(m["id"] for m in boxes.json()["results"] if m["path"] == "INBOX")

        raw = make_message(subject="Hello over the wire", body="Hi Alice!\r\n")
        uploaded = client.post(f"/users/{user}/mailboxes/{inbox}/messages", content=raw, headers={"Content-Type": "message/rfc822"})
        assert uploaded.status_code == 200, uploaded.text
        message = uploaded.json()["message"]
        assert message["mailbox"] == inbox
        assert message["size"] == len(raw)

        listed = client.get(f"/users/{user}/mailboxes/{inbox}/messages", params={"limit": 20})
        assert listed.status_code == 200, listed.text
        assert listed.json()["total"] == 1
        assert [m["id"] for m in listed.json()["results"]] == [message["id"]]
        assert listed.json()["results"][0]["subject"] == "Hello over the wire"

        details = client.get(f"/users/{user}/mailboxes/{inbox}/messages/{message['id']}")
        assert details.status_code == 200, details.text
        assert details.json()["subject"] == "Hello over the wire"
        assert "Hi Alice!" in details.json()["text"]

        eml = client.get(f"/users/{user}/mailboxes/{inbox}/messages/{message['id']}/message.eml")
        assert eml.status_code == 200
        assert eml.headers["content-type"].startswith("message/rfc822")
        assert eml.content == raw

    assert server.stop(signal.SIGTERM) == 0
    assert server.lines[-1] == "stopped", server.output
    assert "Traceback" not in server.errors

    # Again, on the same data: no new token, the old one still opens the API, the data is there.
    again = start()
    assert "admin token" not in again.output
    assert f"data directory: {data_dir.resolve()}" in again.output
    with httpx.Client(base_url=base_url(server_env), timeout=30, headers={"X-Access-Token": token}) as client:
        assert client.get(f"/users/{user}").json()["username"] == "alice"
        listed = client.get(f"/users/{user}/mailboxes/{inbox}/messages")
        assert listed.status_code == 200
        assert [m["id"] for m in listed.json()["results"]] == [message["id"]]
        assert client.get(f"/users/{user}/mailboxes/{inbox}/messages/{message['id']}/message.eml").content == raw
    assert again.stop(signal.SIGTERM) == 0


def test_token_rotation_reaches_the_running_server(start: Callable[..., Server], server_env: dict[str, str]) -> None:
    server = start()
    old = admin_token_of(server)

    with httpx.Client(base_url=base_url(server_env), timeout=30) as client:
        assert client.get("/users", headers={"X-Access-Token": old}).status_code == 200

        new = rotate_token(server_env)
        assert new != old

        # Only the old token is presented: the running server must still notice the
        # rotation and stop accepting it.
        refused = wait_for_status(client, "/users", old, 403)
        assert refused.status_code == 403, refused.text
        accepted = wait_for_status(client, "/users", new, 200)
        assert accepted.status_code == 200, accepted.text
        assert client.get("/users", headers={"X-Access-Token": old}).status_code == 403

        # A second rotation, this time checked with the new token first.
        newer = rotate_token(server_env)
        accepted = wait_for_status(client, "/users", newer, 200)
        assert accepted.status_code == 200, accepted.text
        assert wait_for_status(client, "/users", new, 403).status_code == 403

    assert server.stop(signal.SIGTERM) == 0

    # A restarted server knows only the newest token, and prints none.
    again = start()
    assert "admin token" not in again.output
    with httpx.Client(base_url=base_url(server_env), timeout=30) as client:
        assert client.get("/users", headers={"X-Access-Token": newer}).status_code == 200
        assert client.get("/users", headers={"X-Access-Token": new}).status_code == 403
        assert client.get("/users", headers={"X-Access-Token": old}).status_code == 403
    assert again.stop(signal.SIGTERM) == 0


def test_sigint_stops_cleanly(start: Callable[..., Server], server_env: dict[str, str]) -> None:
    server = start()
    with httpx.Client(base_url=base_url(server_env), timeout=30) as client:
        assert client.get("/health").status_code == 200

    assert server.stop(signal.SIGINT) == 0
    assert server.lines[-1] == "stopped", server.output
    assert "Traceback" not in server.errors
    assert "KeyboardInterrupt" not in server.errors

    # The port is free again.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        host, port = server_env["POSTERN_HTTP_LISTEN"].rsplit(":", 1)
        sock.bind((host, int(port)))


def test_configured_token(start: Callable[..., Server], server_env: dict[str, str]) -> None:
    server = start(POSTERN_ADMIN_TOKEN="configured-secret-token")
    assert "admin token:    from the configuration" in server.output
    assert "configured-secret-token" not in server.output
    with httpx.Client(base_url=base_url(server_env), timeout=30) as client:
        assert client.get("/users", headers={"X-Access-Token": "configured-secret-token"}).status_code == 200
        assert client.get("/users", params={"accessToken": "configured-secret-token"}).status_code == 200
        assert client.get("/users", headers={"X-Access-Token": "something-else"}).status_code == 403
    assert server.stop() == 0


def test_admin_api_without_token(start: Callable[..., Server], server_env: dict[str, str]) -> None:
    server = start(POSTERN_ADMIN_AUTH="false")
    assert "WITHOUT an access token" in server.output
    assert "admin token" not in server.output
    with httpx.Client(base_url=base_url(server_env), timeout=30) as client:
        assert client.get("/users").status_code == 200
        assert client.get("/users", headers={"X-Access-Token": "anything"}).status_code == 200
    assert server.stop() == 0

    # Turned on later: the token is made and shown then, and required from then on.
    again = start()
    token = admin_token_of(again)
    with httpx.Client(base_url=base_url(server_env), timeout=30) as client:
        assert client.get("/users").status_code == 401
        assert client.get("/users", headers={"X-Access-Token": token}).status_code == 200
    assert again.stop() == 0


def test_port_in_use(start: Callable[..., Server], server_env: dict[str, str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        server = start(ready=False, POSTERN_HTTP_LISTEN=f"127.0.0.1:{port}")
        assert server.read_until("ready", READY_TIMEOUT) is False, server.output
        code = server.wait_exit()

    assert code != 0
    assert "Traceback" not in server.errors, server.errors
    assert "cannot start" in server.errors
    assert f"listen on 127.0.0.1:{port}" in server.errors
    assert "in use" in server.errors.lower()
    # Nothing was created that the operator did not see: the next start prints the token.
    again = start()
    assert admin_token_of(again)
    assert again.stop() == 0
