"""Building IMAP response bytes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from postern.mime.imap_structure import Address, Envelope
from postern.protocols.imap import encode as e
from postern.protocols.imap.thread import ThreadNode
from postern.protocols.imap.utf7 import Utf7Error, decode_modified_utf7, encode_modified_utf7


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (b"hello", b'"hello"'),
        ("", b'""'),
        (b"a b", b'"a b"'),
        (b"line\r\nbreak", b"{11}\r\nline\r\nbreak"),
        (b'say "hi"', b'{8}\r\nsay "hi"'),
        (b"back\\slash", b"{10}\r\nback\\slash"),
        ("café", b"{5}\r\ncaf\xc3\xa9"),
        (b"nul\x00", b"{4}\r\nnul\x00"),
    ],
)
def test_string_quoted_or_literal(value: bytes | str, wire: bytes) -> None:
    assert e.string(value) == wire


def test_long_strings_become_literals() -> None:
    assert e.string(b"x" * e.MAX_QUOTED) == b'"' + b"x" * e.MAX_QUOTED + b'"'
    assert e.string(b"x" * (e.MAX_QUOTED + 1)).startswith(b"{1025}\r\n")


def test_utf8_mode_quotes_8bit() -> None:
    assert e.string("café", utf8=True) == '"café"'.encode()


def test_nstring_astring() -> None:
    assert e.nstring(None) == b"NIL"
    assert e.nstring(b"x") == b'"x"'
    assert e.astring(b"INBOX") == b"INBOX"
    assert e.astring(b"NIL") == b'"NIL"'
    assert e.astring(b"a b") == b'"a b"'
    assert e.astring(b"") == b'""'
    assert e.astring(b"a*") == b'"a*"'


def test_literal8() -> None:
    assert e.literal(b"\x00\x01", binary=True) == b"~{2}\r\n\x00\x01"


def test_mailbox_names() -> None:
    assert e.mailbox("INBOX") == b'"INBOX"'
    assert e.mailbox("Entwürfe") == b'"Entw&APw-rfe"'
    assert e.mailbox("a&b") == b'"a&-b"'
    assert e.mailbox("Entwürfe", utf8=True) == '"Entwürfe"'.encode()


def test_flags_and_lists() -> None:
    assert e.flag_list(["\\Seen", "$Forwarded"]) == b"(\\Seen $Forwarded)"
    assert e.flag_list([]) == b"()"
    assert e.paren_list([b"A", b"B"]) == b"(A B)"


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (datetime(1996, 7, 17, 2, 44, 25, tzinfo=timezone(timedelta(hours=-7))), b'"17-Jul-1996 02:44:25 -0700"'),
        (datetime(2024, 1, 5, 9, 0, 0, tzinfo=timezone.utc), b'"05-Jan-2024 09:00:00 +0000"'),
        (datetime(2024, 1, 5, 9, 0, 0), b'"05-Jan-2024 09:00:00 +0000"'),
        (datetime(2024, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=5, minutes=30))), b'"31-Dec-2024 23:59:59 +0530"'),
        (datetime(2024, 3, 1, tzinfo=timezone(-timedelta(hours=3, minutes=30))), b'"01-Mar-2024 00:00:00 -0330"'),
    ],
)
def test_internaldate(value: datetime, wire: bytes) -> None:
    assert e.internaldate(value) == wire


def test_encode_value_nested() -> None:
    value = (b"text", None, 12, (b"charset", b"us-ascii"), e.Atom(b"\\Seen"), "ü")
    assert e.encode_value(value) == b'("text" NIL 12 ("charset" "us-ascii") \\Seen {2}\r\n\xc3\xbc)'
    with pytest.raises(TypeError):
        e.encode_value(True)  # type: ignore[arg-type]


def test_encode_envelope() -> None:
    envelope = Envelope(
        date=b"Mon, 7 Feb 1994 21:52:25 -0800",
        subject=b"afternoon meeting",
        from_=(Address(b"Fred Foobar", None, b"foobar", b"Blurdybloop.COM"),),
        to=(Address(None, None, b"mooch", b"owatagu.siam.edu"),),
        message_id=b"<B27397-0100000@Blurdybloop.COM>",
    )
    assert e.encode_envelope(envelope) == (
        b'("Mon, 7 Feb 1994 21:52:25 -0800" "afternoon meeting" (("Fred Foobar" NIL "foobar" "Blurdybloop.COM")) '
        b'NIL NIL ((NIL NIL "mooch" "owatagu.siam.edu")) NIL NIL NIL "<B27397-0100000@Blurdybloop.COM>")'
    )


def test_sequence_set_compression() -> None:
    assert e.sequence_set([5, 1, 2, 3, 9, 8, 3]) == b"1:3,5,8:9"
    assert e.sequence_set([]) == b""


def test_status_lines() -> None:
    assert e.status_response("a1", "OK", "done", e.response_code("UIDNEXT", b"42")) == b"a1 OK [UIDNEXT 42] done\r\n"
    assert e.status_response(None, "BYE", "bye\r\nnow") == b"* BYE bye  now\r\n"
    assert e.continuation() == b"+ Ready\r\n"


def test_thread_encoding() -> None:
    # RFC 5256 §4 example: (2)(3 6 (4 23)(44 7 96))
    threads = [
        ThreadNode(2),
        ThreadNode(3, [ThreadNode(6, [ThreadNode(4, [ThreadNode(23)]), ThreadNode(44, [ThreadNode(7, [ThreadNode(96)])])])]),
    ]
    assert e.encode_threads(threads) == b"(2)(3 6 (4 23)(44 7 96))"
    assert e.encode_threads([ThreadNode(None, [ThreadNode(3), ThreadNode(5)])]) == b"((3)(5))"
    assert e.encode_threads([]) == b""


# -- modified UTF-7 -----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "wire"),
    [
        ("INBOX", b"INBOX"),
        ("Entwürfe", b"Entw&APw-rfe"),
        ("~peter/mail/台北/日本語", b"~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
        ("&", b"&-"),
        ("😀", b"&2D3eAA-"),
        ("a\tb", b"a&AAk-b"),
    ],
)
def test_modified_utf7(name: str, wire: bytes) -> None:
    assert encode_modified_utf7(name) == wire
    assert decode_modified_utf7(wire) == name


@pytest.mark.parametrize(
    "wire",
    [b"&", b"&Jjo", b"&AGE-", b"&2D0-", b"&AP-", b"&APw-&APw-", b"a\x80", b"&A!w-", b"&APx-"],
)
def test_modified_utf7_rejects(wire: bytes) -> None:
    with pytest.raises(Utf7Error):
        decode_modified_utf7(wire)
