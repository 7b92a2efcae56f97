"""What the IMAP and POP3 clients share: a connection (TLS from the start or after
STARTTLS/STLS, certificates verified), reads that are bounded in size and time, and
the errors a fetcher tells apart. A hostile or broken server can make a read fail
with ``ProtocolError``; it can never make one return half a message."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from pathlib import Path

# Longest line (or IMAP response text between literals) accepted from a server.
MAX_LINE = 8 << 20  # a POP3 message may hold very long lines (unwrapped HTML, base64)


class RemoteError(Exception):
    """Talking to the remote server failed; the message is safe to show (no secrets)."""


class ProtocolError(RemoteError):
    """The server said something that is not the protocol."""


class AuthenticationFailed(RemoteError):
    """The server refused the credentials."""


class TimedOut(RemoteError):
    """The server did not answer in time."""


class ConnectFailed(RemoteError):
    """No connection (refused, unreachable, TLS failure, timeout)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    tls: str  # ssl | starttls | plain
    timeout: float = 60.0


def client_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """Certificates verified against the system's CAs, or the operator's CA file."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class Connection:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        endpoint: Endpoint,
    ):
        self.reader, self.writer, self.endpoint = reader, writer, endpoint

    @classmethod
    async def open(cls, endpoint: Endpoint, context: ssl.SSLContext | None) -> Connection:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    endpoint.host,
                    endpoint.port,
                    ssl=context if endpoint.tls == "ssl" else None,
                    server_hostname=endpoint.host if endpoint.tls == "ssl" else None,
                    limit=MAX_LINE,
                ),
                endpoint.timeout,
            )
        except ssl.SSLCertVerificationError as error:
            raise ConnectFailed(f"TLS certificate of {endpoint.host} not trusted: {error.verify_message}") from None
        except (TimeoutError, OSError, ssl.SSLError) as error:
            raise ConnectFailed(f"cannot connect to {endpoint.host}:{endpoint.port}: {_reason(error)}") from None
        return cls(reader, writer, endpoint)

    async def start_tls(self, context: ssl.SSLContext) -> None:
        try:
            await asyncio.wait_for(
                self.writer.start_tls(context, server_hostname=self.endpoint.host),
                self.endpoint.timeout,
            )
        except ssl.SSLCertVerificationError as error:
            raise ConnectFailed(f"TLS certificate of {self.endpoint.host} not trusted: {error.verify_message}") from None
        except (TimeoutError, OSError, ssl.SSLError) as error:
            raise ConnectFailed(f"TLS with {self.endpoint.host} failed: {_reason(error)}") from None

    async def line(self, timeout: float | None = None) -> bytes:
        """One line, CRLF (or LF) removed."""
        try:
            data = await asyncio.wait_for(self.reader.readuntil(b"\n"), timeout or self.endpoint.timeout)
        except asyncio.LimitOverrunError:
            raise ProtocolError("the server sent a line too long") from None
        except asyncio.IncompleteReadError:
            raise RemoteError("the server closed the connection") from None
        except TimeoutError:
            raise TimedOut("the server did not answer in time") from None
        except (OSError, ssl.SSLError) as error:
            raise RemoteError(f"connection lost: {_reason(error)}") from None
        except ValueError:  # the stream's limit
            raise ProtocolError("the server sent a line too long") from None
        return data.rstrip(b"\r\n") if data.endswith(b"\r\n") else data[:-1]

    async def exactly(self, size: int) -> bytes:
        try:
            return await asyncio.wait_for(
                self.reader.readexactly(size),
                max(self.endpoint.timeout, size / 100_000),
            )
        except asyncio.IncompleteReadError:
            raise RemoteError("the server closed the connection in the middle of a message") from None
        except TimeoutError:
            raise RemoteError("the server did not answer in time") from None
        except (OSError, ssl.SSLError) as error:
            raise RemoteError(f"connection lost: {_reason(error)}") from None

    async def skip(self, size: int) -> None:
        while size > 0:
            chunk = await self.exactly(min(size, 1 << 20))
            size -= len(chunk)

    async def send(self, data: bytes) -> None:
        try:
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), self.endpoint.timeout)
        except TimeoutError:
            raise RemoteError("the server did not read in time") from None
        except (OSError, ssl.SSLError) as error:
            raise RemoteError(f"connection lost: {_reason(error)}") from None

    async def close(self) -> None:
        try:
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 5)
        except (TimeoutError, OSError, ssl.SSLError):
            pass


def _reason(error: BaseException) -> str:
    if isinstance(error, asyncio.TimeoutError):
        return "timed out"
    if isinstance(error, ssl.SSLError):
        return error.reason or "TLS error"
    return getattr(error, "strerror", None) or str(error) or type(error).__name__
