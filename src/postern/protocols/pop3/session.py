"""One POP3 session: AUTHORIZATION -> TRANSACTION -> UPDATE (RFC 1939).

The session takes typed commands (``parser``) and answers ``Reply`` objects; it does
no socket I/O of its own (``server`` reads and writes). It calls the domain: an
``authenticate`` callable and the mailstore's ``Pop3View``.

Choices:
- The maildrop is the user's INBOX as it was at login: message numbers and sizes do
  not change during the session. Mail arriving meanwhile shows at the next login.
- Several sessions of one user may be open at once (as in WildDuck and Dovecot's
  default), rather than the traditional exclusive lock ([IN-USE]): each works on its
  snapshot, and the UPDATE state skips messages another session removed first. A
  lock would also leave a user locked out until a half-dead connection times out.
- UPDATE moves the deleted messages to Trash (they can be restored; Trash's
  retention removes them later) and marks the retrieved ones \\Seen.
- UIDL is the INBOX's UIDVALIDITY and the message's UID.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import Enum

from postern import __version__
from postern.accounts.service import ApplicationPasswordRequired
from postern.errors import AuthFailed, DomainError, Forbidden, NotFound, RateLimited
from postern.mailstore.pop3_view import Maildrop, Pop3View
from postern.protocols.pop3 import parser
from postern.protocols.pop3.encode import wire_body
from postern.protocols.pop3.parser import SaslCancel

log = logging.getLogger(__name__)

# The login: (login, password) -> user id; raises AuthFailed, Forbidden, RateLimited.
Authenticate = Callable[[str, str], Awaitable[str]]

MAX_AUTH_FAILURES = 5
MAX_BAD_COMMANDS = 20
LIST_BATCH = 512  # LIST and UIDL lines per write
DAY_MS = 24 * 3600 * 1000


class State(Enum):
    AUTHORIZATION = "AUTHORIZATION"
    TRANSACTION = "TRANSACTION"
    UPDATE = "UPDATE"


@dataclass(slots=True)
class Reply:
    """A status line ("+OK ..." or "-ERR ..."), maybe followed by a multi-line body
    (without its final "." line: the server adds it)."""

    line: str
    body: AsyncIterator[bytes] | Iterable[bytes] | None = None
    close: bool = False  # close the connection after this reply
    start_tls: bool = False  # begin TLS after this reply (STLS)
    sasl: bool = False  # the next line is a SASL response, for ``Session.sasl_response``

    @property
    def ok(self) -> bool:
        return self.line.startswith("+")


def ok(text: str, body: AsyncIterator[bytes] | Iterable[bytes] | None = None, **flags: bool) -> Reply:
    return Reply(f"+OK {text}" if text else "+OK", body, **flags)


def err(text: str, code: str | None = None, **flags: bool) -> Reply:
    return Reply(f"-ERR [{code}] {text}" if code else f"-ERR {text}", None, **flags)


class Session:
    def __init__(
        self,
        view: Pop3View,
        authenticate: Authenticate,
        *,
        secure: bool,
        plaintext_allowed: bool,
        tls_available: bool,
    ):
        self.view = view
        self._authenticate = authenticate
        # TLS is active (implicit, or after STLS).
        self.secure = secure
        # USER/PASS and AUTH PLAIN are allowed (over TLS, or on loopback).
        self.plaintext_allowed = plaintext_allowed or secure
        self.tls_available = tls_available
        self.state = State.AUTHORIZATION
        self.user_id: str | None = None
        self._login: str | None = None
        self._failures = 0
        self._bad = 0
        self.maildrop: Maildrop | None = None
        self._deleted = bytearray()
        self._retrieved: set[int] = set()
        self._count = 0
        self._octets = 0

    # Greeting, errors, TLS ---------------------------------------------------------------

    def greeting(self) -> Reply:
        return ok("postern POP3 server ready")

    def bad_command(self, message: str) -> Reply:
        self._bad += 1
        if self._bad >= MAX_BAD_COMMANDS:
            return err(f"{message}; too many bad commands, closing", close=True)
        return err(message)

    def line_too_long(self) -> Reply:
        return self.bad_command("Line too long")

    def internal_error(self) -> Reply:
        return err("Internal error, try again later", "SYS/TEMP")

    def tls_started(self) -> None:
        """STLS succeeded: forget what was said in the clear (RFC 2595 section 4)."""
        self.secure = True
        self.plaintext_allowed = True
        self._login = None

    # Commands -------------------------------------------------------------------------------

    async def handle(self, command: parser.Command) -> Reply:
        self._bad = 0
        if isinstance(command, parser.Capa):
            return ok("Capability list follows", self._capabilities())
        if isinstance(command, parser.Quit):
            return await self._quit()
        if self.state is State.AUTHORIZATION:
            return await self._authorization(command)
        if self.state is State.TRANSACTION:
            return await self._transaction(command)
        return err("Command not valid in this state")

    def _capabilities(self) -> list[bytes]:
        capabilities = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self.state is State.AUTHORIZATION:
            if self.plaintext_allowed:
                capabilities += ["USER", "SASL PLAIN"]
            if self.tls_available and not self.secure:
                capabilities.append("STLS")
        retention = self.maildrop.retention_ms if self.maildrop is not None else None
        # Messages leave the INBOX only when deleted, or by the folder's retention.
        capabilities.append(f"EXPIRE {max(1, -(-retention // DAY_MS))}" if retention else "EXPIRE NEVER")
        capabilities.append(f"IMPLEMENTATION postern-{__version__}")
        return [c.encode() + b"\r\n" for c in capabilities]

    async def _authorization(self, command: parser.Command) -> Reply:
        if isinstance(command, parser.Stls):
            if self.secure:
                return err("TLS is already active")
            if not self.tls_available:
                return err("TLS is not available")
            return ok("Begin TLS negotiation", start_tls=True)
        if isinstance(command, parser.User):
            if not self.plaintext_allowed:
                return err("Plaintext authentication is not allowed without TLS; use STLS first", "AUTH")
            self._login = command.name
            return ok("Send your password")
        if isinstance(command, parser.Pass):
            if not self.plaintext_allowed:
                return err("Plaintext authentication is not allowed without TLS; use STLS first", "AUTH")
            if self._login is None:
                return err("Send USER first")
            login, self._login = self._login, None
            return await self._log_in(login, command.password)
        if isinstance(command, parser.Auth):
            return await self._auth(command)
        return err("Command not valid before login")

    async def _auth(self, command: parser.Auth) -> Reply:
        if command.mechanism is None:
            return ok("Mechanisms follow", [b"PLAIN\r\n"] if self.plaintext_allowed else [])
        if command.mechanism != "PLAIN":
            return err("Unsupported authentication mechanism")
        if not self.plaintext_allowed:
            return err("Plaintext authentication is not allowed without TLS; use STLS first", "AUTH")
        if command.initial is None:
            return Reply("+ ", sasl=True)
        return await self.sasl_response(command.initial)

    async def sasl_response(self, line: bytes) -> Reply:
        """The client's response to AUTH PLAIN (the initial one, or after "+ ")."""
        response = parser.parse_sasl_response(line)
        if isinstance(response, SaslCancel):
            return err("Authentication cancelled")
        if isinstance(response, parser.ParseError):
            return err(f"{response.message}", "AUTH")
        parts = response.split(b"\0")
        if len(parts) != 3:
            return await self._failed("Malformed PLAIN response")
        try:
            authzid, authcid, password = (p.decode("utf-8") for p in parts)
        except UnicodeDecodeError:
            return await self._failed("Malformed PLAIN response")
        if not authcid or not password:
            return await self._failed("Malformed PLAIN response")
        if authzid and authzid != authcid:
            return await self._failed("Logging in as another user is not allowed")
        return await self._log_in(authcid, password)

    async def _failed(self, message: str) -> Reply:
        self._failures += 1
        return err(message, "AUTH", close=self._failures >= MAX_AUTH_FAILURES)

    async def _log_in(self, login: str, password: str) -> Reply:
        try:
            user_id = await self._authenticate(login, password)
        except RateLimited as error:
            return err(f"Too many attempts, try again in {error.retry_after} seconds", "SYS/TEMP")
        except ApplicationPasswordRequired:
            return await self._failed("Two-factor authentication is on: log in with an application password")
        except Forbidden:
            self._failures += 1
            return err("This account is disabled", "AUTH", close=self._failures >= MAX_AUTH_FAILURES)
        except (AuthFailed, DomainError):
            return await self._failed("Invalid login or password")
        try:
            maildrop = await self.view.open_maildrop(user_id)
        except Exception:
            log.exception("POP3: could not open the maildrop of %s", user_id)
            return err("The mailbox cannot be opened now, try again later", "SYS/TEMP")
        self.user_id = user_id
        self.maildrop = maildrop
        self.state = State.TRANSACTION
        self._deleted = bytearray(len(maildrop))
        self._count = len(maildrop)
        self._octets = sum(maildrop.sizes)
        return ok(f"Logged in, {self._count} messages ({self._octets} octets)")

    async def _transaction(self, command: parser.Command) -> Reply:
        maildrop = self.maildrop
        assert maildrop is not None
        if isinstance(command, parser.Stat):
            return ok(f"{self._count} {self._octets}")
        if isinstance(command, parser.Noop):
            return ok("")
        if isinstance(command, parser.Rset):
            self._deleted = bytearray(len(maildrop))
            self._count = len(maildrop)
            self._octets = sum(maildrop.sizes)
            return ok(f"Maildrop has {self._count} messages ({self._octets} octets)")
        if isinstance(command, (parser.List, parser.Uidl)) and command.msg is None:
            if isinstance(command, parser.List):
                return ok(f"{self._count} messages ({self._octets} octets)", self._listing(lambda i: str(maildrop.sizes[i])))
            return ok("Unique-ID listing follows", self._listing(maildrop.unique_id))
        if isinstance(command, (parser.List, parser.Uidl, parser.Retr, parser.Top, parser.Dele)):
            assert command.msg is not None
            index = command.msg - 1
            if index >= len(maildrop):
                return err("No such message")
            if self._deleted[index]:
                return err("Message already deleted")
            if isinstance(command, parser.List):
                return ok(f"{command.msg} {maildrop.sizes[index]}")
            if isinstance(command, parser.Uidl):
                return ok(f"{command.msg} {maildrop.unique_id(index)}")
            if isinstance(command, parser.Dele):
                self._deleted[index] = 1
                self._count -= 1
                self._octets -= maildrop.sizes[index]
                return ok(f"Message {command.msg} deleted")
            try:
                chunks = await self.view.open_message(maildrop, maildrop.uids[index])
            except NotFound:
                return err("This message was removed by another session", "SYS/PERM")
            if isinstance(command, parser.Retr):
                self._retrieved.add(index)
                return ok(f"{maildrop.sizes[index]} octets", wire_body(chunks))
            return ok("Top of message follows", wire_body(chunks, command.lines))
        return err("Command not valid after login")

    def _listing(self, value: Callable[[int], str]) -> Iterator[bytes]:
        batch: list[str] = []
        for index in range(len(self._deleted)):
            if not self._deleted[index]:
                batch.append(f"{index + 1} {value(index)}\r\n")
                if len(batch) >= LIST_BATCH:
                    yield "".join(batch).encode()
                    batch = []
        if batch:
            yield "".join(batch).encode()

    async def _quit(self) -> Reply:
        if self.state is not State.TRANSACTION:
            return ok("postern POP3 server signing off", close=True)
        self.state = State.UPDATE
        maildrop = self.maildrop
        assert maildrop is not None and self.user_id is not None
        deleted = [maildrop.uids[i] for i in range(len(maildrop)) if self._deleted[i]]
        retrieved = [maildrop.uids[i] for i in sorted(self._retrieved)]
        try:
            moved = await self.view.update(self.user_id, maildrop, seen=retrieved, deleted=deleted)
        except Exception:
            log.exception("POP3: the UPDATE state failed for %s", self.user_id)
            return err("Some deleted messages not removed", "SYS/TEMP", close=True)
        if deleted:
            return ok(f"postern POP3 server signing off ({moved} messages moved to Trash)", close=True)
        return ok("postern POP3 server signing off", close=True)
