from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest

from postern.mime import (
    AddressInfo,
    AttachmentInfo,
    MessageSummary,
    get_attachment,
    normalise_subject,
    summarise,
)


def crlf(text: str) -> bytes:
    """Message text with CRLF line endings, as on the wire."""
    return text.replace("\n", "\r\n").encode("utf-8")


PLAIN = crlf(
    """\
Return-Path: <alice@example.com>
Received: from mx.example.com by mail.example.net; Tue, 1 Jul 2003 10:52:37 +0200
From: Alice Example <alice@example.com>
To: Bob <bob@example.net>, carol@example.org
Cc: "Doe, John" <john@example.com>
Subject: Lunch tomorrow?
Date: Tue, 1 Jul 2003 10:52:37 +0200
Message-ID: <20030701105237.GA1234@example.com>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Hi Bob,

are you free for lunch tomorrow?

Alice
"""
)


ALTERNATIVE = crlf(
    """\
From: shop@example.com
To: bob@example.net
Subject: Your order
Message-ID: <order-1@example.com>
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Thanks for your order of 3 caf=C3=A9 mugs.
--alt
Content-Type: text/html; charset=utf-8

<html><head><style>p {color: red}</style></head><body><p>Thanks for your order of 3 caf&eacute; mugs.</p></body></html>
--alt--
"""
)


MIXED = crlf(
    """\
From: alice@example.com
To: bob@example.net
Subject: Documents
Content-Type: multipart/mixed; boundary="mix"

This is a multi-part message in MIME format.
--mix
Content-Type: text/plain; charset=utf-8

See the attached files.
--mix
Content-Type: application/pdf; name="ignored.pdf"
Content-Disposition: attachment;
 filename*0*=utf-8''%C3%9Cbersicht%20;
 filename*1*=2024%E2%82%AC;
 filename*2=".pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQKJcfsj6IKJSVFT0YK
--mix
Content-Type: text/plain; charset=iso-8859-1
Content-Disposition: attachment; filename="=?iso-8859-1?q?r=E9sum=E9?=.txt"
Content-Transfer-Encoding: quoted-printable

Caf=E9=
 au lait
--mix
Content-Type: image/png; name="=?utf-8?b?0YTQvtGC0L4ucG5n?="
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--mix--
epilogue
"""
)


RELATED = crlf(
    """\
From: alice@example.com
To: bob@example.net
Subject: Newsletter
Content-Type: multipart/alternative; boundary="a1"

--a1
Content-Type: text/plain

Look at the logo.
--a1
Content-Type: multipart/related; boundary="r1"; type="text/html"

--r1
Content-Type: text/html; charset=utf-8

<p>Look at the logo <img src="cid:logo@example.com"></p>
--r1
Content-Type: image/gif
Content-ID: <logo@example.com>
Content-Transfer-Encoding: base64

R0lGODlhAQABAAAAACw=
--r1--
--a1--
"""
)


INNER = crlf(
    """\
From: carol@example.org
To: alice@example.com
Subject: Original message
Content-Type: multipart/mixed; boundary="inner"

--inner
Content-Type: text/plain

Inner body.
--inner
Content-Type: application/zip; name="inner.zip"
Content-Disposition: attachment; filename="inner.zip"
Content-Transfer-Encoding: base64

UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==
--inner--"""
)

FORWARD = (
    crlf(
        """\
From: alice@example.com
To: bob@example.net
Subject: Fwd: Original message
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: text/plain

Forwarding this.
--outer
Content-Type: message/rfc822
Content-Disposition: inline

"""
    )
    + INNER
    + b"\r\n--outer--\r\n"
)


# --------------------------------------------------------------------------


def test_plain_message() -> None:
    s = summarise(PLAIN)
    assert isinstance(s, MessageSummary)
    assert s.from_ == AddressInfo(name="Alice Example", address="alice@example.com")
    assert s.sender is None
    assert s.to == (
        AddressInfo(name="Bob", address="bob@example.net"),
        AddressInfo(name="", address="carol@example.org"),
    )
    assert s.cc == (AddressInfo(name="Doe, John", address="john@example.com"),)
    assert s.bcc == () and s.reply_to == ()
    assert s.subject == "Lunch tomorrow?"
    assert s.thread_subject == "lunch tomorrow?"
    assert s.is_reply is False
    assert s.message_id == "<20030701105237.GA1234@example.com>"
    assert s.in_reply_to == () and s.references == ()
    assert s.date == datetime(2003, 7, 1, 8, 52, 37, tzinfo=UTC)
    assert s.date.tzinfo is not None
    assert s.intro == "Hi Bob, are you free for lunch tomorrow? Alice"
    assert s.attachments == ()
    assert s.header_size == PLAIN.index(b"\r\n\r\n") + 4
    assert PLAIN[s.header_size :].startswith(b"Hi Bob,")


