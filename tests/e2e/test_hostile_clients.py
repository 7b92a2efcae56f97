"""Clients that misbehave, against ``postern serve`` as a real process (issue 14): a
POP3 client that goes away in the middle of RETR (item 14), and an IMAP client in the
middle of a FETCH. Each test reads the
server's log at the end: a client going away is normal, never a traceback.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.serve_process import TEST_DATABASE_URL, ServeProcess, drop_schema, free_port

TOKEN = "hostile-clients-admin-token"
PASSWORD = "correct horse battery"


@pytest.fixture
def server_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTERN_")}
    env.update(
        POSTERN_DATA_DIR=str(tmp_path / "data"),
        POSTERN_HTTP_LISTEN=f"127.0.0.1:{free_port()}",
        POSTERN_SMTP_LISTEN="127.0.0.1:0",
        POSTERN_LMTP_LISTEN="127.0.0.1:0",
        POSTERN_SUBMISSION_LISTEN="127.0.0.1:0",
        POSTERN_IMAP_LISTEN="127.0.0.1:0",
        POSTERN_POP3_LISTEN="127.0.0.1:0",
        POSTERN_ARGON2_TIME_COST="1",
        POSTERN_ARGON2_MEMORY_KIB="8",
        POSTERN_DOMAIN="example.com",
        POSTERN_ADMIN_TOKEN=TOKEN,
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
def serve(server_env: dict[str, str]) -> Iterator[Callable[..., ServeProcess]]:
    started: list[ServeProcess] = []

    def _start(**extra: str) -> ServeProcess:
        server = ServeProcess({**server_env, **extra})
        started.append(server)
        assert server.wait_ready(), server.errors
        return server

    yield _start
    for server in started:
        if server.proc.poll() is None:
            server.kill9()


def door_port(server: ServeProcess, label: str) -> int:
    match = re.search(rf"^\s*{re.escape(label)}:\s+\S+:(\d+)\s*$", server.output, re.MULTILINE)
    assert match, server.output
    return int(match.group(1))


def http_client(env: dict[str, str]) -> httpx.Client:
    return httpx.Client(base_url=f"http://{env['POSTERN_HTTP_LISTEN']}", headers={"X-Access-Token": TOKEN}, timeout=30)


def big_message(size: int) -> bytes:
    head = b"From: a@example.org\r\nTo: alice@example.com\r\nSubject: big\r\n\r\n"
    line = b"x" * 76 + b"\r\n"
    return head + line * (size // len(line))


def abort(sock: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0), as a client that crashed or lost its network."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_pop3_client_gone_in_the_middle_of_retr(serve: Callable[..., ServeProcess], server_env: dict[str, str]) -> None:
    server = serve()
    with http_client(server_env) as client:
        user = client.post("/users", json={"username": "alice", "password": PASSWORD}).json()["id"]
        inbox = next(f["id"] for f in client.get(f"/users/{user}/mailboxes").json()["results"] if f["path"] == "INBOX")
        uploaded = client.post(f"/users/{user}/mailboxes/{inbox}/messages", params={"unseen": "true"}, content=big_message(8 * 1024 * 1024), headers={"Content-Type": "message/rfc822"})
        assert uploaded.status_code == 200, uploaded.text
        port = door_port(server, "POP3")
        for _ in range(5):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            reader = sock.makefile("rb")
            assert reader.readline().startswith(b"+OK")
            for command in (b"USER alice\r\n", f"PASS {PASSWORD}\r\n".encode(), b"RETR 1\r\n"):
                sock.sendall(command)
                assert reader.readline().startswith(b"+OK"), command
            reader.read(64 * 1024)  # a little of the message, then gone
            abort(sock)
        # The same over IMAP: a FETCH of the whole message (BODY.PEEK: nothing changes).
        imap_port = door_port(server, "IMAP")
        for _ in range(3):
            sock = socket.create_connection(("127.0.0.1", imap_port), timeout=30)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            reader = sock.makefile("rb")
            assert reader.readline().startswith(b"* OK")
            for tag, command in ((b"a", f'LOGIN alice "{PASSWORD}"'.encode()), (b"b", b"SELECT INBOX")):
                sock.sendall(tag + b" " + command + b"\r\n")
                while not (line := reader.readline()).startswith(tag + b" "):
                    pass
                assert line.startswith(tag + b" OK"), line
            sock.sendall(b"c FETCH 1 BODY.PEEK[]\r\n")
            reader.read(64 * 1024)
            abort(sock)
        # Nothing half done: without QUIT there is no UPDATE, so the message stays unseen.
        message = client.get(f"/users/{user}/mailboxes/{inbox}/messages").json()["results"][0]
        assert message["seen"] is False
        # And the door still serves.
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        with sock, sock.makefile("rb") as reader:
            assert reader.readline().startswith(b"+OK")
            sock.sendall(b"QUIT\r\n")
            assert reader.readline().startswith(b"+OK")
    server.stop()
    assert "Traceback" not in server.errors, server.errors
    assert "unable to perform operation" not in server.errors, server.errors


def _imap_greeting(port: int) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    return sock, sock.makefile("rb").readline()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_imap_connections_per_ip_and_login_deadline(serve: Callable[..., ServeProcess], workers: str) -> None:
    """The cap holds whether the serving process or mail workers serve IMAP; NOOPs do
    not keep a connection that never logs in."""
    server = serve(POSTERN_MAIL_WORKERS=workers, POSTERN_IMAP_CONNECTIONS_PER_IP="3", POSTERN_IMAP_PREAUTH_TIMEOUT="2")
    port = door_port(server, "IMAP")
    opened = [_imap_greeting(port) for _ in range(3)]
    assert all(line.startswith(b"* OK") for _, line in opened), opened
    refused, line = _imap_greeting(port)
    assert line.startswith(b"* BYE") and b"Too many connections" in line, line
    refused.close()
    # A session that only says NOOP is closed at the login deadline all the same.
    sock, _ = opened[0]
    reader = sock.makefile("rb")
    said_bye = False
    for _ in range(300):  # a bound, not a measure: the server ends it long before
        try:
            sock.sendall(b"a NOOP\r\n")
            answer = reader.readline()
            while answer and not answer.startswith((b"a ", b"* BYE")):
                answer = reader.readline()
        except OSError:
            answer = b""
        if not answer or answer.startswith(b"* BYE"):
            said_bye = True
            break
        time.sleep(0.1)
    assert said_bye, "NOOPs kept an unauthenticated IMAP session open"
    for other, _ in opened:
        other.close()
    server.stop()
    assert "Traceback" not in server.errors, server.errors


def _closed_by_server(sock: socket.socket, trickle: bytes, rounds: int = 300) -> bytes:
    """Send ``trickle`` again and again, a little at a time, until the server closes
    the connection; returns what it said. ``rounds`` bounds the wait (never measured)."""
    said = b""
    sock.settimeout(0.2)
    for _ in range(rounds):
        try:
            sock.sendall(trickle)
        except OSError:
            return said
        try:
            data = sock.recv(4096)
        except TimeoutError:
            continue
        except OSError:
            return said
        if not data:
            return said
        said += data
    raise AssertionError(f"the server kept a slow client open; it said {said!r}")


def test_http_slow_and_greedy_clients(serve: Callable[..., ServeProcess], server_env: dict[str, str]) -> None:
    """Item 7: a request head sent a byte at a time, a body that stops, and a pile of
    connections from one address; the open files limit is raised at start."""
    server = serve(POSTERN_HTTP_HEADER_TIMEOUT="1", POSTERN_HTTP_BODY_TIMEOUT="1", POSTERN_HTTP_CONNECTIONS_PER_IP="5")
    host, port = server_env["POSTERN_HTTP_LISTEN"].split(":")
    address = (host, int(port))
    # Slowloris: a header line every so often, never the blank line that ends the head.
    sock = socket.create_connection(address, timeout=30)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: postern\r\n")
    said = _closed_by_server(sock, b"X-Slow: 1\r\n")
    assert said == b"" or said.startswith(b"HTTP/1.1 408"), said
    sock.close()
    # A body that stops halfway (the admin token is right: the request is otherwise fine).
    sock = socket.create_connection(address, timeout=30)
    sock.sendall(
        b"POST /users HTTP/1.1\r\nHost: postern\r\nContent-Type: application/json\r\n"
        + f"X-Access-Token: {TOKEN}\r\n".encode()
        + b"Content-Length: 1000\r\n\r\n{\"username\": "
    )
    _closed_by_server(sock, b"")
    sock.close()
    # Five connections from one address hold their place; the sixth is refused at once,
    # while another address is served.
    held = []
    for _ in range(5):
        one = socket.create_connection(address, timeout=30)
        one.sendall(b"GET /health HTTP/1.1\r\nHost: postern\r\n\r\n")  # kept alive after
        assert one.recv(4096).startswith(b"HTTP/1.1 200")
        held.append(one)
    extra = socket.create_connection(address, timeout=30)
    extra.sendall(b"GET /health HTTP/1.1\r\nHost: postern\r\n\r\n")
    answer = extra.recv(4096)
    assert answer.startswith(b"HTTP/1.1 503") and b"Too many connections" in answer, answer
    extra.close()
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=30) as elsewhere:
        assert elsewhere.get(f"http://{host}:{port}/health").status_code == 200
    for one in held:
        one.close()
    limits = Path(f"/proc/{server.proc.pid}/limits").read_text()
    soft, hard = re.search(r"Max open files\s+(\S+)\s+(\S+)", limits).groups()  # type: ignore[union-attr]
    assert soft == hard or int(soft) >= 1 << 20, limits
    server.stop()
    assert "Traceback" not in server.errors, server.errors


def _login_ip(env: dict[str, str], forwarded_for: str) -> str:
    """The address the server takes a client for: a failed user API login from here,
    claiming ``forwarded_for``, as the authentication log records it."""
    base = f"http://{env['POSTERN_HTTP_LISTEN']}"
    with http_client(env) as admin:
        found = admin.get("/users", params={"query": "fwd"}).json()["results"]
        user = found[0]["id"] if found else admin.post("/users", json={"username": "fwd", "password": PASSWORD}).json()["id"]
        response = httpx.post(
            f"{base}/api/auth/login", json={"email": "fwd", "password": "wrong", "device": "d"}, headers={"X-Forwarded-For": forwarded_for}, timeout=30
        )
        assert response.status_code == 400, response.text
        return admin.get(f"/users/{user}/authlog").json()["results"][0]["ip"]


def test_forwarded_for_is_believed_only_from_trusted_proxies(serve: Callable[..., ServeProcess], server_env: dict[str, str]) -> None:
    """Item 9: a local proxy passing the client's header through used to let anyone
    choose the address that rate limits and the authentication log see."""
    server = serve()
    assert _login_ip(server_env, "203.0.113.7") == "127.0.0.1"
    server.stop()
    server = serve(POSTERN_TRUSTED_PROXIES="127.0.0.1, ::1")
    assert _login_ip(server_env, "203.0.113.8") == "203.0.113.8"
    server.stop()
