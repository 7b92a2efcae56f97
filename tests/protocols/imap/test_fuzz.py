"""Property tests: no input makes the reader raise; mUTF-7 round-trips."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postern.protocols.imap.parser import (
    CommandError,
    CommandReader,
    CommandReceived,
    ContinuationRequired,
    IdleDone,
    ImapSyntaxError,
    LineReceived,
    parse_command,
)
from postern.protocols.imap.utf7 import Utf7Error, decode_modified_utf7, encode_modified_utf7

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

EVENTS = (CommandReceived, ContinuationRequired, CommandError, IdleDone, LineReceived)

TOKENS = [
    b"a1", b"*", b" ", b"  ", b"\r\n", b"\n", b"(", b")", b"[", b"]", b"<", b">", b".", b":", b",", b"$",
    b'"', b"\\", b"{3}\r\n", b"{0}\r\n", b"{2+}\r\n", b"~{1}\r\n", b"{99999999999}\r\n", b"NIL", b"UID", b"1",
    b"0", b"4294967296", b"1:*", b"FETCH", b"SEARCH", b"STORE", b"APPEND", b"SELECT", b"LIST", b"STATUS",
    b"LOGIN", b"AUTHENTICATE", b"IDLE", b"DONE", b"ID", b"ENABLE", b"SORT", b"THREAD", b"COPY", b"MOVE",
    b"EXPUNGE", b"RETURN", b"CHARSET", b"UTF-8", b"OR", b"NOT", b"HEADER", b"BODY", b"BODY.PEEK",
    b"BINARY", b"HEADER.FIELDS", b"MIME", b"TEXT", b"FLAGS", b"+FLAGS.SILENT", b"\\Seen", b"INBOX",
    b"&APw-", b"&", b"1-Jan-2024", b'"01-Jan-2024 00:00:00 +0000"', b"CONDSTORE", b"QRESYNC",
    b"CHANGEDSINCE", b"VANISHED", b"UNCHANGEDSINCE", b"MODSEQ", b"\xff", b"\x00", b"%",
]  # fmt: skip


def drive(reader: CommandReader, chunks: list[bytes]) -> None:
    for chunk in chunks:
        events = reader.feed(chunk)
        assert all(isinstance(e, EVENTS) for e in events)
        for event in events:
            if isinstance(event, CommandError):
                assert event.response().endswith(b"\r\n")
        # A server that says yes to every mode switch.
        if reader.paused:
            reader.expect_idle_done() if reader.buffered % 2 else reader.resume()


@FUZZ
@given(st.lists(st.binary(max_size=200), max_size=10))
def test_random_bytes_never_raise(chunks: list[bytes]) -> None:
    drive(CommandReader(max_line_length=300, max_literal_size=50), chunks)


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=40), st.lists(st.integers(0, 60), max_size=5))
def test_token_soup_never_raises(tokens: list[bytes], cuts: list[int]) -> None:
    data = b"a1 " + b"".join(tokens) + b"\r\n"
    chunks = []
    start = 0
    for cut in sorted(cuts):
        chunks.append(data[start:cut])
        start = max(start, cut)
    chunks.append(data[start:])
    drive(CommandReader(max_line_length=500, max_literal_size=100), chunks)


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=30))
def test_parse_command_raises_only_syntax_errors(tokens: list[bytes]) -> None:
    try:
        parse_command(b"t " + b"".join(tokens))
    except ImapSyntaxError:
        pass


@FUZZ
@given(st.binary(max_size=300))
def test_feeding_byte_by_byte_equals_feeding_at_once(data: bytes) -> None:
    whole = CommandReader().feed(data)
    reader = CommandReader()
    pieces = []
    for i in range(len(data)):
        pieces.extend(reader.feed(data[i : i + 1]))
        if reader.paused:
            break
    if not any(isinstance(e, CommandReceived) for e in whole):
        assert [type(e) for e in pieces] == [type(e) for e in whole][: len(pieces)]


@FUZZ
@given(st.text(max_size=40))
def test_modified_utf7_round_trip(name: str) -> None:
    clean = "".join(ch if not 0xD800 <= ord(ch) <= 0xDFFF else "\ufffd" for ch in name)
    wire = encode_modified_utf7(name)
    assert wire.isascii()
    assert decode_modified_utf7(wire) == clean


@FUZZ
@given(st.binary(max_size=60))
def test_modified_utf7_decode_is_strict_and_canonical(data: bytes) -> None:
    try:
        name = decode_modified_utf7(data)
    except Utf7Error:
        return
    assert encode_modified_utf7(name) == data
