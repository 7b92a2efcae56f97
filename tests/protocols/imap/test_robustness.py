"""Garbage, limits and mistakes never end a session with a traceback."""

from __future__ import annotations

import asyncio
import os

from tests.helpers import make_message

from .conftest import ImapDoor, status_of


async def test_garbage_and_unknown_commands(imap: ImapDoor, alice: str) -> None:
    client = await imap.client()
    await client.send(b"\x00\xff\xfe garbage\r\n")
    line = await client.line()
    assert " BAD " in line
    _, tagged = await client.command("FROBNICATE")
    assert status_of(tagged) == "BAD"
    _, tagged = await client.command("FETCH")
    assert status_of(tagged) == "BAD"
    await client.send(b"\r\n")  # an empty line is ignored
    await client.send(b"notag\r\n")
    assert " BAD " in await client.line()
    await client.send(os.urandom(2000).replace(b"\n", b"") + b"\r\n")
    assert "BAD" in await client.line()
    await client.ok("NOOP")
    await client.close()


async def test_long_line(imap: ImapDoor, alice: str) -> None:
    client = await imap.client()
    await client.send(b"a1 NOOP " + b"x" * 100_000 + b"\r\n")
    line = await client.line()
    assert "BAD [TOOBIG]" in line
    await client.ok("NOOP")
    await client.close()


async def test_huge_literal_refused(imap: ImapDoor, alice: str) -> None:
    client = await imap.client()
    await client.send("a1 APPEND INBOX {999999999999}\r\n")
    line = await client.line()
    assert line.startswith("a1 BAD [TOOBIG]") or line.startswith("a1 NO [TOOBIG]")
    await client.ok("NOOP")
    # A non-synchronising one that is too big ends the connection (its bytes follow).
    await client.send("a2 APPEND INBOX {999999999999+}\r\n")
    line = await client.line()
    assert "TOOBIG" in line
    try:
        rest = await client.line()
        assert rest.startswith("* BYE")
    except ConnectionError:
        pass
    await client.close()


async def test_literal_before_login_is_small(imap: ImapDoor, alice: str) -> None:
    client = await imap.client(login=None)
    await client.send("a1 LOGIN {100000}\r\n")
    line = await client.line()
    assert line.startswith("a1 ") and "[LIMIT]" in line or "TOOBIG" in line
    await client.send('a2 LOGIN {5}\r\n')
    assert (await client.line()).startswith("+ ")
    await client.send('alice "correct horse battery"\r\n')
    _, tagged = await client.until_tag("a2")
    assert status_of(tagged) == "OK"
    await client.close()


async def test_server_bug_is_answered_not_fatal(imap: ImapDoor, alice: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    await imap.deliver(alice, make_message("one"))
    client = await imap.client()
    await client.ok("SELECT INBOX")

    async def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")

    monkeypatch.setattr(imap.services.view, "messages", broken)
    _, tagged = await client.command("FETCH 1 FLAGS")
    assert tagged.split()[1:3] == ["NO", "[SERVERBUG]"]
    monkeypatch.undo()
    await client.ok("FETCH 1 FLAGS")
    await client.close()


async def test_pipelined_commands(imap: ImapDoor, alice: str) -> None:
    client = await imap.client()
    await client.send("p1 NOOP\r\np2 SELECT INBOX\r\np3 CAPABILITY\r\np4 LOGOUT\r\n")
    for tag in ("p1", "p2", "p3", "p4"):
        _, tagged = await client.until_tag(tag)
        assert status_of(tagged) == "OK"
    await client.close()


async def test_many_idle_connections(imap: ImapDoor, alice: str) -> None:
    clients = [await imap.client() for _ in range(20)]
    for c in clients:
        await c.ok("SELECT INBOX")
        await c.send("i IDLE\r\n")
        assert (await c.line()).startswith("+")
    await imap.deliver(alice, make_message("to all"))
    lines = await asyncio.gather(*(c.line() for c in clients))
    assert all(line == "* 1 EXISTS" for line in lines)
    for c in clients:
        await c.close()


async def test_big_non_synchronising_literal_before_login_ends_connection(imap: ImapDoor, alice: str) -> None:
    client = await imap.client(login=None)
    await client.send("a1 LOGIN {100000+}\r\n")
    line = await client.line()
    assert "TOOBIG" in line
    try:
        assert (await client.line()).startswith("* BYE")
    except ConnectionError:
        pass
    await client.close()
