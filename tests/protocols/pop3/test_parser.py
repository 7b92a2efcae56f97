"""The POP3 parser, and the wire encoding of message bodies, without sockets."""

from __future__ import annotations

import asyncio
import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postern.mailstore.pop3_view import CrlfNormaliser, measure_chunks, pop3_size
from postern.protocols.pop3 import parser
from postern.protocols.pop3.encode import DotStuffer, TopCutter, wire_body
from postern.protocols.pop3.parser import ParseError, SaslCancel, parse, parse_sasl_response


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"USER alice\r\n", parser.User("alice")),
        (b"user alice@example.com", parser.User("alice@example.com")),
        (b"PASS correct horse battery\r\n", parser.Pass("correct horse battery")),
        (b"PASS  leading space", parser.Pass(" leading space")),
        (b"PASS p\xc3\xa4ss", parser.Pass("p\u00e4ss")),
        (b"STAT\r\n", parser.Stat()),
        (b"stat", parser.Stat()),
        (b"LIST", parser.List()),
        (b"LIST 3", parser.List(3)),
        (b"UIDL", parser.Uidl()),
        (b"UIDL 12", parser.Uidl(12)),
        (b"RETR 1", parser.Retr(1)),
        (b"DELE 2", parser.Dele(2)),
        (b"TOP 1 0", parser.Top(1, 0)),
        (b"TOP 4 10", parser.Top(4, 10)),
        (b"NOOP", parser.Noop()),
        (b"RSET", parser.Rset()),
        (b"QUIT", parser.Quit()),
        (b"CAPA", parser.Capa()),
        (b"STLS", parser.Stls()),
        (b"AUTH", parser.Auth(None)),
        (b"AUTH plain", parser.Auth("PLAIN")),
        (b"AUTH PLAIN AGFsaWNlAHNlY3JldA==", parser.Auth("PLAIN", b"AGFsaWNlAHNlY3JldA==")),
        (b"AUTH PLAIN =", parser.Auth("PLAIN", b"=")),
        (b"AUTH X-OTHER-MECH", parser.Auth("X-OTHER-MECH")),
    ],
)
def test_commands(line: bytes, expected: parser.Command) -> None:
    assert parse(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"\r\n",
        b"   ",
        b"HELO there",
        b"GET / HTTP/1.1",
        b"STAT 1",
        b"QUIT now",
        b"LIST 0",
        b"LIST -1",
        b"LIST +1",
        b"LIST 1 2",
        b"LIST x",
        b"RETR",
        b"RETR 99999999999",
        b"DELE 1 2",
        b"TOP 1",
        b"TOP 1 -1",
        b"TOP 0 1",
        b"USER",
        b"USER two words",
        b"USER \xff",
        b"PASS",
        b"PASS ",
        b"PASS bad\x00nul",
        b"APOP alice c4c9334bac560ecc979e58001b3e22fb",
        b"AUTH PLAIN a b",
        b"AUTH PL@IN",
        b"\x00\x01\x02",
        b"\xc3\xa4\xc3\xb6",
        b"USER " + b"a" * 300,
        b"NOOP" + b" " * 2000,
    ],
)
def test_garbage_is_an_error(line: bytes) -> None:
    assert isinstance(parse(line), ParseError)


def test_sasl_responses() -> None:
    assert parse_sasl_response(b"*\r\n") == SaslCancel()
    assert parse_sasl_response(b"=") == b""
    assert parse_sasl_response(b"") == b""
    assert parse_sasl_response(base64.b64encode(b"\0alice\0pw")) == b"\0alice\0pw"
    assert isinstance(parse_sasl_response(b"not base64!"), ParseError)
    assert isinstance(parse_sasl_response(b"QQ"), ParseError)  # missing padding


@settings(max_examples=600, deadline=None)
@given(st.binary(max_size=1200))
def test_random_lines_never_raise(line: bytes) -> None:
    result = parse(line)
    assert isinstance(result, (ParseError, *parser.Command.__args__))  # type: ignore[attr-defined]
    assert isinstance(parse_sasl_response(line), (bytes, SaslCancel, ParseError))


