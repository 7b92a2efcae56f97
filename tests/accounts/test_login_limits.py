"""Brute force over every door that takes a password (issue 14, items 5 and 6): the
admin API's /authenticate, the user API's login, IMAP LOGIN, POP3 USER/PASS and
submission AUTH PLAIN, each spoken to as a client would (HTTP requests to the app, real
sockets to the mail doors; a socket's source address is chosen among 127.0.0.0/8, so
that "another IP" is a real peer address).

- Every spelling of a login counts against one account, and only one spelling of an
  address logs in.
- Failures hold back the (IP, account) pair first; the account's own count only makes
  new clients wait, and a client that logged in before from that IP (or with that
  application password) keeps working whatever strangers do.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx
import pytest

from postern.accounts.rate_limit import Policy
from postern.accounts.service import NewUser
from postern.config import Settings
from postern.http.app import create_app
from postern.protocols.imap.server import ImapServices, start_listener
from postern.serve.runtime import Runtime
from postern.serve.server import bound_port, start_mail_doors, start_pop3_doors

PASSWORD = "correct horse battery"
OWNER_IP = "127.0.0.1"
TIMEOUT = 10.0

# ok, failed (wrong login or password), limited (told to wait)
Outcome = str
Attempt = Callable[[str, str, str], Awaitable[Outcome]]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"pop3_listen": "127.0.0.1:0", "pop3s_listen": None})


async def _exchange(port: int, ip: str, steps: list[bytes | None]) -> list[bytes]:
    """Connect from ``ip``; for each step, send it (None: send nothing) and read one line."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, local_addr=(ip, 0)), TIMEOUT)
    lines = [await asyncio.wait_for(reader.readline(), TIMEOUT)]
    try:
        for step in steps:
            if step is not None:
                writer.write(step)
                await writer.drain()
            lines.append(await asyncio.wait_for(reader.readline(), TIMEOUT))
    finally:
        writer.close()
    return lines


@dataclass
class Doors:
    runtime: Runtime
    attempt: dict[str, Attempt]


