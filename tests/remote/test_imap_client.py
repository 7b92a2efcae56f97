"""The IMAP client's parser: tokens, FETCH answers, mailbox names, UID sets."""

from __future__ import annotations

import pytest

from postern.remote.imap_client import Response, Str, TooBig, fetch_item, mailbox_name, tokenize, uid_ranges, utf7_decode
from postern.remote.wire import ProtocolError


def test_tokens_with_literals_brackets_and_quotes() -> None:
    tokens = tokenize([b'1 FETCH (UID 7 BODY[HEADER.FIELDS (MESSAGE-ID)] ', Str(b"Message-ID: <a>\r\n"), b' INTERNALDATE "07-Dec-2026 10:00:00 +0000" X "a\\"b")'])
    assert tokens[0] == b"1" and tokens[1] == b"FETCH"
    pairs = tokens[2]
    assert pairs[:2] == [b"UID", b"7"] and pairs[2] == b"BODY[HEADER.FIELDS (MESSAGE-ID)]" and pairs[3] == b"Message-ID: <a>\r\n"
    assert pairs[-1] == b'a"b' and isinstance(pairs[-1], Str)


def test_fetch_item() -> None:
    item = fetch_item(Response(b"*", tokenize([b"3 FETCH (UID 9 BODY[] ", Str(b"raw"), b")"])))
    assert item is not None and (item.seq, item.uid, item.body) == (3, 9, b"raw")
    big = fetch_item(Response(b"*", tokenize([b"3 FETCH (UID 9 BODY[] ", TooBig(10**9), b")"])))
    assert big is not None and big.too_big == 10**9 and big.body is None
    assert fetch_item(Response(b"*", tokenize([b"4 EXISTS"]))) is None


@pytest.mark.parametrize("segments", [[b"1 FETCH (UID"], [b"1 FETCH UID 2)"], [b'1 FETCH ("x)'], [b"x FETCH (UID 1)"]])
def test_malformed_fetch_answers_raise_protocol_errors(segments: list[bytes]) -> None:
    with pytest.raises(ProtocolError):
        fetch_item(Response(b"*", tokenize(segments)))


def test_uid_ranges_and_mailbox_names() -> None:
    assert uid_ranges([7, 1, 2, 3]) == "1:3,7" and uid_ranges([5]) == "5" and uid_ranges([1, 3, 4, 5, 9, 10]) == "1,3:5,9:10"
    assert mailbox_name("Entwürfe & Co") == b'"Entw&APw-rfe &- Co"'
    assert utf7_decode(b"Entw&APw-rfe &- Co") == "Entwürfe & Co"
    assert b"\r" not in mailbox_name("a\r\nb")  # control characters go in modified base64