def test_alternative_has_no_attachments_and_uses_plain_intro() -> None:
    s = summarise(ALTERNATIVE)
    assert s.attachments == ()
    assert s.intro == "Thanks for your order of 3 café mugs."
    assert s.from_ == AddressInfo(name="", address="shop@example.com")


def test_mixed_attachments() -> None:
    s = summarise(MIXED)
    assert s.intro == "See the attached files."
    assert [a.id for a in s.attachments] == ["ATT00001", "ATT00002", "ATT00003"]
    pdf, txt, png = s.attachments
    assert pdf == AttachmentInfo(
        id="ATT00001",
        filename="Übersicht 2024€.pdf",  # RFC 2231 continuations win over name=
        content_type="application/pdf",
        size=len(base64.b64decode("JVBERi0xLjQKJcfsj6IKJSVFT0YK")),
        disposition="attachment",
        content_id=None,
        part="2",
    )
    assert txt.filename == "résumé.txt"  # RFC 2047 inside a quoted filename
    assert txt.content_type == "text/plain"
    assert txt.size == len(b"Caf\xe9 au lait\r\n") - 2  # soft line break joined
    assert txt.part == "3"
    assert png.filename == "фото.png"
    assert png.content_type == "image/png"
    assert png.disposition == "attachment"
    assert png.size == 8
    assert png.part == "4"


def test_inline_image_in_related() -> None:
    s = summarise(RELATED)
    assert len(s.attachments) == 1
    (gif,) = s.attachments
    assert gif.content_type == "image/gif"
    assert gif.disposition == "inline"
    assert gif.content_id == "logo@example.com"
    assert gif.filename is None
    assert gif.part == "2.2"
    assert gif.size == len(base64.b64decode("R0lGODlhAQABAAAAACw="))
    assert s.intro == "Look at the logo."


def test_nested_message_rfc822_is_one_attachment() -> None:
    s = summarise(FORWARD)
    assert s.intro == "Forwarding this."
    assert len(s.attachments) == 1
    (msg,) = s.attachments
    assert msg.content_type == "message/rfc822"
    assert msg.part == "2"
    assert msg.disposition == "inline"
    assert msg.size == len(INNER)
    info, data = get_attachment(FORWARD, "ATT00001")  # type: ignore[misc]
    assert data == INNER  # the raw bytes, untouched
    assert info == msg
    assert s.is_reply is True
    assert s.thread_subject == "original message"


def test_part_numbers_for_nested_structure() -> None:
    raw = crlf(
        """\
From: a@example.com
Content-Type: multipart/mixed; boundary=m

--m
Content-Type: multipart/alternative; boundary=a

--a
Content-Type: text/plain

plain
--a
Content-Type: multipart/related; boundary=r

--r
Content-Type: text/html

<b>html</b>
--r
Content-Type: image/png
Content-ID: <img1>

PNG
--r--
--a--
--m
Content-Type: application/octet-stream

BIN
--m
Content-Type: multipart/mixed; boundary=n

--n
Content-Type: text/calendar; method=REQUEST

BEGIN:VCALENDAR
--n
Content-Type: audio/ogg
Content-Disposition: attachment; filename=a.ogg

OGG
--n--
--m--
"""
    )
    s = summarise(raw)
    parts = [(a.content_type, a.part, a.disposition) for a in s.attachments]
    assert parts == [
        ("image/png", "1.2.2", "inline"),
        ("application/octet-stream", "2", "attachment"),
        ("text/calendar", "3.1", "attachment"),
        ("audio/ogg", "3.2", "attachment"),
    ]
    assert [a.id for a in s.attachments] == [
        "ATT00001",
        "ATT00002",
        "ATT00003",
        "ATT00004",
    ]
    assert s.attachments[3].filename == "a.ogg"
    assert s.intro == "plain"


