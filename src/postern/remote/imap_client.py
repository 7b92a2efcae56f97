"""A small IMAP4rev1 client for fetching: TLS (implicit or STARTTLS), LOGIN or
AUTHENTICATE (PLAIN, XOAUTH2, OAUTHBEARER), LIST, EXAMINE/SELECT, UID SEARCH, UID
FETCH with BODY.PEEK (untagged answers handed over one by one, so that a mailbox
of any size streams), UID STORE/EXPUNGE for delete-after-fetch, and IDLE.

Every answer is parsed strictly: anything that is not IMAP raises ProtocolError,
and a message body is only ever returned whole. Nothing here logs; in particular
no command (which may carry a secret) is ever written anywhere."""

from __future__ import annotations

import base64
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from postern.remote.wire import (
    AuthenticationFailed,
    Connection,
    Endpoint,
    ProtocolError,
    RemoteError,
    TimedOut,
)

_LITERAL_END = re.compile(rb"\{(\d{1,12})\+?\}$")
_STATUS = (b"OK", b"NO", b"BAD", b"BYE", b"PREAUTH")
_CODE = re.compile(rb"^\[([A-Za-z0-9.\-]+)(?: ([^\]]*))?\]")


class Str(bytes):
    """A quoted string or a literal (an atom is plain ``bytes``)."""


class TooBig:
    """A literal larger than the client accepts; its bytes were read and dropped."""

    def __init__(self, size: int):
        self.size = size


@dataclass(slots=True)
class Response:
    tag: bytes  # b"*", b"+" or the command's tag
    tokens: list[Any]  # nested lists of bytes / Str / TooBig
    text: bytes = b""  # the first line as received (literals excluded)

    def word(self, index: int) -> bytes:
        if index < len(self.tokens) and isinstance(self.tokens[index], bytes):
            return bytes(self.tokens[index]).upper()
        return b""


def tokenize(segments: list[bytes | Str | TooBig]) -> list[Any]:
    """The nested token structure of one response (segments: text and literals)."""
    flat: list[Any] = []
    for segment in segments:
        if isinstance(segment, (Str, TooBig)):
            flat.append(segment)
            continue
        _scan(segment, flat)
    root: list[Any] = []
    stack = [root]
    for token in flat:
        if token == "(":
            child: list[Any] = []
            stack[-1].append(child)
            stack.append(child)
        elif token == ")":
            if len(stack) == 1:
                raise ProtocolError("unbalanced parenthesis in a server answer")
            stack.pop()
        else:
            stack[-1].append(token)
    if len(stack) != 1:
        raise ProtocolError("unbalanced parenthesis in a server answer")
    return root


def _scan(text: bytes, out: list[Any]) -> None:
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == 0x20:
            i += 1
        elif c == 0x28:
            out.append("(")
            i += 1
        elif c == 0x29:
            out.append(")")
            i += 1
        elif c == 0x22:
            i += 1
            buf = bytearray()
            while True:
                if i >= n:
                    raise ProtocolError("unterminated quoted string in a server answer")
                ch = text[i]
                if ch == 0x5C and i + 1 < n:
                    buf.append(text[i + 1])
                    i += 2
                elif ch == 0x22:
                    i += 1
                    break
                else:
                    buf.append(ch)
                    i += 1
            out.append(Str(bytes(buf)))
        else:
            start = i
            depth = 0
            while i < n:
                ch = text[i]
                if ch == 0x5B:
                    depth += 1
                elif ch == 0x5D:
                    depth = max(0, depth - 1)
                elif depth == 0 and ch in (0x20, 0x28, 0x29):
                    break
                i += 1
            out.append(text[start:i])


def quote(value: str) -> bytes:
    """A string argument: quoted (no CR, LF or NUL may reach here)."""
    if any(ch in value for ch in "\r\n\x00"):
        raise ValueError("line breaks and NUL cannot be sent")
    return b'"' + value.encode("utf-8").replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def mailbox_name(value: str) -> bytes:
    """A mailbox name as IMAP wants it (modified UTF-7 for non-ASCII)."""
    return quote(_utf7_encode(value))


def _utf7_encode(name: str) -> str:
    out, pending = [], ""
    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            if pending:
                out.append("&" + base64.b64encode(pending.encode("utf-16-be")).decode().rstrip("=").replace("/", ",") + "-")
                pending = ""
            out.append("&-" if ch == "&" else ch)
        else:
            pending += ch
    if pending:
        out.append("&" + base64.b64encode(pending.encode("utf-16-be")).decode().rstrip("=").replace("/", ",") + "-")
    return "".join(out)


