"""``postern serve`` with mail workers (POSTERN_MAIL_WORKERS above 1): the MX and LMTP
sessions run in worker processes, to which the serving process hands every connection.

Several connections at once, over both doors, store every message exactly once; the
per-address connection limit holds across the workers; and the workers never outlive
the serving process, whether it stops cleanly or is killed. Every wait has an upper
bound; nothing asserts how long anything took.
"""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.crash_support import admin_client, create_user, port_of, serve_env_in, serving, subjects, tokens_in, wait_until
from tests.e2e.serve_process import ServeProcess, free_port

WORKERS = 3
EXIT_TIMEOUT = 30.0


def children(pid: int) -> set[int]:
    """The live child processes of ``pid`` (zombies, which have ended, do not count)."""
    found: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for task in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
        except OSError:
            continue
        found.update(int(child) for child in text.split())
    return {child for child in found if alive(child)}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    with serve_env_in(tmp_path, POSTERN_MAIL_WORKERS=str(WORKERS), POSTERN_DOORS="http,smtp,lmtp", POSTERN_SMTP_CONNECTIONS_PER_IP="40") as values:
        yield values


@pytest.fixture
def server(env: dict[str, str]) -> Iterator[ServeProcess]:
    with serving(env) as process:
        yield process


pytestmark = pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc")


def message(token: str, recipient: str) -> bytes:
    body = "".join(f"line {n} of {token}\r\n" for n in range(40))
    # A line that starts with a dot: it travels dot-stuffed and must be stored unstuffed.
    return f"From: <sender@remote.example>\r\nTo: <{recipient}>\r\nSubject: workers {token}\r\n\r\n{body}.dot line\r\n".encode()


def test_several_workers_store_every_message_once(env: dict[str, str], server: ServeProcess) -> None:
    assert f"mail workers:   {WORKERS} processes for SMTP and LMTP" in server.output
    workers = children(server.proc.pid)
    assert len(workers) == WORKERS, (workers, server.errors)
    with admin_client(env) as client:
        users = {name: create_user(client, name, "workers test password") for name in ("ann", "bob", "cy")}
        sent: list[tuple[str, str]] = []  # (token, username)
        errors: list[str] = []
        lock = threading.Lock()

        def send(number: int) -> None:
            lmtp = number % 2 == 0
            port = port_of(env, "LMTP" if lmtp else "SMTP")
            try:
                conn: smtplib.SMTP = smtplib.LMTP("127.0.0.1", port, timeout=30) if lmtp else smtplib.SMTP("127.0.0.1", port, timeout=30)
                conn.ehlo("workers.test")
                for n in range(10):
                    name = ("ann", "bob", "cy")[(number + n) % 3]
                    token = f"c{number}m{n}"
                    refused = conn.sendmail("sender@remote.example", [f"{name}@example.com"], message(token, f"{name}@example.com"))
                    assert not refused, refused
                    with lock:
                        sent.append((token, name))
                conn.quit()
            except Exception as error:  # reported below, with the server's log
                with lock:
                    errors.append(f"connection {number}: {error!r}")

        threads = [threading.Thread(target=send, args=(number,)) for number in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not errors, (errors, server.errors)
        assert len(sent) == 120
        for name, (user, folders) in users.items():
            found = tokens_in(subjects(client, user, folders["INBOX"]), "workers")
            wanted = {token for token, owner in sent if owner == name}
            assert set(found) == wanted, (name, set(found) ^ wanted)
            assert all(count == 1 for count in found.values()), found
        # Every message is stored as sent, its dot-stuffed line unstuffed.
        user, folders = users["ann"]
        listed = client.get(f"/users/{user}/mailboxes/{folders['INBOX']}/messages", params={"limit": 1}).json()["results"]
        eml = client.get(f"/users/{user}/mailboxes/{folders['INBOX']}/messages/{listed[0]['id']}/message.eml").content
        assert eml.endswith(b"\r\n.dot line\r\n"), eml[-200:]
    assert children(server.proc.pid) == workers  # the same workers throughout
    assert server.stop() == 0, server.errors
    assert "stopped" in server.output
    wait_until(lambda: not any(alive(pid) for pid in workers), EXIT_TIMEOUT, "the workers exit after a clean stop")


def test_connection_limit_holds_across_workers(env: dict[str, str], tmp_path: Path) -> None:
    env = dict(env, POSTERN_SMTP_CONNECTIONS_PER_IP="4")
    server = ServeProcess(env)
    try:
        assert server.wait_ready(), server.errors
        port = port_of(env, "SMTP")

        def greeting(sock: socket.socket) -> bytes:
            return sock.makefile("rb").readline()

        held = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(4)]
        assert all(greeting(sock).startswith(b"220 ") for sock in held)
        extra = socket.create_connection(("127.0.0.1", port), timeout=30)
        assert greeting(extra).startswith(b"421 "), "a fifth connection from one address is refused, whichever worker takes it"
        extra.close()
        held.pop().close()

        def admitted() -> bool:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                if greeting(sock).startswith(b"220 "):
                    held.append(sock.dup())
                    return True
                return False

        wait_until(admitted, EXIT_TIMEOUT, "a connection is admitted again once one has closed")
        for sock in held:
            sock.close()
        assert server.stop() == 0, server.errors
    finally:
        if server.proc.poll() is None:
            server.kill9()