def test_single_part_non_text_message_is_part_1() -> None:
    raw = crlf(
        """\
From: scanner@example.com
Content-Type: application/pdf
Content-Disposition: attachment; filename=scan.pdf
Content-Transfer-Encoding: base64

JVBERi0=
"""
    )
    s = summarise(raw)
    assert [(a.part, a.filename, a.size) for a in s.attachments] == [
        ("1", "scan.pdf", 5)
    ]
    assert s.intro == ""


def test_text_plain_attachment_vs_body() -> None:
    raw = crlf(
        """\
Content-Type: multipart/mixed; boundary=b

--b
Content-Type: text/plain

body text
--b
Content-Type: text/plain
Content-Disposition: attachment; filename="notes.txt"

attached notes
--b
Content-Type: text/plain
Content-Disposition: attachment

no name but still an attachment
--b
Content-Type: text/plain
Content-Disposition: inline

second inline body part
--b--
"""
    )
    s = summarise(raw)
    assert [(a.filename, a.part) for a in s.attachments] == [
        ("notes.txt", "2"),
        (None, "3"),
    ]
    assert s.intro == "body text second inline body part"


def test_multipart_digest_default_type() -> None:
    raw = crlf(
        """\
Content-Type: multipart/digest; boundary=d

--d

From: x@example.com
Subject: one

first
--d

From: y@example.com
Subject: two

second
--d--
"""
    )
    s = summarise(raw)
    assert [(a.content_type, a.part) for a in s.attachments] == [
        ("message/rfc822", "1"),
        ("message/rfc822", "2"),
    ]


# --------------------------------------------------------------------------
# headers: encodings


def test_encoded_subjects_and_names() -> None:
    raw = crlf(
        """\
From: =?UTF-8?B?SsO2cmcgTcO8bGxlcg==?= <jorg@example.de>
To: =?ISO-8859-1?Q?Andr=E9?= Pirard <pirard@example.be>,
 "=?utf-8?q?Ren=C3=A9e_Dupont?=" <renee@example.fr>
Cc: =?utf-8?q?Za=C5=BC=C3=B3=C5=82=C4=87?= =?utf-8?q?_g=C4=99?= <zg@example.pl>
Subject: =?utf-8?Q?Gr=C3=BC=C3=9Fe?= aus =?iso-8859-1?b?TfxuY2hlbg==?=

body
"""
    )
    s = summarise(raw)
    assert s.from_ == AddressInfo(name="Jörg Müller", address="jorg@example.de")
    assert s.to == (
        AddressInfo(name="André Pirard", address="pirard@example.be"),
        AddressInfo(name="Renée Dupont", address="renee@example.fr"),
    )
    # whitespace between adjacent encoded words is dropped, "_" is a space
    assert s.cc == (AddressInfo(name="Zażółć gę", address="zg@example.pl"),)
    assert s.subject == "Grüße aus München"


def test_encoded_word_edge_cases() -> None:
    raw = crlf(
        """\
Subject: =?utf-8?b?4oKs?= =?utf-8?b?IDEw?= and =?utf-8?q?=E2=82?= =?utf-8?q?=AC?= then =?x-bogus?q?caf=C3=A9?= =?utf-8?q?broken
From: =?nonsense?=

x
"""
    )
    s = summarise(raw)
    # a multi-byte character split across two encoded words is rejoined,
    # unknown charsets are guessed, malformed words are kept literally
    assert s.subject == "€ 10 and € then café =?utf-8?q?broken"
    assert s.from_ == AddressInfo(name="", address="=?nonsense?=")


def test_raw_8bit_headers_utf8_and_latin1() -> None:
    raw = (
        "From: Jörg Müller <jörg@exämple.de>\r\nSubject: Grüße – schön\r\n\r\nbody\r\n"
    ).encode() + b"X-Other: \xff\r\n"
    s = summarise(raw)
    assert s.from_ == AddressInfo(name="Jörg Müller", address="jörg@exämple.de")
    assert s.subject == "Grüße – schön"

    latin = b"Subject: caf\xe9 cr\xe8me\r\nFrom: Fran\xe7ois <f@example.fr>\r\n\r\nbody"
    s = summarise(latin)
    assert s.subject == "café crème"
    assert s.from_ == AddressInfo(name="François", address="f@example.fr")


def test_folded_subject_is_unfolded() -> None:
    raw = b"Subject: a very long\r\n subject line\r\n\tcontinued\r\n\r\n"
    s = summarise(raw)
    assert s.subject == "a very long subject line continued"
    assert s.intro == ""


