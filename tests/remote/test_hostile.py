"""Hostile and broken servers: fuzzed IMAP and POP3 answers never crash the fetcher
(every failure is a clear last_error, never an internal error) and never store half
a message; a well-behaved script stores each message once, whole."""

from __future__ import annotations

import random

import httpx
import pytest

from postern.config import Settings
from postern.serve.runtime import Runtime
from tests.aliases import Person
from tests.remote.fake_servers import (
    MESSAGE,
    FakeImap,
    FakePop3,
    imap_script,
    pop3_script,
)
from tests.remote.helpers import PATH, inbox, state


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"remote_allow_plain_loopback": True, "remote_timeout": 2.0})


async def _identity(api: httpx.AsyncClient, who: Person, port: int, protocol: str = "IMAP") -> dict:
    body = {
        "identity_id": who.email,
        "params": {
            "login": "fuzz",
            "password": "fuzz-password",
            "mail_protocol": protocol,
            "incomming_mail_server": "127.0.0.1",
            "mail_port": str(port),
            "tls": "plain",
            "fetch_method": "all",
        },
    }
    answer = await api.post(PATH, json=body, headers=who.headers)
    assert answer.status_code == 201, answer.text
    return answer.json()


def _mutations(script: dict[str, bytes], seed: int) -> dict[str, bytes]:
    rng = random.Random(seed)
    broken = dict(script)
    key = rng.choice(sorted(k for k in script if script[k]))
    data = bytearray(broken[key])
    kind = rng.randrange(6)
    if kind == 0 and data:  # flip bytes
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == 1 and data:  # truncate
        del data[rng.randrange(len(data)) :]
    elif kind == 2:  # a literal that claims more than follows
        data += b"* 3 FETCH (UID 3 BODY[] {999999}\r\nshort)\r\n"
    elif kind == 3:  # a very long line
        data += b"* OK " + b"x" * 300_000 + b"\r\n"
    elif kind == 4 and data:  # duplicate a random slice
        start = rng.randrange(len(data))
        data[start:start] = data[start : start + rng.randint(1, 40)]
    else:  # garbage in the middle
        position = rng.randrange(len(data) + 1)
        data[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 30)))
    broken[key] = bytes(data)
    return broken


async def test_well_behaved_script_stores_each_message_once(api: httpx.AsyncClient, ann: Person, runtime: Runtime) -> None:
    server = FakeImap(imap_script())
    await server.start()
    try:
        identity = await _identity(api, ann, server.port)
        assert identity["connected"] is True, identity["last_error"]
        await runtime.remote_scheduler.fetch_once(identity["remote_identity_id"])
        assert await inbox(runtime, ann.user_id) == [MESSAGE, MESSAGE]
    finally:
        await server.stop()


@pytest.mark.parametrize("seed", range(40))
async def test_fuzzed_imap_answers(api: httpx.AsyncClient, ann: Person, runtime: Runtime, seed: int) -> None:
    server = FakeImap(_mutations(imap_script(), seed))
    await server.start()
    try:
        identity = await _identity(api, ann, server.port)
        await runtime.remote_scheduler.fetch_once(identity["remote_identity_id"])
        shown = await state(api, ann, identity)
        assert "internal error" not in (shown["last_error"] or "")
        stored = await inbox(runtime, ann.user_id)
        assert len(stored) <= 2
        assert all(m.startswith(b"From: ") or len(m) == len(MESSAGE) for m in stored)
    finally:
        await server.stop()


@pytest.mark.parametrize(
    "tagged", [b"NO [AUTHENTICATIONFAILED] no", b"BAD what", b"WHAT", b""]
)
async def test_odd_tagged_answers(api: httpx.AsyncClient, ann: Person, runtime: Runtime, tagged: bytes) -> None:
    server = FakeImap(imap_script(), tagged=lambda command: tagged if command in ("AUTHENTICATE", "EXAMINE") else b"OK done")
    await server.start()
    try:
        identity = await _identity(api, ann, server.port)
        await runtime.remote_scheduler.fetch_once(identity["remote_identity_id"])
        shown = await state(api, ann, identity)
        assert shown["last_error"] and "internal error" not in shown["last_error"]
        assert await inbox(runtime, ann.user_id) == []
    finally:
        await server.stop()


async def test_pop3_script_and_fuzz(api: httpx.AsyncClient, ann: Person, runtime: Runtime) -> None:
    server = FakePop3(pop3_script())
    await server.start()
    try:
        identity = await _identity(api, ann, server.port, "POP3")
        await runtime.remote_scheduler.fetch_once(identity["remote_identity_id"])
        assert await inbox(runtime, ann.user_id) == [MESSAGE, MESSAGE]
    finally:
        await server.stop()
    for seed in range(30):
        server = FakePop3(_mutations(pop3_script(), seed))
        await server.start()
        try:
            identity = await _identity(api, ann, server.port, "POP3")
            await runtime.remote_scheduler.fetch_once(identity["remote_identity_id"])
            shown = await state(api, ann, identity)
            assert "internal error" not in (shown["last_error"] or ""), seed
        finally:
            await server.stop()
