"""The bulk DATA reader (``DoorMixin._bulk_data``) against aiosmtpd's per-line one.

The same random DATA sections, cut into random pieces, go to two LMTP servers that
differ only in how they read DATA; each must give the same replies and hand the
handler the same bytes and the same lone-dot verdict. The pieces cover an end of data
split anywhere, dots at line starts, bare CR and LF, lines at and over the length
limit, data at and over the size limit, and commands pipelined after the end.
Also: replies held back while pipelined commands wait leave in order, and the
regular-expression path of MAIL/RCPT address parsing agrees with aiosmtpd's.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP as AioSMTP

from postern.protocols.smtp.session import ConnectionLimiter, DoorLMTP, DoorSMTP, _may_have_long_line

LIMIT = 3000  # data_size_limit of the servers under test


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[bytes, bool]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.seen.append((envelope.original_content, server.lone_dot_in_data))
        return "250 2.0.0 Ok"


class PerLineLMTP(DoorLMTP):
    bulk_data = False


async def start(protocol: type, recorder: Recorder) -> tuple[asyncio.Server, int]:
    limiter = ConnectionLimiter(100)

    def factory() -> Any:
        session = protocol(recorder, hostname="test", data_size_limit=LIMIT, decode_data=False, timeout=30)
        session.limiter = limiter
        return session

    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def exchange(port: int, pieces: list[bytes]) -> list[bytes]:
    """One transaction whose DATA section is ``pieces`` (sent one by one, the last
    with a pipelined NOOP after the end); every reply line until the NOOP's."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await reader.readline()
        writer.write(b"LHLO client\r\n")
        while (await reader.readline())[3:4] == b"-":
            pass
        writer.write(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
        replies = [await reader.readline() for _ in range(3)]
        if not replies[-1].startswith(b"354"):
            return replies
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0)
        writer.write(b"NOOP\r\n")
        while True:
            line = await asyncio.wait_for(reader.readline(), 30)
            replies.append(line)
            if not line or line.startswith(b"250 OK") or line.startswith(b"250 2.0.0 OK") or b"NOOP" in line:
                break
            if len(replies) > 8:
                break
        return replies
    finally:
        writer.close()


def random_section(rng: random.Random) -> bytes:
    """A DATA section as a client sends it, ending with CRLF "." CRLF."""
    kinds = [
        lambda: b"plain text line",
        lambda: b"." + b"x" * rng.randrange(0, 5),
        lambda: b"..dotted",
        lambda: b".",  # a lone dot inside a line break that is not CRLF below
        lambda: b"x" * rng.choice([997, 998, 999, 1000, 1001, 1002, 1500]),
        lambda: b"bare\rcr",
        lambda: b"bare\nlf",
        lambda: b"\r",
        lambda: b"\n.",
        lambda: b".\n",
        lambda: b".\r",
        lambda: b"",
        lambda: bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))).replace(b"\r\n", b"--"),
    ]
    lines = [rng.choice(kinds)() for _ in range(rng.randrange(0, 12))]
    if rng.random() < 0.2:
        lines += [b"y" * 200] * rng.randrange(10, 20)  # over the size limit
    body = b"".join(line + b"\r\n" for line in lines)
    # Where "\r\n.\r\n" already occurs, the data ends there: the rest is pipelined
    # garbage for both servers alike, which is fine, but keep it rare.
    return body + b".\r\n"


def cut(rng: random.Random, data: bytes) -> list[bytes]:
    pieces, start = [], 0
    while start < len(data):
        size = rng.choice([1, 2, 3, 4, 5, 7, 64, 1000, 4096])
        pieces.append(data[start : start + size])
        start += size
    return pieces


async def test_bulk_reader_matches_aiosmtpd() -> None:
    bulk_seen, line_seen = Recorder(), Recorder()
    bulk, bulk_port = await start(DoorLMTP, bulk_seen)
    per_line, line_port = await start(PerLineLMTP, line_seen)
    rng = random.Random(20261121)
    try:
        for case in range(150):
            section = random_section(rng)
            if b"\r\n.\r\n" in section[:-3] or section.startswith(b".\r\n") and len(section) > 3:
                continue  # ends early: covered by the pipelining test below
            pieces = cut(rng, section)
            got_bulk = await exchange(bulk_port, pieces)
            got_line = await exchange(line_port, pieces)
            assert got_bulk == got_line, (case, section)
            assert bulk_seen.seen == line_seen.seen, (case, section)
        assert len(bulk_seen.seen) > 50  # most cases reached the handler
    finally:
        for server in (bulk, per_line):
            server.close()