def test_bare_lf_line_endings() -> None:
    raw = PLAIN.replace(b"\r\n", b"\n")
    s = summarise(raw)
    assert s.subject == "Lunch tomorrow?"
    assert s.from_ == AddressInfo(name="Alice Example", address="alice@example.com")
    assert s.intro == "Hi Bob, are you free for lunch tomorrow? Alice"
    assert s.header_size == raw.index(b"\n\n") + 2

    mixed = MIXED.replace(b"\r\n", b"\n")
    sm = summarise(mixed)
    assert [(a.filename, a.part, a.size) for a in sm.attachments] == [
        (a.filename, a.part, a.size) for a in summarise(MIXED).attachments
    ]


# --------------------------------------------------------------------------
# addresses


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("alice@example.com", [("", "alice@example.com")]),
        ("<alice@example.com>", [("", "alice@example.com")]),
        ("Alice <alice@example.com>", [("Alice", "alice@example.com")]),
        ("alice@example.com (Alice Liddell)", [("Alice Liddell", "alice@example.com")]),
        (
            '"Liddell, Alice" <alice@example.com>',
            [("Liddell, Alice", "alice@example.com")],
        ),
        ("'Alice' <alice@example.com>", [("Alice", "alice@example.com")]),
        ('"quoted \\"nick\\"" <n@example.com>', [('quoted "nick"', "n@example.com")]),
        (
            "Team: a@example.com, B <b@example.com>;, c@example.com",
            [("", "a@example.com"), ("B", "b@example.com"), ("", "c@example.com")],
        ),
        ("undisclosed-recipients:;", []),
        (
            "a@example.com,, ,b@example.com",
            [("", "a@example.com"), ("", "b@example.com")],
        ),
        ("Just A Name", [("Just A Name", "")]),
        ("MAILER-DAEMON", [("", "MAILER-DAEMON")]),
        ("Broken <broken@example.com", [("Broken", "broken@example.com")]),
        ("<mailto:m@example.com>", [("", "m@example.com")]),
        ("<@relay.example:route@example.com>", [("", "route@example.com")]),
        ('"john doe"@example.com', [("", '"john doe"@example.com')]),
        ("Name (comment (nested)) <n@example.com>", [("Name", "n@example.com")]),
        ("", []),
    ],
)
def test_address_parsing(header: str, expected: list[tuple[str, str]]) -> None:
    s = summarise(f"To: {header}\r\n\r\n".encode())
    assert [(a.name, a.address) for a in s.to] == expected


def test_multiple_address_headers_are_combined_and_from_takes_first() -> None:
    raw = b"From: a@example.com, b@example.com\r\nTo: x@example.com\r\nTo: y@example.com\r\nSender: s@example.com\r\nReply-To: r@example.com\r\nBcc: hidden@example.com\r\n\r\n"
    s = summarise(raw)
    assert s.from_ == AddressInfo("", "a@example.com")
    assert [a.address for a in s.to] == ["x@example.com", "y@example.com"]
    assert s.sender == AddressInfo("", "s@example.com")
    assert s.reply_to == (AddressInfo("", "r@example.com"),)
    assert s.bcc == (AddressInfo("", "hidden@example.com"),)


# --------------------------------------------------------------------------
# dates and ids


