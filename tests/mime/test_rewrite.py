"""Header rewriting for forwards (pure): only whole fields change; every other byte,
the body above all, is kept."""

from __future__ import annotations

import pytest

from postern.mime import rewrite

RAW = (
    b"Received: from a by b; Wed, 02 Nov 2011 19:19:08 +0000\r\n"
    b"DKIM-Signature: v=1; a=rsa-sha256; d=wick.com;\r\n\tb=abc\r\n"
    b"From: John Wick <john@wick.com>\r\n"
    b"To: shop@alias.test\r\n"
    b"Subject: =?utf-8?q?caf=C3=A9?= \xc3\xa9t\xc3\xa9\r\n"
    b"X-Folded: one\r\n two\r\n"
    b"\r\n"
    b"Body line\r\n\r\nFrom: not a header\r\n.\r\n"
)


def test_split_fields_and_body() -> None:
    parsed = rewrite.split(RAW)
    assert [f.name for f in parsed.fields] == ["received", "dkim-signature", "from", "to", "subject", "x-folded"]
    assert parsed.fields[1].raw == b"DKIM-Signature: v=1; a=rsa-sha256; d=wick.com;\r\n\tb=abc\r\n"
    assert parsed.separator == b"\r\n"
    assert parsed.body == b"Body line\r\n\r\nFrom: not a header\r\n.\r\n"
    assert rewrite.values(parsed, "x-folded") == ["one two"]
    assert rewrite.values(parsed, "subject") == ["=?utf-8?q?caf=C3=A9?= été"]


def test_rewrite_keeps_every_other_byte() -> None:
    out = rewrite.rewrite(RAW, replace={"from": '"x" <ra@alias.test>'}, prepend=[("X-Postern-Loop", "shop@alias.test")])
    assert out.startswith(b"X-Postern-Loop: shop@alias.test\r\nReceived: from a by b;")
    assert b"DKIM-Signature" not in out
    assert b'From: "x" <ra@alias.test>\r\nTo: shop@alias.test\r\n' in out
    assert b"Subject: =?utf-8?q?caf=C3=A9?= \xc3\xa9t\xc3\xa9\r\nX-Folded: one\r\n two\r\n\r\n" in out
    assert out.endswith(b"\r\n\r\nBody line\r\n\r\nFrom: not a header\r\n.\r\n")


def test_replace_in_place_removes_repeats_and_adds_missing() -> None:
    raw = b"To: a@x.test\r\nSubject: s\r\nto: b@x.test\r\n\r\nbody"
    out = rewrite.rewrite(raw, remove=(), replace={"to": "c@x.test", "reply-to": "r@x.test", "cc": None})
    assert out == b"To: c@x.test\r\nSubject: s\r\nReply-To: r@x.test\r\n\r\nbody"
    assert rewrite.rewrite(raw, remove=(), replace={"to": None}) == b"Subject: s\r\n\r\nbody"


@pytest.mark.parametrize(
    ("raw", "fields", "body"),
    [
        (b"", [], b""),
        (b"\r\nbody only", [], b"body only"),
        (b"not a header line\r\nmore\r\n", [], b"not a header line\r\nmore\r\n"),
        (b"Subject: x\r\nstray line\r\nmore", ["subject"], b"stray line\r\nmore"),
        (b"Subject: x\nTo: y\n\nbare LF body\n", ["subject", "to"], b"bare LF body\n"),
        (b"Subject: no body", ["subject"], b""),
        (b" continuation first\r\n\r\nb", [], b" continuation first\r\n\r\nb"),
    ],
)
def test_split_odd_messages(raw: bytes, fields: list[str], body: bytes) -> None:
    parsed = rewrite.split(raw)
    assert [f.name for f in parsed.fields] == fields
    assert parsed.body == body
    out = rewrite.rewrite(raw, replace={"from": "ra@alias.test"})
    assert out.endswith(body) and b"From: ra@alias.test\r\n" in out


def test_addresses_are_read_leniently() -> None:
    assert rewrite.addresses('"Wick, John" <john@wick.com>, helen@wick.com') == [("Wick, John", "john@wick.com"), ("", "helen@wick.com")]
    assert rewrite.addresses("=?utf-8?q?J=C3=B6hn?= <john@wick.com>") == [("Jöhn", "john@wick.com")]
    assert rewrite.addresses("<<<garbage>>> ,,, @@@") == [] or all("@" in a for _, a in rewrite.addresses("<<<garbage>>> ,,, @@@"))
    assert rewrite.addresses("") == []
    assert rewrite.addresses("undisclosed-recipients:;") == []


@pytest.mark.parametrize(
    ("fmt", "name", "expected"),
    [
        ("AT", "John Wick", '"John Wick - john at wick.com" <ra@r.test>'),
        ("A", "John Wick", '"John Wick - john(a)wick.com" <ra@r.test>'),
        ("NAME_ONLY", "John Wick", '"John Wick" <ra@r.test>'),
        ("NAME_ONLY", "", '"john at wick.com" <ra@r.test>'),
        ("AT_ONLY", "John Wick", '"john at wick.com" <ra@r.test>'),
        ("NO_NAME", "John Wick", "ra@r.test"),
        ("AT", 'Evil "quoted" \\ name', '"Evil \\"quoted\\" \\\\ name - john at wick.com" <ra@r.test>'),
        ("NAME_ONLY", "Jöhn", "=?utf-8?b?SsO2aG4=?= <ra@r.test>"),
        ("UNKNOWN", "", '"john at wick.com" <ra@r.test>'),
    ],
)
def test_sender_value(fmt: str, name: str, expected: str) -> None:
    assert rewrite.sender_value(fmt, name, "john@wick.com", "ra@r.test") == expected


def test_header_line_folds_long_lists() -> None:
    value = ", ".join(f'"n{i}" <ra+{i:026d}@alias.test>' for i in range(40))
    line = rewrite.header_line("To", value)
    assert line.endswith(b"\r\n") and all(len(part) < 998 for part in line.split(b"\r\n"))


def test_never_raises_on_garbage() -> None:
    for raw in (b"\xff\xfe\x00:\r\n", b":\r\n\r\n", b"A" * 5000, bytes(range(256)), b"From: \x00\x01\r\n\r\n"):
        rewrite.rewrite(raw, replace={"from": "x@y.test"})
        for field in rewrite.split(raw).fields:
            rewrite.addresses(rewrite.value_of(field))


def test_sender_value_never_breaks_the_line() -> None:
    value = rewrite.sender_value("AT", "Evil\r\nBcc: victim@x.test", "john@wick.com", "ra@r.test")
    assert "\r" not in value and "\n" not in value
    assert rewrite.header_line("From", value).count(b"\r\n") == 1
