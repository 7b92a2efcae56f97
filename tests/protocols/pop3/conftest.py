"""Fixtures of the POP3 tests: a server in the test's event loop (POP3 with STLS, and
POP3 over implicit TLS), a user with a password, and clients that talk to it."""

from __future__ import annotations

import asyncio
import poplib
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from postern.accounts.service import NewUser
from postern.config import Settings
from postern.serve.runtime import Runtime
from postern.serve.server import bound_port, start_pop3_doors

PASSWORD = "correct horse battery"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"pop3_listen": "127.0.0.1:0", "pop3s_listen": "127.0.0.1:0"})


@dataclass
class Pop3:
    runtime: Runtime
    port: int
    tls_port: int
    user_id: str
    username: str = "alice"
    password: str = PASSWORD
    extra: list[asyncio.Server] = field(default_factory=list)

    async def inbox_id(self) -> str:
        return (await self.runtime.mailstore.folder_by_path(self.user_id, "INBOX")).id

    async def append(self, raw: bytes, folder: str = "INBOX") -> int:
        folder_row = await self.runtime.mailstore.folder_by_path(self.user_id, folder)
        return (await self.runtime.mailstore.append(self.user_id, folder_row.id, raw)).uid

    async def count(self, folder: str) -> int:
        return int((await self.runtime.mailstore.folder_by_path(self.user_id, folder)).message_count)

    async def raw_messages(self, folder: str) -> list[bytes]:
        store = self.runtime.mailstore
        row = await store.folder_by_path(self.user_id, folder)
        _, rows = await store.list_messages(self.user_id, row.id, descending=False, limit=10000, cursor=None)
        return [await store.message_bytes(await store.get_message(self.user_id, row.id, r.uid)) for r in rows]

    def client(self, timeout: float = 30) -> poplib.POP3:
        return poplib.POP3("127.0.0.1", self.port, timeout=timeout)

    def logged_in(self) -> poplib.POP3:
        client = self.client()
        client.user(self.username)
        client.pass_(self.password)
        return client


async def start(runtime: Runtime, **options: object) -> dict[str, asyncio.Server]:
    return await start_pop3_doors(runtime, **options)  # type: ignore[arg-type]


@pytest.fixture
async def pop3(runtime: Runtime) -> AsyncIterator[Pop3]:
    user_id = await runtime.accounts.create_user(NewUser("alice", PASSWORD, address="alice@example.com"))
    listeners = await start_pop3_doors(runtime)
    doors = Pop3(runtime, bound_port(listeners["pop3"]), bound_port(listeners["pop3s"]), user_id)
    try:
        yield doors
    finally:
        for server in [*listeners.values(), *doors.extra]:
            server.close()
        for server in [*listeners.values(), *doors.extra]:
            await asyncio.wait_for(server.wait_closed(), 10)


def client_tls() -> ssl.SSLContext:
    """The test server's certificate is self-signed."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Raw:
    """A raw POP3 connection: send bytes, read lines."""

    def __init__(self, port: int, timeout: float = 30):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        return self.file.readline()

    def command(self, data: bytes) -> bytes:
        self.send(data + b"\r\n")
        return self.line()

    def multiline(self) -> list[bytes]:
        """The lines of a multi-line body, as sent (with CRLF, still dot-stuffed)."""
        lines = []
        while True:
            line = self.file.readline()
            assert line, "connection closed inside a multi-line response"
            if line == b".\r\n":
                return lines
            lines.append(line)

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
