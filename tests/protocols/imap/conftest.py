"""An IMAP door started in the test's event loop, users to log in as, and clients:
``RawClient`` speaks over an asyncio socket line by line; ``imaplib`` clients run in
a thread (``asyncio.to_thread``), as the server shares the test's loop."""

from __future__ import annotations

import asyncio
import imaplib
import re
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from postern.accounts.service import NewUser
from postern.protocols.imap.server import ImapServices, start_listener
from postern.serve.runtime import Runtime
from postern.serve.tls import ensure_self_signed, server_context

PASSWORD = "correct horse battery"
TIMEOUT = 10.0


@dataclass
class ImapDoor:
    port: int
    services: ImapServices
    runtime: Runtime
    tls_port: int = 0

    async def user(self, username: str = "alice", password: str = PASSWORD, **fields: Any) -> str:
        return await self.runtime.accounts.create_user(NewUser(username, password, **fields))

    async def folder_id(self, user_id: str, path: str = "INBOX") -> str:
        return (await self.runtime.mailstore.folder_by_path(user_id, path)).id

    async def deliver(self, user_id: str, raw: bytes, path: str = "INBOX", flags: tuple[str, ...] = ()) -> int:
        folder = await self.folder_id(user_id, path)
        return (await self.runtime.mailstore.append(user_id, folder, raw, flags)).uid

    async def client(self, login: str | None = "alice", password: str = PASSWORD) -> RawClient:
        client = await RawClient.connect(self.port)
        if login is not None:
            await client.ok(f"LOGIN {login} \"{password}\"")
        return client

    def imaplib(self) -> imaplib.IMAP4:
        return imaplib.IMAP4("127.0.0.1", self.port, timeout=TIMEOUT)


class RawClient:
    """A line-oriented IMAP client for tests: ``command`` sends a tagged command and
    returns (untagged lines, tagged line); literals come inline in their line."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.counter = 0
        self.greeting = ""

    @classmethod
    async def connect(cls, port: int, *, tls: bool = False) -> RawClient:
        context = None
        if tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
        client = cls(reader, writer)
        client.greeting = await client.line()
        return client

    def next_tag(self) -> str:
        self.counter += 1
        return f"a{self.counter}"

    async def send(self, data: bytes | str) -> None:
        self.writer.write(data.encode() if isinstance(data, str) else data)
        await self.writer.drain()

    async def line(self, timeout: float = TIMEOUT) -> str:
        """One response line, with any literals it announces read inline."""
        out = b""
        while True:
            raw = await asyncio.wait_for(self.reader.readline(), timeout)
            if not raw:
                raise ConnectionError("connection closed")
            out += raw
            m = re.search(rb"\{(\d+)\}\r\n$", raw)
            if not m:
                return out.decode("utf-8", "replace").rstrip("\r\n")
            out += await asyncio.wait_for(self.reader.readexactly(int(m.group(1))), timeout)

    async def until_tag(self, tag: str, timeout: float = TIMEOUT) -> tuple[list[str], str]:
        lines: list[str] = []
        while True:
            line = await self.line(timeout)
            if line.startswith(tag + " "):
                return lines, line
            lines.append(line)

    async def command(self, text: str, timeout: float = TIMEOUT) -> tuple[list[str], str]:
        tag = self.next_tag()
        await self.send(f"{tag} {text}\r\n")
        return await self.until_tag(tag, timeout)

    async def ok(self, text: str) -> list[str]:
        lines, tagged = await self.command(text)
        assert tagged.split(" ", 2)[1] == "OK", (text, lines, tagged)
        return lines

    async def close(self) -> None:
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 2)
        except Exception:
            pass


def status_of(tagged: str) -> str:
    return tagged.split(" ", 2)[1]


@pytest.fixture
async def imap(runtime: Runtime, tmp_path: Path) -> AsyncIterator[ImapDoor]:
    cert, key = ensure_self_signed(tmp_path / "tls", "localhost")
    services = ImapServices(
        runtime.mailstore,
        runtime.accounts,
        runtime.bus,
        hostname="mx.example.com",
        max_message_size=runtime.settings.max_message_size,
        tls_context=server_context(cert, key),
        appender=runtime.committer.append,
    )
    server = await start_listener(services, "127.0.0.1", 0)
    tls_server = await start_listener(services, "127.0.0.1", 0, implicit_tls=True)
    door = ImapDoor(
        int(server.sockets[0].getsockname()[1]), services, runtime, int(tls_server.sockets[0].getsockname()[1])
    )
    try:
        yield door
    finally:
        for s in (server, tls_server):
            s.close()


@pytest.fixture
async def alice(imap: ImapDoor) -> str:
    return await imap.user("alice")


def in_thread(function: Callable[..., Any], *args: Any) -> Any:
    return asyncio.to_thread(function, *args)