def utf7_decode(name: bytes) -> str:
    text = name.decode("ascii", "replace")
    out, i = [], 0
    while i < len(text):
        if text[i] == "&":
            end = text.find("-", i)
            if end < 0:
                raise ProtocolError("bad mailbox name from the server")
            chunk = text[i + 1 : end]
            if not chunk:
                out.append("&")
            else:
                raw = chunk.replace(",", "/")
                try:
                    out.append(base64.b64decode(raw + "=" * (-len(raw) % 4)).decode("utf-16-be"))
                except (ValueError, UnicodeDecodeError):
                    raise ProtocolError("bad mailbox name from the server") from None
            i = end + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


@dataclass(slots=True)
class Selected:
    name: str
    uidvalidity: int
    uidnext: int | None
    exists: int


@dataclass(slots=True)
class FetchItem:
    seq: int
    uid: int | None = None
    body: bytes | None = None
    too_big: int | None = None
    internal_date: str | None = None
    size: int | None = None
    header: bytes | None = None
    attrs: dict[bytes, Any] = field(default_factory=dict)


def fetch_item(response: Response) -> FetchItem | None:
    """A ``* n FETCH (...)`` answer, or None for any other."""
    tokens = response.tokens
    if response.tag != b"*" or len(tokens) < 2 or response.word(1) != b"FETCH":
        return None
    if not isinstance(tokens[0], bytes) or not tokens[0].isdigit() or len(tokens) < 3 or not isinstance(tokens[2], list):
        raise ProtocolError("malformed FETCH answer")
    item = FetchItem(int(tokens[0]))
    pairs = tokens[2]
    if len(pairs) % 2:
        raise ProtocolError("malformed FETCH answer")
    for key, value in zip(pairs[0::2], pairs[1::2]):
        if not isinstance(key, bytes):
            raise ProtocolError("malformed FETCH answer")
        name = bytes(key).upper()
        item.attrs[name] = value
        if name == b"UID":
            item.uid = _number(value)
        elif name == b"RFC822.SIZE":
            item.size = _number(value)
        elif name == b"INTERNALDATE" and isinstance(value, bytes):
            item.internal_date = value.decode("ascii", "replace")
        elif name.startswith((b"BODY[HEADER", b"RFC822.HEADER")):
            item.header = bytes(value) if isinstance(value, bytes) else None
        elif name in (b"BODY[]", b"RFC822") or name.startswith(b"BODY[]<"):
            if isinstance(value, TooBig):
                item.too_big = value.size
            elif (isinstance(value, bytes) and value.upper() != b"NIL") or isinstance(value, Str):
                item.body = bytes(value)
    return item


def _number(value: Any) -> int:
    if not isinstance(value, bytes) or isinstance(value, Str) or not value.isdigit() or len(value) > 12:
        raise ProtocolError("malformed number in a server answer")
    return int(value)


Untagged = Callable[[Response], Awaitable[None]]