def test_missing_date_and_message_id() -> None:
    s = summarise(b"From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n")
    assert s.date is None
    assert s.message_id is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Mon, 15 Jan 2024 09:30:00 -0500", datetime(2024, 1, 15, 14, 30, tzinfo=UTC)),
        ("15 Jan 2024 09:30:00 +0000 (UTC)", datetime(2024, 1, 15, 9, 30, tzinfo=UTC)),
        ("Mon, 15 Jan 24 09:30:00 EST", datetime(2024, 1, 15, 14, 30, tzinfo=UTC)),
        ("Mon, 15 Jan 2024 09:30:00", datetime(2024, 1, 15, 9, 30, tzinfo=UTC)),
        ("2024-01-15T09:30:00Z", datetime(2024, 1, 15, 9, 30, tzinfo=UTC)),
        ("not a date at all", None),
        ("Mon, 32 Feb 2024 09:30:00 +0000", None),
        ("Mon, 15 Jan 2024 09:30:00 +9999", None),
        ("Thu, 01 Jan 1970 00:00:00 +0000", None),
        ("Mon, 15 Jan 1800 09:30:00 +0000", None),
        ("Mon, 15 Jan 3024 09:30:00 +0000", None),
        ("", None),
    ],
)
def test_dates(value: str, expected: datetime | None) -> None:
    s = summarise(f"Date: {value}\r\n\r\n".encode())
    assert s.date == expected
    if s.date is not None:
        assert s.date.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_references_and_in_reply_to() -> None:
    raw = crlf(
        """\
Subject: Re: plans
Message-ID:
 <reply-3@example.com> (the reply)
In-Reply-To: Your message of "Mon, 15 Jan" <msg-2@example.com>
References: <msg-1@example.com>
	<msg-2@example.com>  <msg-1@example.com>
 <broken id@example.com>

x
"""
    )
    s = summarise(raw)
    assert s.message_id == "<reply-3@example.com>"
    assert s.in_reply_to == ("<msg-2@example.com>",)
    assert s.references == (
        "<msg-1@example.com>",
        "<msg-2@example.com>",
        "<brokenid@example.com>",
    )
    assert s.is_reply is True
    assert s.thread_subject == "plans"


def test_message_id_without_brackets_and_garbage() -> None:
    assert (
        summarise(b"Message-ID: abc@example.com\r\n\r\n").message_id
        == "<abc@example.com>"
    )
    assert summarise(b"Message-ID: <>\r\n\r\n").message_id is None
    assert summarise(b"Message-ID: total garbage\r\n\r\n").message_id is None
    assert summarise(b"In-Reply-To: a@b.c\r\n\r\n").in_reply_to == ("<a@b.c>",)
    s = summarise(b"In-Reply-To: <x@y>\r\n\r\n")
    assert s.is_reply is True and s.thread_subject == ""


# --------------------------------------------------------------------------
# subjects


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Hello World", "hello world"),
        ("Re: Hello", "hello"),
        ("RE: Re: re:  Hello   World ", "hello world"),
        ("Fwd: Hello", "hello"),
        ("FW: Hello", "hello"),
        ("Fw: Re: Hello", "hello"),
        ("AW: Hello", "hello"),
        ("SV: Hello", "hello"),
        ("VS: Hello", "hello"),
        ("Antw: Hello", "hello"),
        ("Re[2]: Hello", "hello"),
        ("Re(3): Hello", "hello"),
        ("Re : Hello", "hello"),
        ("[list] Hello", "hello"),
        ("Re: [list] Re: [other] Hello", "hello"),
        ("[PATCH v2 1/3] Fix it", "fix it"),
        ("Hello (fwd)", "hello"),
        ("Re: Hello (fwd) (FWD)", "hello"),
        ("回复：你好", "你好"),
        ("Rerun tests", "rerun tests"),
        ("Refund: request", "refund: request"),
        ("Hello re: world", "hello re: world"),
        ("Re:", ""),
        ("", ""),
        ("\tSTRASSE\n", "strasse"),
    ],
)
def test_normalise_subject(subject: str, expected: str) -> None:
    assert normalise_subject(subject) == expected


@pytest.mark.parametrize(
    ("subject", "is_reply"),
    [
        ("Re: x", True),
        ("Fwd: x", True),
        ("x (fwd)", True),
        ("[list] x", False),
        ("x", False),
    ],
)
def test_is_reply_from_subject(subject: str, is_reply: bool) -> None:
    assert summarise(f"Subject: {subject}\r\n\r\n".encode()).is_reply is is_reply


# --------------------------------------------------------------------------
# intro


def test_intro_truncation() -> None:
    words = " ".join(f"word{i}" for i in range(100))
    raw = f"Subject: long\r\n\r\n{words}\r\n".encode()
    intro = summarise(raw).intro
    assert intro.endswith("…")
    assert len(intro) <= 129
    assert words.startswith(intro[:-1])
    assert not intro[:-1].endswith(" ")
    # a cut at a word boundary
    assert intro[:-1].split(" ")[-1] in words.split(" ")


def test_intro_short_text_not_cut_and_whitespace_collapsed() -> None:
    raw = b"Subject: s\r\n\r\n\r\n   Hello\r\n\r\n\t  there  \r\n"
    assert summarise(raw).intro == "Hello there"