@pytest.fixture
async def doors(runtime: Runtime) -> AsyncIterator[Doors]:
    await runtime.accounts.create_user(NewUser("alice", PASSWORD, address="alice@example.com"))
    app = create_app(runtime)
    services = ImapServices(runtime.mailstore, runtime.accounts, runtime.bus, hostname="mx.example.com", max_message_size=runtime.settings.max_message_size)
    imap = await start_listener(services, "127.0.0.1", 0)
    pop3 = await start_pop3_doors(runtime)
    mail = await start_mail_doors(runtime)

    async def admin(login: str, password: str, ip: str) -> Outcome:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://postern.test", headers={"X-Access-Token": "test-admin-token"}) as client:
            response = await client.post("/authenticate", json={"username": login, "password": password, "ip": ip})
        return {200: "ok", 403: "failed", 429: "limited"}[response.status_code]

    async def user_api(login: str, password: str, ip: str) -> Outcome:
        transport = httpx.ASGITransport(app=app, client=(ip, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://postern.test") as client:
            response = await client.post("/api/auth/login", json={"email": login, "password": password, "device": "test"})
        return {200: "ok", 400: "failed", 429: "limited"}[response.status_code]

    async def imap_login(login: str, password: str, ip: str) -> Outcome:
        quoted = '"' + login.replace("\\", "\\\\").replace('"', '\\"') + '"'
        line = (await _exchange(bound_port(imap), ip, [f'a LOGIN {quoted} "{password}"\r\n'.encode()]))[-1]
        if line.startswith(b"a OK"):
            return "ok"
        return "limited" if b"[UNAVAILABLE]" in line else "failed"

    async def pop3_login(login: str, password: str, ip: str) -> Outcome:
        lines = await _exchange(bound_port(pop3["pop3"]), ip, [f"USER {login}\r\n".encode(), f"PASS {password}\r\n".encode()])
        if lines[-1].startswith(b"+OK"):
            return "ok"
        return "limited" if b"[SYS/TEMP]" in lines[-1] else "failed"

    async def submission(login: str, password: str, ip: str) -> Outcome:
        token = base64.b64encode(f"\0{login}\0{password}".encode()).decode()
        # The EHLO answer has several lines: read on until its last one.
        reader, writer = await asyncio.open_connection("127.0.0.1", bound_port(mail["submission"]), local_addr=(ip, 0))
        try:
            await reader.readline()
            writer.write(b"EHLO client.example\r\n")
            while not (await asyncio.wait_for(reader.readline(), TIMEOUT)).startswith(b"250 "):
                pass
            writer.write(f"AUTH PLAIN {token}\r\n".encode())
            line = await asyncio.wait_for(reader.readline(), TIMEOUT)
        finally:
            writer.close()
        return {b"235": "ok", b"535": "failed", b"454": "limited"}[line[:3]]

    try:
        yield Doors(runtime, {"admin": admin, "user_api": user_api, "imap": imap_login, "pop3": pop3_login, "submission": submission})
    finally:
        for server in [imap, *pop3.values(), *mail.values()]:
            server.close()


DOORS = ["admin", "user_api", "imap", "pop3", "submission"]
# One address, six ways to write it.
SPELLINGS = ["alice", "alice@example.com", "ALICE@Example.COM", "<alice@example.com>", "alice@example.com.", "ａlice@ｅxample.com"]


@pytest.mark.parametrize("door", DOORS)
async def test_every_spelling_counts_against_one_account(doors: Doors, door: str) -> None:
    doors.runtime.rate_limiter.policies["login"] = Policy(per_ip=100, per_account=100, window_s=600, per_pair=3)
    attempt = doors.attempt[door]
    outcomes = [await attempt(login, "wrong password", "127.0.0.2") for login in SPELLINGS]
    # Three guesses in all, not three per spelling.
    assert outcomes == ["failed"] * 3 + ["limited"] * 3, outcomes
    assert await attempt("alice", PASSWORD, "127.0.0.2") == "limited"


@pytest.mark.parametrize("door", DOORS)
async def test_only_one_spelling_of_an_address_logs_in(doors: Doors, door: str) -> None:
    attempt = doors.attempt[door]
    for login in ("<alice@example.com>", "alice@example.com.", "ａlice@ｅxample.com", "alice@ｅxample.com"):
        assert await attempt(login, PASSWORD, OWNER_IP) == "failed", login
    for login in ("alice", "alice@example.com", "Alice@EXAMPLE.com"):
        assert await attempt(login, PASSWORD, OWNER_IP) == "ok", login


@pytest.mark.parametrize("door", DOORS)
async def test_strangers_cannot_lock_the_owner_out(doors: Doors, door: str) -> None:
    doors.runtime.rate_limiter.policies["login"] = Policy(per_ip=4, per_account=3, window_s=600, per_pair=2, backoff_cap_s=600)
    attempt = doors.attempt[door]
    # The owner's client has logged in from its address before.
    assert await attempt("alice", PASSWORD, OWNER_IP) == "ok"
    # A guesser from one address: its pair is held back after two failures ...
    assert [await attempt("alice", f"guess {n}", "127.0.0.2") for n in range(3)] == ["failed", "failed", "limited"]
    # ... and from other addresses the account's count grows past its limit: from then
    # on new clients wait, even with the right password.
    for n, ip in enumerate(["127.0.0.3", "127.0.0.4"]):
        assert await attempt("alice", f"guess {n}", ip) == "failed"
    assert await attempt("alice", PASSWORD, "127.0.0.5") == "limited"
    # The owner's known client still gets in, again and again.
    assert await attempt("alice", PASSWORD, OWNER_IP) == "ok"
    assert await attempt("alice", PASSWORD, OWNER_IP) == "ok"
    # Its own mistakes still count against its own pair.
    assert [await attempt("alice", "typo", OWNER_IP) for _ in range(2)] == ["failed", "failed"]
    assert await attempt("alice", PASSWORD, OWNER_IP) == "limited"


async def test_one_busy_address_does_not_lock_out_its_known_users(doors: Doors) -> None:
    """50 failures from one IP used to refuse every account behind it (an office's NAT)."""
    doors.runtime.rate_limiter.policies["login"] = Policy(per_ip=3, per_account=100, window_s=600, per_pair=100)
    attempt = doors.attempt["imap"]
    assert await attempt("alice", PASSWORD, "127.0.0.7") == "ok"
    for n in range(3):
        assert await attempt(f"nobody{n}", "guess", "127.0.0.7") == "failed"
    assert await attempt("someone", "guess", "127.0.0.7") == "limited"
    assert await attempt("alice", PASSWORD, "127.0.0.7") == "ok"


async def test_a_known_application_password_keeps_working(doors: Doors) -> None:
    runtime = doors.runtime
    runtime.rate_limiter.policies["login"] = Policy(per_ip=100, per_account=1, window_s=600, per_pair=100, backoff_cap_s=600)
    user = await runtime.accounts.find_login("alice")
    assert user is not None
    created = await runtime.accounts.application_passwords.create(user.id, "phone", ["imap"])
    asp = created.password
    attempt = doors.attempt["imap"]
    assert await attempt("alice", asp, "127.0.0.8") == "ok"
    for n in range(3):
        assert await attempt("alice", f"guess {n}", "127.0.0.9") in ("failed", "limited")
    # The account waits now: a new client with the master password is held back ...
    assert await attempt("alice", PASSWORD, "127.0.0.10") == "limited"
    # ... but the phone's application password, used before, works from anywhere.
    assert await attempt("alice", asp, "127.0.0.11") == "ok"
