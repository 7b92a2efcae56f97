"""Property tests: no input may make the parser raise or return nonsense.

Besides the public functions (which have a last-resort safety net), the
internal functions without the net are exercised too, so that a bug hidden by
the net still fails here.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from postern.mime import (
    AddressInfo,
    AttachmentInfo,
    MessageContent,
    MessageSummary,
    extract_content,
    get_attachment,
    normalise_subject,
    sanitise_html,
    summarise,
)
from postern.mime.body_text import _INVISIBLE_TABLE, _normalise_text
from postern.mime.charsets import _collapse
from postern.mime.content import _extract, _get_attachment
from postern.mime.summary import INTRO_LENGTH, _collapsed_head, _summarise
from tests.mime.test_summary import ALTERNATIVE, FORWARD, MIXED, RELATED, crlf

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_PART_RE = re.compile(r"[1-9][0-9]*(\.[1-9][0-9]*)*")

SEED = crlf(
    """\
From: =?utf-8?q?J=C3=B6rg?= <jorg@example.com>, "Doe, John" <john@example.com>
To: Team: a@example.com, b@example.com;, =?iso-8859-1?b?Q2Fm6Q==?= <c@example.com>
Subject: Re: [list] =?utf-8?B?R3LDvMOfZQ==?= (fwd)
Date: Mon, 15 Jan 2024 09:30:00 +0100
Message-ID: <seed@example.com>
In-Reply-To: <parent@example.com>
References: <root@example.com> <parent@example.com>
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: multipart/alternative; boundary=alt

--alt
Content-Type: text/plain; charset=utf-8; format=flowed
Content-Transfer-Encoding: quoted-printable

Hello w=C3=B6rld, soft=
 break
--alt
Content-Type: multipart/related; boundary=rel

--rel
Content-Type: text/html; charset=iso-8859-1

<p onclick="x()">Hello <img src="cid:img1@x"><script>bad()</script></p>
--rel
Content-Type: image/gif
Content-ID: <img1@x>
Content-Transfer-Encoding: base64

R0lGODlhAQABAAAAACw=
--rel--
--alt--
--outer
Content-Type: application/pdf
Content-Disposition: attachment; filename*=utf-8''%E2%82%AC.pdf
Content-Transfer-Encoding: base64

JVBERi0xLjQK
--outer
Content-Type: message/rfc822

From: inner@example.com
Subject: inner

