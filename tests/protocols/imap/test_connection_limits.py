"""IMAP connections from one address are capped, and a connection that does not log
in is closed at a deadline that no command moves (issue 14, item 8). Over real
sockets to a door started in the test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from postern.accounts.service import NewUser
from postern.protocols.imap.server import ImapServices, start_listener
from postern.serve.runtime import Runtime
from tests.protocols.imap.conftest import PASSWORD, RawClient

# Generous bounds on waits that end on the server's word, never measured.
GIVE_UP = 30.0


@pytest.fixture
async def door(runtime: Runtime) -> AsyncIterator[int]:
    services = ImapServices(
        runtime.mailstore, runtime.accounts, runtime.bus, hostname="mx.example.com", preauth_timeout=1.0, connections_per_ip=3
    )
    await runtime.accounts.create_user(NewUser("alice", PASSWORD))
    server = await start_listener(services, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()


async def _greeting(port: int) -> tuple[RawClient, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    client = RawClient(reader, writer)
    return client, (await reader.readline()).decode()


async def test_connections_per_ip_are_capped(door: int) -> None:
    opened = [await _greeting(door) for _ in range(3)]
    assert all(line.startswith("* OK") for _, line in opened)
    refused, line = await _greeting(door)
    assert line.startswith("* BYE") and "Too many connections" in line, line
    assert await asyncio.wait_for(refused.reader.read(), 10) == b""
    await refused.close()
    # One goes away: there is room again.
    first, _ = opened.pop(0)
    await first.close()
    for _ in range(100):
        again, line = await _greeting(door)
        if line.startswith("* OK"):
            break
        await again.close()
        await asyncio.sleep(0.05)  # the server notices the close on its next turn
    assert line.startswith("* OK"), line
    for client, _ in [*opened, (again, "")]:
        await client.close()


async def test_commands_do_not_extend_the_login_deadline(door: int) -> None:
    client, line = await _greeting(door)
    assert line.startswith("* OK")
    loop = asyncio.get_running_loop()
    give_up = loop.time() + GIVE_UP
    closed = False
    while loop.time() < give_up and not closed:
        try:
            client.writer.write(b"a NOOP\r\n")
            await client.writer.drain()
            while True:
                answer = await asyncio.wait_for(client.reader.readline(), 10)
                if not answer or answer.startswith(b"* BYE"):
                    closed = True
                    break
                if answer.startswith(b"a "):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            closed = True
        await asyncio.sleep(0.2)
    assert closed, "NOOPs kept an unauthenticated session open"
    await client.close()


async def test_a_login_before_the_deadline_keeps_the_session(door: int) -> None:
    client, _ = await _greeting(door)
    await client.ok(f'LOGIN alice "{PASSWORD}"')
    await asyncio.sleep(1.5)  # past the login deadline: it no longer applies
    await client.ok("NOOP")
    await client.close()
