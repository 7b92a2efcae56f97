"""A small POP3 client for fetching: POP3S or STLS (certificates verified), USER/PASS
or AUTH PLAIN, AUTH XOAUTH2/OAUTHBEARER, UIDL, RETR (the whole message or an error,
never half of one) and DELE. Nothing here logs."""

from __future__ import annotations

import base64
import ssl

from postern.remote.wire import (
    AuthenticationFailed,
    Connection,
    Endpoint,
    ProtocolError,
    RemoteError,
)


class Pop3Client:
    def __init__(self, endpoint: Endpoint, context: ssl.SSLContext | None, max_message: int):
        self.endpoint, self.context, self.max_message = endpoint, context, max_message
        self.conn: Connection | None = None
        self.capabilities: set[str] = set()

    async def connect(self) -> None:
        self.conn = await Connection.open(self.endpoint, self.context)
        await self._ok(await self.conn.line())
        if self.endpoint.tls == "starttls":
            await self._capa()
            if "STLS" not in self.capabilities:
                raise RemoteError("the server does not offer STLS")
            await self.simple("STLS")
            assert self.context is not None
            await self.conn.start_tls(self.context)
        await self._capa()

    async def close(self) -> None:
        if self.conn is not None:
            try:
                await self.simple("QUIT")
            except RemoteError:
                pass
            await self.conn.close()
            self.conn = None

    async def _capa(self) -> None:
        try:
            lines = await self.multi("CAPA", limit=64 * 1024)
        except RemoteError:
            self.capabilities = set()
            return
        caps = set()
        for line in lines:
            words = line.decode("ascii", "replace").upper().split()
            if words:
                caps.add(words[0])
                if words[0] == "SASL":
                    caps.update("SASL " + w for w in words[1:])
        self.capabilities = caps

    @staticmethod
    async def _ok(line: bytes) -> bytes:
        if line.startswith(b"+OK"):
            return line[3:].strip()
        if line.startswith(b"-ERR"):
            raise RemoteError("the server answered -ERR: " + line[4:].strip()[:200].decode("utf-8", "replace"))
        raise ProtocolError("the server's answer is not POP3")

    async def simple(self, command: str) -> bytes:
        assert self.conn is not None
        await self.conn.send(command.encode("utf-8") + b"\r\n")
        return await self._ok(await self.conn.line())

    async def multi(self, command: str, limit: int) -> list[bytes]:
        """A multi-line answer, dot-unstuffed; ProtocolError past ``limit`` bytes."""
        await self.simple(command)
        assert self.conn is not None
        lines: list[bytes] = []
        total = 0
        while True:
            line = await self.conn.line()
            if line == b".":
                return lines
            if line.startswith(b"."):
                line = line[1:]
            total += len(line) + 2
            if total > limit:
                raise ProtocolError("the server's answer is larger than allowed")
            lines.append(line)

    async def login(self, user: str, password: str) -> None:
        if any(c in user + password for c in "\r\n\x00"):
            raise AuthenticationFailed("the login or password holds characters POP3 cannot send")
        try:
            if "SASL PLAIN" in self.capabilities:
                token = base64.b64encode(b"\x00" + user.encode() + b"\x00" + password.encode()).decode()
                await self.simple("AUTH PLAIN " + token)
            else:
                await self.simple("USER " + user)
                await self.simple("PASS " + password)
        except ProtocolError:
            raise
        except RemoteError:
            raise AuthenticationFailed("the server refused the login or password") from None

    async def login_oauth(self, mechanism: str, user: str, token: str, host: str, port: int) -> None:
        if mechanism == "OAUTHBEARER":
            raw = f"n,a={user},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01"
        else:
            raw = f"user={user}\x01auth=Bearer {token}\x01\x01"
        assert self.conn is not None
        await self.conn.send(f"AUTH {mechanism} {base64.b64encode(raw.encode()).decode()}\r\n".encode())
        line = await self.conn.line()
        if line.startswith(b"+ ") or line == b"+":
            await self.conn.send(b"\r\n")  # an error report: end the exchange
            line = await self.conn.line()
        if not line.startswith(b"+OK"):
            raise AuthenticationFailed("the server refused the credentials")

    async def uidl(self) -> list[tuple[int, str]]:
        """(message number, unique id) for every message."""
        result = []
        for line in await self.multi("UIDL", limit=64 << 20):
            parts = line.split()
            if len(parts) != 2 or not parts[0].isdigit() or len(parts[0]) > 9 or not 0 < len(parts[1]) <= 70:
                raise ProtocolError("malformed UIDL answer")
            try:
                uid = parts[1].decode("ascii")
            except UnicodeDecodeError:
                raise ProtocolError("malformed UIDL answer") from None
            result.append((int(parts[0]), uid))
        if len({u for _, u in result}) != len(result):
            raise ProtocolError("the server gave two messages the same UIDL")
        return result

    async def sizes(self) -> dict[int, int]:
        sizes = {}
        for line in await self.multi("LIST", limit=64 << 20):
            parts = line.split()
            if len(parts) < 2 or not parts[0].isdigit() or not parts[1].isdigit() or len(parts[1]) > 15:
                raise ProtocolError("malformed LIST answer")
            sizes[int(parts[0])] = int(parts[1])
        return sizes

    async def retrieve(self, number: int) -> bytes | None:
        """The message, or None if it is larger than allowed (read and dropped)."""
        await self.simple(f"RETR {number}")
        assert self.conn is not None
        chunks: list[bytes] = []
        total = 0
        too_big = False
        while True:
            line = await self.conn.line()
            if line == b".":
                break
            if line.startswith(b"."):
                line = line[1:]
            total += len(line) + 2
            if total > self.max_message:
                too_big = True
                chunks = []
            if not too_big:
                chunks.append(line)
        if too_big:
            return None
        return b"\r\n".join(chunks) + (b"\r\n" if chunks else b"")

    async def delete(self, number: int) -> None:
        await self.simple(f"DELE {number}")