inner body
--outer--
"""
)

SEEDS = [SEED, MIXED, ALTERNATIVE, RELATED, FORWARD]

_INTERESTING = [
    b"\r\n",
    b"\n",
    b"\r",
    b"\r\n\r\n",
    b"\x00",
    b"--",
    b"--outer",
    b"--outer--",
    b"--alt",
    b"=?",
    b"?=",
    b"=?utf-8?q?",
    b"=?x?b?",
    b'"',
    b"\\",
    b"<",
    b">",
    b"(",
    b")",
    b";",
    b":",
    b",",
    b"=",
    b"*",
    b"'",
    b"%",
    b"%E2",
    b"\xff",
    b"\xc3",
    b"\xe2\x82",
    b" ",
    b"\t",
    b"Content-Type: multipart/mixed; boundary=outer\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Transfer-Encoding: quoted-printable\r\n",
    b"charset=",
    b"filename*0*=",
    b'boundary=""',
    b"message/rfc822",
    b"<script>",
    b"=\r\n",
    b"=Z",
]


def check(raw: bytes) -> None:
    summary = summarise(raw)
    assert summary == _summarise(raw)
    assert isinstance(summary, MessageSummary)
    for info in (summary.from_, summary.sender):
        assert info is None or isinstance(info, AddressInfo)
    for group in (summary.reply_to, summary.to, summary.cc, summary.bcc):
        assert isinstance(group, tuple)
        for a in group:
            assert (
                isinstance(a, AddressInfo)
                and isinstance(a.name, str)
                and isinstance(a.address, str)
            )
            assert a.name or a.address
            assert "\r" not in a.name and "\n" not in a.name
    assert isinstance(summary.subject, str)
    assert (
        "\n" not in summary.subject
        and "\r" not in summary.subject
        and "\x00" not in summary.subject
    )
    assert summary.message_id is None or (
        summary.message_id.startswith("<") and summary.message_id.endswith(">")
    )
    for mid in summary.in_reply_to + summary.references:
        assert mid.startswith("<") and mid.endswith(">") and len(mid) > 2
    if summary.date is not None:
        assert isinstance(summary.date, datetime)
        assert summary.date.utcoffset() == timedelta(0)
    assert isinstance(summary.intro, str) and len(summary.intro) <= 129
    assert summary.thread_subject == normalise_subject(summary.subject)
    assert isinstance(summary.is_reply, bool)
    assert 0 <= summary.header_size <= len(raw)
    for n, att in enumerate(summary.attachments, 1):
        assert isinstance(att, AttachmentInfo)
        assert att.id == f"ATT{n:05d}"
        assert "/" in att.content_type and att.content_type == att.content_type.lower()
        assert att.disposition in ("attachment", "inline")
        assert att.size >= 0
        assert _PART_RE.fullmatch(att.part), att.part
        assert att.filename is None or (
            att.filename and "/" not in att.filename and "\x00" not in att.filename
        )
        assert att.content_id is None or (
            att.content_id and "<" not in att.content_id[:1]
        )

    content = extract_content(raw)
    assert content == _extract(raw)
    assert isinstance(content, MessageContent)
    assert isinstance(content.text, str)
    assert isinstance(content.html, tuple) and all(
        isinstance(h, str) and h for h in content.html
    )
    for h in content.html:
        assert "<script" not in h.lower() and "javascript:" not in h.lower()

    for att in summary.attachments[:20]:
        result = _get_attachment(raw, att.id)
        assert result is not None
        info, data = result
        assert info == att
        assert isinstance(data, bytes) and len(data) == att.size
    missing = f"ATT{len(summary.attachments) + 1:05d}"
    assert get_attachment(raw, missing) is None


@FUZZ
@given(st.binary(max_size=3000))
@example(b"")
@example(b"\r\n")
@example(b"\n\n\n")
@example(b":")
@example(b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n--a\r\n--a--")
@example(b'Content-Type: multipart/mixed; boundary="\r\n\r\n--\r\n')
@example(b'Subject: =?utf-8?b?=?=\r\nFrom: (((((\r\nTo: "\\\r\nDate: 99999\r\n\r\n')
def test_random_bytes(raw: bytes) -> None:
    check(raw)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(
            st.sampled_from(
                ["delete", "insert", "replace", "duplicate", "truncate", "crlf", "byte"]
            )
        )
        pos = draw(st.integers(0, len(data)))
        if op == "delete":
            del data[pos : pos + draw(st.integers(1, 64))]
        elif op == "insert":
            data[pos:pos] = draw(
                st.sampled_from(_INTERESTING) | st.binary(min_size=1, max_size=16)
            )
        elif op == "replace":
            length = draw(st.integers(1, 16))
            data[pos : pos + length] = draw(st.sampled_from(_INTERESTING))
        elif op == "duplicate":
            length = draw(st.integers(1, 200))
            data[pos:pos] = data[pos : pos + length]
        elif op == "truncate":
            del data[pos:]
        elif op == "crlf":
            data = bytearray(bytes(data).replace(b"\r\n", b"\n"))
        elif op == "byte" and data:
            data[min(pos, len(data) - 1)] = draw(st.integers(0, 255))
    return bytes(data)


@FUZZ
@given(mutated())
def test_mutated_messages(raw: bytes) -> None:
    check(raw)


_HEADER_NAMES = [
    "From",
    "To",
    "Cc",
    "Bcc",
    "Reply-To",
    "Sender",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "Content-Type",
    "Content-Disposition",
    "Content-Transfer-Encoding",
    "Content-ID",
]
_VALUE_PIECES = st.sampled_from(
    [
        "a@b.c",
        "<x@y.z>",
        "Name",
        '"Quoted, Name"',
        "(comment)",
        "=?utf-8?q?Caf=C3=A9?=",
        "=?iso-8859-1?b?6Q==?=",
        "=?bogus?q?x?=",
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "text/html",
        "message/rfc822",
        "image/png",
        "; boundary=b",
        '; boundary="b"',
        "; charset=utf-8",
        "; charset=koi8-r",
        "; charset=rot13",
        "; name*0*=utf-8''%C3%A9",
        "; name*1=x.txt",
        '; filename="a\\\\b.txt"',
        "attachment",
        "inline",
        "base64",
        "quoted-printable",
        "Mon, 15 Jan 2024 09:30:00 +0000",
        "32 Foo 99999",
        ":",
        ";",
        ",",
        "\r\n ",
        "\t",
        "\\",
        '"',
        "é",
        "\u202e",
        "\x00",
        "Re:",
        "[tag]",
        "(fwd)",
    ]
)
_BODY_PIECES = st.sampled_from(
    [
        "--b\r\n",
        "--b--\r\n",
        "\r\n",
        "Content-Type: text/plain\r\n",
        "Content-Type: text/html\r\n",
        "Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n",
        "Content-Type: message/rfc822\r\n",
        "Content-Type: multipart/mixed; boundary=c\r\n",
        "--c\r\n",
        "--c--\r\n",
        "Content-Disposition: attachment; filename=x.bin\r\n",
        "SGVsbG8=\r\n",
        "=C3=A9=\r\n",
        "<p onclick=x>hi<script>y()</script></p>\r\n",
        "plain text line\r\n",
        "\x00\xff",
        "&amp;&#0;&#xD800;",
    ]
)


@st.composite
def structured(draw: st.DrawFn) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 10))):
        name = draw(st.sampled_from(_HEADER_NAMES))
        value = "".join(draw(st.lists(_VALUE_PIECES, max_size=8)))
        lines.append(f"{name}: {value}\r\n")
    body = "".join(draw(st.lists(_BODY_PIECES, max_size=30)))
    text = "".join(lines) + draw(st.sampled_from(["\r\n", "\n", ""])) + body
    return text.encode(draw(st.sampled_from(["utf-8", "latin-1"])), "replace")


@FUZZ
@given(structured())
def test_structured_messages(raw: bytes) -> None:
    check(raw)


@FUZZ
@given(st.text(max_size=200))
def test_normalise_subject_total_and_idempotent(subject: str) -> None:
    once = normalise_subject(subject)
    assert isinstance(once, str)
    assert once == once.strip()
    assert normalise_subject(once) == once


@FUZZ
@given(st.text(max_size=500))
@example('<a href="jav&#x0A;ascript:alert(1)">x</a>')
@example("<img src=x onerror=alert(1)>")
@example("<scr<script>ipt>alert(1)</script>")
def test_sanitise_html_never_emits_active_content(markup: str) -> None:
    out = sanitise_html(markup)
    assert isinstance(out, str)
    low = out.lower()
    assert "<script" not in low and "javascript:" not in low and " onerror" not in low


_HTML_PIECES = st.sampled_from(
    [
        "<p>",
        "</p>",
        "<pre>",
        "</pre>",
        "<script>",
        "</script>",
        "<style>",
        "</style >",
        "<title>",
        "</TITLE>",
        "<svg/>",
        "<svg>",
        "</svg>",
        "<!--",
        "-->",
        "<!doctype html>",
        "<br>",
        "<li>",
        "<td>",
        "<",
        ">",
        "&amp;",
        "&#1;",
        "&#2;",
        "&#x3;",
        "&nbsp;",
        "&",
        "\x01",
        "\x02",
        "\x03",
        "\x04",
        "&#4;",
        " ",
        "\n",
        "\t",
        "text",
        "İ",
        "\u200b",
        "é",
        '"',
        "'",
        "/",
        "=",
    ]
)


@FUZZ
@given(
    st.lists(_HTML_PIECES, max_size=60).map("".join), st.none() | st.integers(0, 200)
)
def test_html_to_text_total(markup: str, limit: int | None) -> None:
    from postern.mime.body_text import _html_to_text

    text = _html_to_text(markup, limit)
    assert isinstance(text, str)
    assert not any(c in text for c in "\x01\x02\x03\x04")


_INTRO_TEXT = st.lists(
    st.sampled_from(["a", "word", "é", "日", ".", " ", "  ", "\t", "\r", "\n", "\r\n", "\x00", "\x0b", "\x1c", "\x85", "\u3000", "\u200b", "\u00ad", "\ufeff"]),
    max_size=2000,
).map("".join)


@FUZZ
@given(_INTRO_TEXT, st.booleans())
def test_intro_head_is_a_prefix_of_the_whole(text: str, normalise: bool) -> None:
    """The intro collapses a window of the text, not all of it: what it gets is the
    whole result, or a prefix of it longer than the intro (all the intro uses)."""
    whole = _collapse((_normalise_text(text) if normalise else text).translate(_INVISIBLE_TABLE))
    head = _collapsed_head(text, normalise)
    assert whole.startswith(head)
    assert head == whole or len(head) > INTRO_LENGTH
