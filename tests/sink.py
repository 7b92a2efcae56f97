"""A scriptable SMTP server on loopback that stands in for the rest of the internet."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from aiosmtpd.smtp import SMTP, Envelope, Session

from postern.delivery.dns import StaticResolver


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    helo: str
    tls: bool


@dataclass
class SmtpSink:
    """Records what it receives. Queue replies to script failures: ``rcpt_replies``
    and ``data_replies`` are consumed one per command (default: accept)."""

    host: str = "127.0.0.1"
    port: int = 0
    received: list[Received] = field(default_factory=list)
    rcpt_replies: deque[str] = field(default_factory=deque)
    data_replies: deque[str] = field(default_factory=deque)
    resolver: StaticResolver | None = None
    _server: asyncio.Server | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    # Every connection a client opened, in order (a test can close one).
    connections: list[SMTP] = field(default_factory=list)

    async def start(self) -> None:
        sink = self

        class Handler:
            async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]) -> str:
                reply = sink.rcpt_replies.popleft() if sink.rcpt_replies else "250 2.1.5 Ok"
                if reply.startswith("2"):
                    envelope.rcpt_tos.append(address)
                return reply

            async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
                reply = sink.data_replies.popleft() if sink.data_replies else "250 2.0.0 Ok: queued by sink"
                if reply.startswith("2"):
                    sink.received.append(
                        Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content or b"", session.host_name or "", bool(session.ssl))
                    )
                    sink._arrived.set()
                return reply

        loop = asyncio.get_running_loop()
        def connection() -> SMTP:
            server = SMTP(Handler(), hostname="sink.example.net", decode_data=False, enable_SMTPUTF8=True)
            sink.connections.append(server)
            return server

        self._server = await loop.create_server(
            connection, self.host, 0
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def serve_domain(self, domain: str) -> None:
        """Publish an MX record for ``domain`` that leads to this sink."""
        assert self.resolver is not None
        self.resolver.set("MX", domain, [(10, "sink.example.net")])
        self.resolver.set("A", "sink.example.net", [self.host])

    async def wait_for(self, count: int, timeout: float = 15.0) -> list[Received]:
        """Wait until ``count`` messages have arrived (or fail after ``timeout``)."""
        async def arrived() -> None:
            while len(self.received) < count:
                self._arrived.clear()
                await self._arrived.wait()

        await asyncio.wait_for(arrived(), timeout)
        return self.received

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def __repr__(self) -> str:
        return f"SmtpSink(port={self.port}, received={len(self.received)})"