@pytest.mark.parametrize(
    "section",
    [
        b".\r\n",  # an empty message
        b"a\r\n.\r\n",
        b"\r\n.\r\n",
        b"..\r\n.\r\n",
        b"a\r\n..\r\n...\r\n.\r\n",
        b"x" * 999 + b"\r\n.\r\n",  # the longest line aiosmtpd takes (1001 with CRLF)
        b"x" * 1000 + b"\r\n.\r\n",
        b"y" * 200 + b"\r\n" + b"x" * 3000 + b"\r\n.\r\n",
        b"x" * 3000 + b"\r\n" + b"y" * 3000 + b"\r\n.\r\n",
        (b"y" * 998 + b"\r\n") * 3 + b"x" * 1200 + b"\r\n.\r\n",  # too much, then too long
    ],
)
async def test_edge_cases_match_aiosmtpd(section: bytes) -> None:
    bulk_seen, line_seen = Recorder(), Recorder()
    bulk, bulk_port = await start(DoorLMTP, bulk_seen)
    per_line, line_port = await start(PerLineLMTP, line_seen)
    try:
        for pieces in ([section], [bytes([b]) for b in section]):
            assert await exchange(bulk_port, pieces) == await exchange(line_port, pieces)
        assert bulk_seen.seen == line_seen.seen
    finally:
        for server in (bulk, per_line):
            server.close()


async def test_pipelined_commands_after_the_data_and_held_replies() -> None:
    recorder = Recorder()
    server, port = await start(DoorLMTP, recorder)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.readline()
        # Everything in one write: two whole transactions, then QUIT.
        one = b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
        writer.write(b"LHLO client\r\n" + one + b"first\r\n.\r\n" + one + b"..second\r\n.\r\nQUIT\r\n")
        data = await asyncio.wait_for(reader.read(), 30)  # until the server closes
        writer.close()
        codes = [line[:4] for line in data.split(b"\r\n") if line]
        assert codes[-9:] == [b"250 ", b"250 ", b"354 ", b"250 ", b"250 ", b"250 ", b"354 ", b"250 ", b"221 "], data
        assert recorder.seen == [(b"first\r\n", False), (b".second\r\n", False)]
    finally:
        server.close()


def test_address_parsing_matches_aiosmtpd() -> None:
    session = DoorSMTP.__new__(DoorSMTP)
    session.local_part_limit = 0
    rng = random.Random(5)
    alphabet = "ab.@<>\t \"\\()[]:;,-_+=%!/\u00e90"
    cases = ["<a@b>", "<a@b> SIZE=10", " <a.b@c.d>\tBODY=8BITMIME", "<a@b> (comment) SIZE=1", "<a..b@c>", "<@r:a@b>", "<>"]
    for _ in range(20000):
        inner = "".join(rng.choice(alphabet if rng.random() < 0.5 else "ab.@-_+0") for _ in range(rng.randint(1, 12)))
        cases.append(rng.choice(["", " ", "\t"]) + "<" + inner + ">" + rng.choice(["", " SIZE=1", "x", " ", " (c) A=B", "\tB=C  D"]))

    def outcome(parse: Any, case: str) -> Any:
        try:
            return parse(case)
        except Exception as error:  # the email package fails on some garbage, both ways
            return type(error)

    for case in cases:
        assert outcome(session._getaddr, case) == outcome(lambda c: AioSMTP._getaddr(session, c), case), case
    session.local_part_limit = 3
    assert session._getaddr("<abcd@b>") == AioSMTP._getaddr(session, "<abcd@b>") == (None, None)


async def test_a_connection_lost_during_data_ends_the_session() -> None:
    recorder = Recorder()
    sessions: list[Any] = []
    limiter = ConnectionLimiter(100)

    def factory() -> Any:
        session = DoorLMTP(recorder, hostname="test", data_size_limit=LIMIT, decode_data=False, timeout=30)
        session.limiter = limiter
        sessions.append(session)
        return session

    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        await reader.readline()
        writer.write(b"LHLO client\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
        while not (await reader.readline()).startswith(b"354"):
            pass
        writer.write(b"half a message\r\n")
        await writer.drain()
        writer.transport.abort()  # a reset, no end of data
        for _ in range(600):
            if sessions[0]._handler_coroutine.done():
                break
            await asyncio.sleep(0.05)
        assert sessions[0]._handler_coroutine.done(), "the session still waits for data that will never come"
        assert recorder.seen == []
    finally:
        server.close()


def test_the_long_line_screen_never_misses_a_long_line() -> None:
    """``_may_have_long_line`` may say "look closer" for nothing, never "no long
    line" when there is one: random lines of lengths around the limit, bare CR and LF
    among them."""
    rng = random.Random(20261121)
    for _ in range(20_000):
        longest = rng.choice([1, 2, 3, 4, 5, 7, 10, 20, 999])
        parts = []
        for _ in range(rng.randint(0, 8)):
            n = rng.choice([0, 1, longest - 1, longest, longest + 1, longest + 2, rng.randint(0, 2 * longest + 3)])
            parts.append(bytes(rng.choice(b"ab\r\n.") for _ in range(max(0, n))))
        data = b"\r\n".join(parts) + (b"\r\n" if rng.random() < 0.8 else b"")
        if max(map(len, data.split(b"\r\n"))) > longest:
            assert _may_have_long_line(data, longest), (longest, data)
    # Mail of ordinary short lines passes without a closer look.
    assert not _may_have_long_line(b"a line of text\r\n" * 2000, 998)