def test_intro_from_html_only() -> None:
    raw = crlf(
        """\
Content-Type: text/html; charset=utf-8

<!DOCTYPE html><html><head><title>T</title><style>body { color: red; }</style>
<script>var x = "<p>not this</p>";</script></head>
<body><!-- comment --><div>Hello&nbsp;<b>World</b> &amp; friends</div><p>second&#8203; para</p></body></html>
"""
    )
    assert summarise(raw).intro == "Hello World & friends second para"


def test_intro_from_large_html_with_long_style_block() -> None:
    style = "<style>" + ("p { margin: 0 } " * 5000) + "</style>"
    raw = (
        "Content-Type: text/html\r\n\r\n<html><head>"
        + style
        + "</head><body><p>Finally the text</p></body></html>"
    ).encode()
    assert summarise(raw).intro == "Finally the text"


def test_intro_from_base64_text() -> None:
    body = (
        base64.encodebytes(("Grüße " * 400).encode("utf-8"))
        .decode()
        .replace("\n", "\r\n")
    )
    raw = (
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + body
    ).encode()
    intro = summarise(raw).intro
    assert intro.startswith("Grüße Grüße") and intro.endswith("…")
    assert "\ufffd" not in intro


# --------------------------------------------------------------------------
# odd shapes


def test_empty_and_degenerate_inputs() -> None:
    s = summarise(b"")
    assert (
        s.header_size == 0
        and s.subject == ""
        and s.from_ is None
        and s.attachments == ()
    )

    only_header = b"Subject: only a header\r\nFrom: a@example.com"
    s = summarise(only_header)
    assert s.subject == "only a header"
    assert s.header_size == len(only_header)
    assert s.intro == ""

    only_body = b"\r\nJust a body without headers"
    s = summarise(only_body)
    assert s.header_size == 2
    assert s.intro == "Just a body without headers"

    not_headers = b"This is not a header line\nsecond line\n"
    s = summarise(not_headers)
    assert s.header_size == 0
    assert s.intro == "This is not a header line second line"


def test_mbox_from_line_is_skipped() -> None:
    raw = b"From alice@example.com Mon Jan 15 09:30:00 2024\nSubject: mbox\n\nbody\n"
    s = summarise(raw)
    assert s.subject == "mbox"
    assert s.intro == "body"


def test_missing_boundaries() -> None:
    no_close = crlf(
        """\
Content-Type: multipart/mixed; boundary=b

--b
Content-Type: text/plain

text
--b
Content-Type: application/octet-stream

data to the end
"""
    )
    s = summarise(no_close)
    assert [(a.part, a.size) for a in s.attachments] == [
        ("2", len(b"data to the end\r\n"))
    ]
    assert s.intro == "text"

    no_delimiter = (
        b"Content-Type: multipart/mixed; boundary=zzz\r\n\r\nplain words only\r\n"
    )
    s = summarise(no_delimiter)
    assert s.attachments == ()
    assert s.intro == "plain words only"

    no_param = b"Content-Type: multipart/mixed\r\n\r\n--x\r\n\r\nsomething\r\n"
    assert summarise(no_param).attachments == ()


def test_deep_nesting_is_capped() -> None:
    depth = 200
    head = "".join(
        f"Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n"
        for i in range(depth)
    )
    raw = (head + "Content-Type: text/plain\r\n\r\ndeep\r\n").encode()
    s = summarise(raw)
    assert len(s.attachments) == 1
    (opaque,) = s.attachments
    assert opaque.content_type == "multipart/mixed"
    assert opaque.part.count(".") == 49


def test_broken_base64_size_matches_decoded_bytes() -> None:
    raw = crlf(
        """\
Content-Type: multipart/mixed; boundary=b

--b
Content-Type: application/octet-stream
Content-Transfer-Encoding: base64

SGVs!!bG8*
 gd29y bGQ
--b
Content-Type: application/octet-stream
Content-Transfer-Encoding: quoted-printable

a=3Db=ZZ=
c
--b
Content-Type: application/octet-stream
Content-Transfer-Encoding: base64

QQ==QkM=
--b--
"""
    )
    s = summarise(raw)
    for att in s.attachments:
        result = get_attachment(raw, att.id)
        assert result is not None
        info, data = result
        assert info == att
        assert len(data) == att.size
    assert get_attachment(raw, "ATT00001")[1] == b"Hello world"  # type: ignore[index]
    assert get_attachment(raw, "ATT00002")[1] == b"a=b=ZZc"  # type: ignore[index]
    assert get_attachment(raw, "ATT00003")[1] == b"ABC"  # type: ignore[index]