class ImapClient:
    def __init__(self, endpoint: Endpoint, context: ssl.SSLContext | None, max_literal: int):
        self.endpoint, self.context, self.max_literal = endpoint, context, max_literal
        self.conn: Connection | None = None
        self.capabilities: set[bytes] = set()
        self._tag = 0
        self.exists: int | None = None

    async def connect(self) -> None:
        self.conn = await Connection.open(self.endpoint, self.context)
        greeting = await self._response()
        if greeting.tag != b"*" or greeting.word(0) not in (b"OK", b"PREAUTH"):
            raise ProtocolError("the server did not greet as an IMAP server")
        self._codes(greeting)
        if self.endpoint.tls == "starttls":
            if not self.capabilities:
                await self.command(b"CAPABILITY")
            if b"STARTTLS" not in self.capabilities:
                raise RemoteError("the server does not offer STARTTLS")
            await self.command(b"STARTTLS")
            assert self.context is not None
            await self.conn.start_tls(self.context)
            self.capabilities = set()
        if not self.capabilities:
            await self.command(b"CAPABILITY")

    async def close(self) -> None:
        if self.conn is not None:
            try:
                await self.command(b"LOGOUT")
            except RemoteError:
                pass
            await self.conn.close()
            self.conn = None

    # Reading answers ------------------------------------------------------------------

    async def _response(self, timeout: float | None = None) -> Response:
        assert self.conn is not None
        segments: list[bytes | Str | TooBig] = []
        first = b""
        total = 0
        while True:
            line = await self.conn.line(timeout)
            total += len(line)
            if total > 1 << 20:
                raise ProtocolError("a server answer too long")
            if not segments:
                first = line
            found = _LITERAL_END.search(line)
            if not found:
                segments.append(line)
                break
            segments.append(line[: found.start()])
            size = int(found.group(1))
            if size > self.max_literal:
                await self.conn.skip(size)
                segments.append(TooBig(size))
            else:
                segments.append(Str(await self.conn.exactly(size)))
            timeout = None
        head, _, rest = first.partition(b" ")
        if not head:
            raise ProtocolError("an empty server answer")
        if head == b"+":
            return Response(b"+", [], rest)
        word = rest.partition(b" ")[0].upper()
        if word in _STATUS and len(segments) == 1:
            # Free text follows a status (it may hold anything): not tokenized.
            return Response(head, [word], rest)
        segments[0] = bytes(segments[0]).partition(b" ")[2]  # type: ignore[arg-type]  # the first segment is the line's own bytes
        return Response(head, tokenize(segments), rest)

    def _codes(self, response: Response) -> None:
        """Capabilities in an OK's response code, and EXISTS counts."""
        found = _CODE.match(response.text.partition(b" ")[2]) if response.word(0) in (b"OK", b"PREAUTH") else None
        if found and found.group(1).upper() == b"CAPABILITY":
            self.capabilities = {c.upper() for c in (found.group(2) or b"").split()}
        if response.word(0) == b"CAPABILITY":
            self.capabilities = {bytes(c).upper() for c in response.tokens[1:] if isinstance(c, bytes)}

    def _next_tag(self) -> bytes:
        self._tag += 1
        return b"P%d" % self._tag

    async def command(self, *parts: bytes, on_untagged: Untagged | None = None, expect_ok: bool = True) -> tuple[bytes, list[Response]]:
        """Run one command; its status (OK/NO/BAD) and the untagged answers not
        handed to ``on_untagged``."""
        assert self.conn is not None
        tag = self._next_tag()
        await self.conn.send(tag + b" " + b" ".join(parts) + b"\r\n")
        return await self._until_tagged(tag, on_untagged, expect_ok)

    async def _until_tagged(self, tag: bytes, on_untagged: Untagged | None, expect_ok: bool) -> tuple[bytes, list[Response]]:
        collected: list[Response] = []
        while True:
            response = await self._response()
            if response.tag == tag:
                status = response.word(0)
                if status not in (b"OK", b"NO", b"BAD"):
                    raise ProtocolError("a tagged answer that is not OK, NO or BAD")
                self._codes(response)
                if expect_ok and status != b"OK":
                    raise RemoteError(f"the server answered {status.decode()}: {_safe_text(response.text)}")
                return status, collected
            if response.tag == b"+":
                raise ProtocolError("an unexpected continuation from the server")
            if response.tag != b"*":
                raise ProtocolError("an answer with an unknown tag")
            self._codes(response)
            if response.word(0) == b"BYE":
                collected.append(response)
                continue
            if len(response.tokens) >= 2 and response.word(1) == b"EXISTS" and isinstance(response.tokens[0], bytes):
                self.exists = _number(response.tokens[0])
            if on_untagged is not None:
                await on_untagged(response)
            else:
                collected.append(response)

    # Authentication --------------------------------------------------------------------

    async def login(self, user: str, password: str) -> None:
        if b"AUTH=PLAIN" in self.capabilities:
            initial = base64.b64encode(b"\x00" + user.encode() + b"\x00" + password.encode())
            await self._authenticate(b"PLAIN", initial)
        else:
            if b"LOGINDISABLED" in self.capabilities:
                raise AuthenticationFailed("the server does not allow a login here")
            try:
                status, _ = await self.command(b"LOGIN", quote(user), quote(password), expect_ok=False)
            except ValueError:
                raise AuthenticationFailed("the login or password holds characters IMAP cannot send") from None
            if status != b"OK":
                raise AuthenticationFailed("the server refused the login or password")
        await self._after_login()

    async def login_oauth(self, mechanism: str, user: str, token: str, host: str, port: int) -> None:
        if mechanism == "OAUTHBEARER":
            raw = f"n,a={user},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01"
        else:
            raw = f"user={user}\x01auth=Bearer {token}\x01\x01"
        await self._authenticate(mechanism.encode(), base64.b64encode(raw.encode()))
        await self._after_login()

    async def _authenticate(self, mechanism: bytes, initial: bytes) -> None:
        assert self.conn is not None
        tag = self._next_tag()
        if b"SASL-IR" in self.capabilities:
            await self.conn.send(tag + b" AUTHENTICATE " + mechanism + b" " + initial + b"\r\n")
        else:
            await self.conn.send(tag + b" AUTHENTICATE " + mechanism + b"\r\n")
        sent_initial = b"SASL-IR" in self.capabilities
        for _ in range(4):
            response = await self._response()
            if response.tag == b"+":
                # The first challenge asks for the initial response; a later one is an
                # error report (XOAUTH2, OAUTHBEARER): an empty line ends the exchange.
                await self.conn.send((b"" if sent_initial else initial) + b"\r\n")
                sent_initial = True
                continue
            if response.tag == b"*":
                self._codes(response)
                continue
            if response.tag != tag:
                raise ProtocolError("an answer with an unknown tag")
            self._codes(response)
            if response.word(0) != b"OK":
                raise AuthenticationFailed("the server refused the credentials")
            return
        raise ProtocolError("the server keeps asking during authentication")

    async def _after_login(self) -> None:
        self.capabilities = set()
        await self.command(b"CAPABILITY")

    # Mailboxes and messages ---------------------------------------------------------------

    async def list_folders(self) -> list[tuple[str, set[bytes]]]:
        _, answers = await self.command(b"LIST", b'""', b'"*"')
        folders = []
        for answer in answers:
            if answer.word(0) != b"LIST":
                continue
            if len(answer.tokens) < 4 or not isinstance(answer.tokens[1], list):
                raise ProtocolError("malformed LIST answer")
            flags = {bytes(f).upper() for f in answer.tokens[1] if isinstance(f, bytes)}
            name = answer.tokens[3]
            if not isinstance(name, bytes):
                raise ProtocolError("malformed LIST answer")
            folders.append((utf7_decode(bytes(name)), flags))
        return folders

    async def select(self, name: str, readonly: bool) -> Selected:
        self.exists = None
        status, answers = await self.command(b"EXAMINE" if readonly else b"SELECT", mailbox_name(name), expect_ok=False)
        if status != b"OK":
            raise FolderMissing(name)
        uidvalidity = uidnext = None
        for answer in answers:
            found = _CODE.match(answer.text.partition(b" ")[2]) if answer.word(0) == b"OK" else None
            if found and found.group(1).upper() == b"UIDVALIDITY":
                uidvalidity = _digits(found.group(2))
            elif found and found.group(1).upper() == b"UIDNEXT":
                uidnext = _digits(found.group(2))
        if uidvalidity is None:
            raise ProtocolError("the server gave no UIDVALIDITY")
        return Selected(name, uidvalidity, uidnext, self.exists or 0)

    async def uid_search(self, criteria: bytes) -> list[int]:
        _, answers = await self.command(b"UID SEARCH", criteria)
        uids: list[int] = []
        for answer in answers:
            if answer.word(0) == b"SEARCH":
                uids.extend(_number(t) for t in answer.tokens[1:])
        return uids

    async def uid_fetch(self, uids: str, items: bytes, on_item: Callable[[FetchItem], Awaitable[None]]) -> None:
        async def untagged(response: Response) -> None:
            item = fetch_item(response)
            if item is not None:
                await on_item(item)

        await self.command(b"UID FETCH", uids.encode("ascii"), items, on_untagged=untagged)

    async def delete_uids(self, uids: list[int]) -> None:
        if not uids:
            return
        ranges = uid_ranges(uids).encode()
        await self.command(b"UID STORE", ranges, b"+FLAGS.SILENT (\\Deleted)")
        if b"UIDPLUS" in self.capabilities:
            await self.command(b"UID EXPUNGE", ranges)
        else:
            await self.command(b"EXPUNGE")

    async def idle(self, timeout: float) -> bool:
        """Wait in IDLE until the selected folder has new mail (True) or ``timeout``
        passes (False)."""
        assert self.conn is not None
        tag = self._next_tag()
        await self.conn.send(tag + b" IDLE\r\n")
        first = await self._response()
        if first.tag != b"+":
            raise ProtocolError("the server did not accept IDLE")
        news = False
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                response = await self._response(timeout=left)
            except TimedOut:
                break
            if response.tag == b"*" and len(response.tokens) >= 2 and response.word(1) in (b"EXISTS", b"RECENT"):
                news = True
                break
            if response.tag == b"*" and response.word(0) == b"BYE":
                raise RemoteError("the server ended the connection")
        await self.conn.send(b"DONE\r\n")
        await self._until_tagged(tag, None, expect_ok=True)
        return news


def uid_ranges(uids: list[int]) -> str:
    """A UID set in ranges: [1, 2, 3, 7] -> "1:3,7"."""
    parts: list[str] = []
    ordered = sorted(set(uids))
    start = previous = ordered[0] if ordered else 0
    for uid in ordered[1:] + [None]:  # type: ignore[list-item]
        if uid is not None and uid == previous + 1:
            previous = uid
            continue
        parts.append(str(start) if start == previous else f"{start}:{previous}")
        if uid is not None:
            start = previous = uid
    return ",".join(parts)


class FolderMissing(RemoteError):
    def __init__(self, name: str):
        super().__init__(f"the folder {name!r} does not exist on the server")
        self.name = name


def _digits(value: bytes | None) -> int:
    text = (value or b"").strip()
    if not text.isdigit() or len(text) > 12:
        raise ProtocolError("malformed number in a server answer")
    return int(text)


def _safe_text(text: bytes) -> str:
    return text.partition(b" ")[2][:200].decode("utf-8", "replace")