def test_workers_never_outlive_a_killed_serve(server: ServeProcess) -> None:
    # (A clean stop ends them too: see the first test.)
    workers = children(server.proc.pid)
    assert len(workers) == WORKERS, (workers, server.errors)
    server.kill9()
    wait_until(lambda: not any(alive(pid) for pid in workers), EXIT_TIMEOUT, lambda: f"workers still running: {[p for p in workers if alive(p)]}")


def test_a_worker_that_dies_is_replaced(env: dict[str, str], server: ServeProcess) -> None:
    workers = children(server.proc.pid)
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: len(children(server.proc.pid) - {victim}) == WORKERS, EXIT_TIMEOUT, "a new worker replaces the one that died")
    with admin_client(env) as client:
        user, folders = create_user(client, "dee", "workers test password")
        # Connections open at once go to the worker with the fewest: every worker, the
        # new one included, takes two of these.
        conns = []
        for _ in range(2 * WORKERS):
            conn = smtplib.LMTP("127.0.0.1", port_of(env, "LMTP"), timeout=30)
            conn.ehlo("workers.test")
            conns.append(conn)
        for n, conn in enumerate(conns):
            assert not conn.sendmail("sender@remote.example", ["dee@example.com"], message(f"r{n}", "dee@example.com"))
        for conn in conns:
            conn.quit()
        found = tokens_in(subjects(client, user, folders["INBOX"]), "workers")
        assert found == {f"r{n}": 1 for n in range(2 * WORKERS)}, found
    assert server.stop() == 0, server.errors


def test_imap_idle_hears_of_mail_a_worker_delivered(env: dict[str, str], tmp_path: Path) -> None:
    """Deliveries in a worker publish their events on the serving process's bus."""
    env = dict(env, POSTERN_DOORS="http,lmtp,imap", POSTERN_IMAP_LISTEN=f"127.0.0.1:{free_port()}")
    server = ServeProcess(env)
    try:
        assert server.wait_ready(), server.errors
        with admin_client(env) as client:
            create_user(client, "eve", "workers test password")
        imap = socket.create_connection(("127.0.0.1", port_of(env, "IMAP")), timeout=30)
        lines = imap.makefile("rb")

        def until(tag: bytes) -> list[bytes]:
            got = []
            while True:
                line = lines.readline()
                assert line, got
                got.append(line)
                if line.startswith(tag):
                    return got

        until(b"* OK")
        imap.sendall(b'a LOGIN eve "workers test password"\r\n')
        assert until(b"a ")[-1].startswith(b"a OK"), "login"
        imap.sendall(b"b SELECT INBOX\r\n")
        assert until(b"b ")[-1].startswith(b"b OK"), "select"
        imap.sendall(b"c IDLE\r\n")
        until(b"+ ")
        with smtplib.LMTP("127.0.0.1", port_of(env, "LMTP"), timeout=30) as conn:
            conn.ehlo("workers.test")
            assert not conn.sendmail("sender@remote.example", ["eve@example.com"], message("idle", "eve@example.com"))
        assert until(b"* 1 EXISTS")  # pushed while idling: the event crossed over
        imap.sendall(b"DONE\r\n")
        assert until(b"c ")[-1].startswith(b"c OK")
        imap.close()
        assert server.stop() == 0, server.errors
    finally:
        if server.proc.poll() is None:
            server.kill9()