def test_unknown_content_type_defaults_to_text_plain() -> None:
    raw = b"Content-Type: garbage\r\n\r\nhello\r\n"
    s = summarise(raw)
    assert s.attachments == ()
    assert s.intro == "hello"


def test_content_type_case_and_filename_paths() -> None:
    raw = crlf(
        """\
Content-Type: Multipart/Mixed; Boundary="B"

--B
Content-Type: TEXT/PLAIN

hi
--B
Content-Type: Image/JPEG; NAME="C:\\\\Users\\\\me\\\\photo.jpg"
Content-ID: <photo>

JPEGDATA
--B
Content-Type: application/octet-stream
Content-Disposition: attachment; filename="../../etc/passwd"

x
--B--
"""
    )
    s = summarise(raw)
    assert [(a.content_type, a.filename) for a in s.attachments] == [
        ("image/jpeg", "photo.jpg"),
        ("application/octet-stream", "passwd"),
    ]
    # Content-ID outside multipart/related without a disposition: attachment
    assert s.attachments[0].disposition == "attachment"
    assert s.attachments[0].content_id == "photo"


def test_summary_is_fast_for_a_typical_message() -> None:
    html = (
        "<html><body>"
        + "<p>Some <b>newsletter</b> text with a <a href='https://example.com'>link</a>.</p>"
        * 150
        + "</body></html>"
    )
    plain = "Some newsletter text with a link.\n" * 150
    raw = crlf(
        "From: News <news@example.com>\nTo: bob@example.net\nSubject: =?utf-8?q?Weekly_news?=\n"
        "Date: Mon, 15 Jan 2024 09:30:00 +0000\nMessage-ID: <n1@example.com>\n"
        + "Received: from a by b; Mon, 15 Jan 2024 09:30:00 +0000\n" * 8
        + 'Content-Type: multipart/alternative; boundary="b"\n\n--b\nContent-Type: text/plain\n\n'
        + plain
        + "\n--b\nContent-Type: text/html\n\n"
        + html
        + "\n--b--\n"
    )
    assert 15_000 < len(raw) < 30_000
    summarise(raw)
    runs = 200
    start = time.perf_counter()
    for _ in range(runs):
        summarise(raw)
    per_call = (time.perf_counter() - start) / runs
    # ~0.2 ms on a laptop; generous bound for slow CI machines
    assert per_call < 0.01


def test_plain_dates_read_as_the_general_date_parser_reads_them() -> None:
    """The fast path for RFC 5322 dates (``_PLAIN_DATE``) gives what the general
    parser gives, for valid and invalid fields alike: days, months, years out of
    range, leap seconds, zones with comments, odd spacing."""
    import random

    from postern.mime.dates import _PLAIN_DATE, _parse_any_date, _parse_date

    rng = random.Random(20261121)
    fast = 0
    for _ in range(20_000):
        parts = []
        day_name = rng.choice(["Mon", "Sat", "Sun", "mon", "Foo", ""])
        if day_name:
            parts.append(day_name + rng.choice([",", ", ", ""]))
        parts.append(str(rng.choice([0, 1, 9, 29, 30, 31, 32, rng.randint(1, 31)])).zfill(rng.choice([1, 2])))
        parts.append(rng.choice(["Jan", "Feb", "Nov", "Dec", "jan", "Foo"]))
        parts.append(str(rng.choice([1969, 1970, 2024, 2199, 2200, rng.randint(1950, 2250)])))
        parts.append(f"{rng.choice([0, 23, 24, 99]):02d}:{rng.choice([0, 59, 60]):02d}:{rng.choice([0, 59, 60, 61]):02d}")
        parts.append(rng.choice("+-") + f"{rng.choice([0, 1, 14, 99]):02d}{rng.choice([0, 30, 60, 99]):02d}")
        if rng.random() < 0.3:
            parts.append(rng.choice(["(UTC)", "(a b)", "()"]))
        value = (rng.choice(["", " ", "\t"]) + rng.choice([" ", "  ", "\t"]).join(parts) + rng.choice(["", " "])).encode()
        fast += _PLAIN_DATE.fullmatch(value) is not None
        assert _parse_date(value) == _parse_any_date(value), value
    assert fast > 5_000  # the fast path was tried, not only the general one
