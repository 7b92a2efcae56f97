"""Small scripted IMAP and POP3 servers on loopback (no TLS: the tests allow plain
connections to loopback), whose answers a test can break at will: the hostile
servers of the fuzz tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

MESSAGE = b"From: a@remote.example\r\nSubject: fuzzed\r\nMessage-ID: <f@remote.example>\r\n\r\nbody\r\n"


def imap_script(message: bytes = MESSAGE) -> dict[str, bytes]:
    """The answers (before the tagged OK) of a well-behaved server, by command."""
    return {
        "GREETING": b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR UIDPLUS] ready\r\n",
        "CAPABILITY": b"* CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR UIDPLUS\r\n",
        "AUTHENTICATE": b"",
        "LOGIN": b"",
        "EXAMINE": b"* 2 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT 3] ok\r\n* FLAGS (\\Seen)\r\n",
        "SELECT": b"* 2 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT 3] ok\r\n",
        "UID SEARCH": b"* SEARCH 1 2\r\n",
        "UID FETCH": b"* 1 FETCH (UID 1 INTERNALDATE \"07-Dec-2026 10:00:00 +0000\" BODY[] {%d}\r\n%s)\r\n"
        b"* 2 FETCH (UID 2 INTERNALDATE \"07-Dec-2026 10:00:01 +0000\" BODY[] {%d}\r\n%s)\r\n" % (len(message), message, len(message), message),
        "LIST": b'* LIST () "/" INBOX\r\n',
        "LOGOUT": b"* BYE bye\r\n",
    }


class FakeImap:
    def __init__(self, script: dict[str, bytes], tagged: Callable[[str], bytes] | None = None):
        self.script = script
        self.tagged = tagged or (lambda command: b"OK done")
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(self.script["GREETING"])
            await writer.drain()
            while True:
                line = await asyncio.wait_for(reader.readline(), 10)
                if not line:
                    break
                tag, _, rest = line.rstrip(b"\r\n").partition(b" ")
                words = rest.decode("ascii", "replace").split(" ")
                command = " ".join(words[:2]).upper() if words[0].upper() == "UID" else words[0].upper()
                writer.write(self.script.get(command, b""))
                writer.write(tag + b" " + self.tagged(command) + b"\r\n")
                await writer.drain()
                if command == "LOGOUT":
                    break
        except (TimeoutError, OSError, ConnectionError):
            pass
        finally:
            writer.close()


def pop3_script(message: bytes = MESSAGE) -> dict[str, bytes]:
    stuffed = message.replace(b"\r\n.", b"\r\n..")
    return {
        "GREETING": b"+OK ready\r\n",
        "CAPA": b"+OK\r\nUIDL\r\nUSER\r\n.\r\n",
        "USER": b"+OK\r\n",
        "PASS": b"+OK\r\n",
        "UIDL": b"+OK\r\n1 aaa\r\n2 bbb\r\n.\r\n",
        "RETR": b"+OK\r\n" + stuffed + b".\r\n",
        "QUIT": b"+OK bye\r\n",
    }


class FakePop3(FakeImap):
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(self.script["GREETING"])
            await writer.drain()
            while True:
                line = await asyncio.wait_for(reader.readline(), 10)
                if not line:
                    break
                command = line.split(b" ")[0].strip().upper().decode("ascii", "replace")
                writer.write(self.script.get(command, b"-ERR unknown\r\n"))
                await writer.drain()
                if command == "QUIT":
                    break
        except (TimeoutError, OSError, ConnectionError):
            pass
        finally:
            writer.close()