_words = st.sampled_from(["USER", "PASS", "STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "AUTH", "CAPA", "STLS", "QUIT", "list", "tOp"])
_args = st.lists(st.one_of(st.integers(-5, 10**12).map(str), st.text(max_size=20), st.just("PLAIN"), st.just("=")), max_size=4)


@settings(max_examples=600, deadline=None)
@given(_words, _args, st.sampled_from([" ", "  ", "\t"]), st.sampled_from(["", "\r\n", "\n", "\r"]))
def test_random_commands_never_raise(word: str, args: list[str], sep: str, ending: str) -> None:
    line = (word + "".join(sep + a for a in args) + ending).encode("utf-8", "surrogatepass")
    result = parse(line)
    assert isinstance(result, (ParseError, *parser.Command.__args__))  # type: ignore[attr-defined]


# The wire encoding ------------------------------------------------------------------


def _normalise_whole(data: bytes) -> bytes:
    normaliser = CrlfNormaliser()
    return normaliser.feed(data) + normaliser.finish()


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(max(c, 0), len(data)) for c in cuts})
    pieces, start = [], 0
    for point in points:
        pieces.append(data[start:point])
        start = point
    pieces.append(data[start:])
    return pieces


def test_normaliser() -> None:
    assert _normalise_whole(b"a\nb\r\nc") == b"a\r\nb\r\nc\r\n"
    assert _normalise_whole(b"a\r\n") == b"a\r\n"
    assert _normalise_whole(b"a\r") == b"a\r\n"
    assert _normalise_whole(b"a\rb\n") == b"a\rb\r\n"
    assert _normalise_whole(b"") == b""
    assert _normalise_whole(b"\n\n") == b"\r\n\r\n"


_message_bytes = st.lists(st.sampled_from([b"a", b"\r", b"\n", b".", b"\r\n", b"\r\n.", b"x.y", b"\r\n\r\n"]), max_size=60).map(b"".join)


@settings(max_examples=500, deadline=None)
@given(_message_bytes, _message_bytes, st.lists(st.integers(0, 400), max_size=6))
def test_normalising_and_measuring_in_chunks_agree(prefix: bytes, blob: bytes, cuts: list[int]) -> None:
    whole = _normalise_whole(prefix + blob)
    normaliser = CrlfNormaliser()
    pieces = [normaliser.feed(p) for p in [prefix, *_split(blob, cuts)]]
    assert b"".join(pieces) + normaliser.finish() == whole
    # The size comes from figures measured on the blob alone, in any chunks.
    assert pop3_size(prefix, measure_chunks(_split(blob, cuts))) == len(whole)
    assert whole == b"" or whole.endswith(b"\r\n")
    assert b"\n" not in whole.replace(b"\r\n", b"")


def _unstuff(wire: bytes) -> bytes:
    lines = wire.split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


@settings(max_examples=500, deadline=None)
@given(_message_bytes, st.lists(st.integers(0, 400), max_size=6))
def test_dot_stuffing_in_chunks(blob: bytes, cuts: list[int]) -> None:
    normalised = _normalise_whole(blob)
    stuffer = DotStuffer()
    wire = b"".join(stuffer.feed(p) for p in _split(normalised, cuts))
    assert _unstuff(wire) == normalised
    assert not wire.startswith(b".\r\n") and b"\r\n.\r\n" not in wire
    for line in wire.split(b"\r\n"):
        assert not line.startswith(b".") or line.startswith(b"..")


def test_top_cutter() -> None:
    message = b"A: 1\r\nB: 2\r\n\r\none\r\ntwo\r\nthree\r\n"
    for lines, expected in [(0, b"A: 1\r\nB: 2\r\n\r\n"), (2, b"A: 1\r\nB: 2\r\n\r\none\r\ntwo\r\n"), (10, message)]:
        for size in range(1, len(message) + 1):
            cutter = TopCutter(lines)
            out = b"".join(cutter.feed(message[i : i + size]) for i in range(0, len(message), size))
            assert out == expected, (lines, size)
    assert TopCutter(0).feed(b"\r\nbody\r\n") == b"\r\n"  # no header at all
    assert TopCutter(1).feed(b"A: 1\r\nB: 2\r\n") == b"A: 1\r\nB: 2\r\n"  # no body at all


def test_wire_body_top_stops_reading() -> None:
    read: list[bytes] = []

    async def chunks():
        for chunk in (b"A: 1\r\n\r\n", b".one\r\n", b"two\r\n", b"three\r\n"):
            read.append(chunk)
            yield chunk

    async def collect() -> bytes:
        return b"".join([c async for c in wire_body(chunks(), 1)])

    assert asyncio.run(collect()) == b"A: 1\r\n\r\n..one\r\n"
    assert len(read) == 2
