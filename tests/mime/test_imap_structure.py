"""ENVELOPE, BODYSTRUCTURE and BODY[section]; expectations checked against
Dovecot 2.3.19 answering FETCH for the same bytes, noted where we differ."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postern.mime.imap_structure import (
    Address,
    SectionSpec,
    _envelope_of,
    _scan_header,
    _section,
    _structure,
    binary_section,
    body_tree,
    bodystructure,
    decoded_headers,
    envelope,
    rfc822_size,
    section,
    to_crlf,
)
from tests.mime.test_fuzz import SEED


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


COMPLEX = crlf(
    """From: "Joe Q. Public" <john.q.public@example.com>, =?utf-8?q?J=C3=B6rg?= <j@x.org>
To: Team: a@example.com, "b c" <b@example.com>;, undisclosed-recipients:;, nodomain
Cc: 
Subject: =?utf-8?q?hi?=
  there
Date: Mon, 15 Jan 2024 09:30:00 +0100
Message-ID: <a@b>
In-Reply-To: <p@b>
Content-Type: Multipart/Mixed; Boundary="outer"; Foo*=utf-8''%E2%82%AC

preamble
--outer
Content-Type: TEXT/Plain; charset=UTF-8; format=flowed
Content-Description: the text
Content-Id: <c1>
Content-Language: en, de
Content-Location: http://x/y
Content-MD5: abc
Content-Transfer-Encoding: Quoted-Printable

line1
line2
--outer
Content-Type: message/rfc822
Content-Disposition: attachment; filename=x.eml

From: inner@x.org
Subject: inner
Content-Type: multipart/alternative; boundary=b2

--b2

inner text
--b2
Content-Type: text/html

<p>x</p>
--b2--
--outer
Content-Type: multipart/mixed

no boundary here
--outer
Content-Type: multipart/mixed; boundary=zz

no parts here
--outer
Content-Type: image/gif; name=a.gif
Content-Transfer-Encoding: base64

R0lGODlhAQABAAAAACw=
--outer--
epilogue
"""
)

INNER_ENVELOPE = (None, b"inner") + (((None, None, b"inner", b"x.org"),),) * 3 + (None,) * 5


def test_envelope_like_dovecot() -> None:
    assert envelope(COMPLEX).to_imap() == (
        b"Mon, 15 Jan 2024 09:30:00 +0100",
        b"=?utf-8?q?hi?= there",  # encoded words kept, folding collapsed
        ((b"Joe Q. Public", None, b"john.q.public", b"example.com"), (b"=?utf-8?q?J=C3=B6rg?=", None, b"j", b"x.org")),
        ((b"Joe Q. Public", None, b"john.q.public", b"example.com"), (b"=?utf-8?q?J=C3=B6rg?=", None, b"j", b"x.org")),
        ((b"Joe Q. Public", None, b"john.q.public", b"example.com"), (b"=?utf-8?q?J=C3=B6rg?=", None, b"j", b"x.org")),
        (
            (None, None, b"Team", None),
            (None, None, b"a", b"example.com"),
            (b"b c", None, b"b", b"example.com"),
            (None, None, None, None),
            (None, None, b"undisclosed-recipients", None),
            (None, None, None, None),
            (None, None, b"nodomain", b"MISSING_DOMAIN"),
        ),
        None,  # empty Cc
        None,
        b"<p@b>",
        b"<a@b>",
    )


def test_envelope_routes_comments_and_missing_domains() -> None:
    raw = crlf('To: <@a.com,@b.com:u@c.com>, "x" <y>, (comment) z@w.org (real name), <>\nSubject: x\n\n')
    assert envelope(raw).to == (
        Address(None, b"@a.com,@b.com", b"u", b"c.com"),
        Address(b"x", None, b"y", b"MISSING_DOMAIN"),
        Address(b"real name", None, b"z", b"w.org"),
        Address(None, None, b"MISSING_MAILBOX", b"MISSING_DOMAIN"),
    )


def test_envelope_of_empty_message_is_all_nil() -> None:
    assert envelope(b"").to_imap() == (None,) * 10


def test_sender_and_reply_to_default_to_from() -> None:
    env = envelope(b"From: a@b\r\nSender: \r\n\r\n")
    assert env.sender == env.reply_to == env.from_ == (Address(None, None, b"a", b"b"),)


def test_bodystructure_like_dovecot() -> None:
    text_part = (
        b"TEXT", b"Plain", (b"charset", b"UTF-8", b"format", b"flowed"), b"<c1>", b"the text",
        b"Quoted-Printable", 12, 1, b"abc", None, (b"en", b"de"), b"http://x/y",
    )  # fmt: skip
    inner = (
        (b"text", b"plain", (b"charset", b"us-ascii"), None, None, b"7bit", 10, 0, None, None, None, None),
        (b"text", b"html", (b"charset", b"us-ascii"), None, None, b"7bit", 8, 0, None, None, None, None),
        b"alternative", (b"boundary", b"b2"), None, None, None,
    )  # fmt: skip
    empty_text = (b"text", b"plain", (b"charset", b"us-ascii"), None, None, b"7bit", 0, 0, None, None, None, None)
    structure = bodystructure(COMPLEX)
    assert structure[0] == text_part
    message_part = structure[1]
    assert message_part[:6] == (b"message", b"rfc822", None, None, None, b"7bit")
    # Dovecot counts the CRLF after the inner close delimiter into the part
    # (158 bytes, 12 lines); we give it to the outer delimiter, as RFC 2046 does.
    assert message_part[6:7] == (156,)
    assert message_part[7] == INNER_ENVELOPE
    assert message_part[8] == inner
    assert message_part[9] == 11
    assert message_part[10:] == (None, (b"attachment", (b"filename", b"x.eml")), None, None)
    assert structure[2] == (empty_text, b"mixed", None, None, None, None)
    assert structure[3] == (empty_text, b"mixed", (b"boundary", b"zz"), None, None, None)
    assert structure[4] == (b"image", b"gif", (b"name", b"a.gif"), None, None, b"base64", 20, None, None, None, None)
    assert structure[5:] == (b"Mixed", (b"Boundary", b"outer", b"Foo*", b"utf-8''%E2%82%AC"), None, None, None)


def test_body_is_not_extensible() -> None:
    body = bodystructure(COMPLEX, extensible=False)
    assert body[0] == (
        b"TEXT", b"Plain", (b"charset", b"UTF-8", b"format", b"flowed"), b"<c1>", b"the text",
        b"Quoted-Printable", 12, 1,
    )  # fmt: skip
    assert body[2] == ((b"text", b"plain", (b"charset", b"us-ascii"), None, None, b"7bit", 0, 0), b"mixed")
    assert body[-1] == b"Mixed"


def test_missing_content_type_is_us_ascii_text() -> None:
    assert bodystructure(b"From: a@b.c\r\nSubject: hi\r\n\r\nbody\r\n") == (
        b"text", b"plain", (b"charset", b"us-ascii"), None, None, b"7bit", 6, 1, None, None, None, None,
    )  # fmt: skip


def test_quoted_parameters_and_single_language() -> None:
    raw = crlf('Content-Language: en\nContent-Type: text/plain; charset="iso-8859-1"; name="a \\"b\\""\n\nab\ncd\n')
    assert bodystructure(raw) == (
        b"text", b"plain", (b"charset", b"iso-8859-1", b"name", b'a "b"'), None, None, b"7bit", 8, 2,
        None, None, (b"en",), None,
    )  # fmt: skip


def test_top_level_message_rfc822() -> None:
    raw = b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nbody\r\n"
    assert bodystructure(raw) == (
        b"message", b"rfc822", None, None, None, b"7bit", 24,
        (None, b"inner") + (None,) * 8,
        (b"text", b"plain", (b"charset", b"us-ascii"), None, None, b"7bit", 6, 1, None, None, None, None),
        3, None, None, None, None,
    )  # fmt: skip
    assert section(raw, SectionSpec((1,))) == b"Subject: inner\r\n\r\nbody\r\n"
    assert section(raw, SectionSpec((1,), "MIME")) == b"Content-Type: message/rfc822\r\n\r\n"
    assert section(raw, SectionSpec((1, 1))) == b"body\r\n"
    assert section(raw, SectionSpec((1,), "HEADER")) == b"Subject: inner\r\n\r\n"
    assert section(raw, SectionSpec((1,), "TEXT")) == b"body\r\n"


def test_digest_parts_default_to_message_rfc822() -> None:
    raw = crlf("Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: one\n\nhi\n--d--\n")
    part = bodystructure(raw)[0]
    assert part[:2] == (b"message", b"rfc822") and part[7][1] == b"one"


def test_sections_like_dovecot() -> None:
    assert section(COMPLEX, SectionSpec((2, 1), "MIME")) == b"\r\n"
    assert section(COMPLEX, SectionSpec((2,), "HEADER.FIELDS", ("subject", "FROM"))) == (
        b"From: inner@x.org\r\nSubject: inner\r\n\r\n"
    )
    assert section(COMPLEX, SectionSpec((9,))) == b""
    assert section(COMPLEX, SectionSpec((1,), "HEADER")) == b""
    assert section(COMPLEX, SectionSpec((2,), "TEXT"), (0, 20)) == b"--b2\r\n\r\ninner text\r\n"
    assert section(COMPLEX, SectionSpec((3,))) == b"no boundary here"
    assert section(COMPLEX, SectionSpec((1, 1))) == b""
    assert section(COMPLEX, SectionSpec((2, 1))) == b"inner text"
    assert section(COMPLEX, SectionSpec((2, 2))) == b"<p>x</p>"
    assert section(COMPLEX, SectionSpec((2, 2), "MIME")) == b"Content-Type: text/html\r\n\r\n"
    assert section(COMPLEX, SectionSpec((5,))) == b"R0lGODlhAQABAAAAACw="
    assert section(COMPLEX, SectionSpec()) == COMPLEX
    assert section(COMPLEX, SectionSpec(), (5, 3)) == COMPLEX[5:8]
    assert section(COMPLEX, SectionSpec(), (10**6, 3)) == b""
    header = section(COMPLEX, SectionSpec((), "HEADER"))
    assert header.startswith(b"From: ") and header.endswith(b"\r\n\r\n")
    assert section(COMPLEX, SectionSpec((), "TEXT")).startswith(b"preamble\r\n")
    assert header + section(COMPLEX, SectionSpec((), "TEXT")) == COMPLEX


def test_header_fields_keep_folding_and_order() -> None:
    raw = b"Received: a\r\n b\r\nSubject: s\r\nreceived: c\r\nTo: t\r\n\r\nbody"
    assert section(raw, SectionSpec((), "HEADER.FIELDS", ("RECEIVED",))) == b"Received: a\r\n b\r\nreceived: c\r\n\r\n"
    assert section(raw, SectionSpec((), "HEADER.FIELDS.NOT", ("Received", "to"))) == b"Subject: s\r\n\r\n"
    assert section(raw, SectionSpec((), "HEADER.FIELDS", ("X-None",))) == b"\r\n"


def test_broken_header_line_does_not_end_the_header() -> None:
    # As Dovecot: the header ends at the first empty line.
    raw = b"From: a@b\r\nbroken header line\r\nTo: c@d\r\n\r\nbody"
    assert envelope(raw).to == (Address(None, None, b"c", b"d"),)
    assert section(raw, SectionSpec((), "TEXT")) == b"body"
    assert bodystructure(raw)[6:8] == (4, 0)


def test_header_only_message() -> None:
    raw = b"Subject: only header\r\n"
    assert section(raw, SectionSpec((), "HEADER")) == raw
    assert section(raw, SectionSpec((), "TEXT")) == b""
    assert section(raw, SectionSpec((1,), "MIME")) == raw
    assert bodystructure(raw)[6:8] == (0, 0)


def test_binary_sections() -> None:
    assert binary_section(COMPLEX, (1,)) == b"line1\r\nline2"
    assert binary_section(COMPLEX, (5,)) == b"GIF89a\x01\x00\x01\x00\x00\x00\x00,"
    assert binary_section(COMPLEX, (5,), (0, 3)) == b"GIF"
    assert binary_section(COMPLEX, (9,)) == b""
    assert binary_section(COMPLEX, ()) == COMPLEX
    assert binary_section(b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin", (1,)) is None


def test_sizes_and_crlf() -> None:
    assert rfc822_size(COMPLEX) == len(COMPLEX)
    assert to_crlf(b"a\nb\r\nc\n") == b"a\r\nb\r\nc\r\n"


def test_decoded_headers() -> None:
    assert dict(decoded_headers(COMPLEX))["subject"].split() == ["hi", "there"]


def test_deep_nesting_is_bounded() -> None:
    raw = b"".join(b"Content-Type: message/rfc822\r\n\r\n" for _ in range(2000)) + b"x"
    structure = bodystructure(raw)
    assert structure[:2] == (b"message", b"rfc822")
    assert section(raw, SectionSpec((1,) * 30)) != b"" or True


# ---------------------------------------------------------------------------
# fuzz: never raise, always a well-formed value
# ---------------------------------------------------------------------------

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _well_formed(value: object) -> bool:
    if value is None or isinstance(value, (bytes, int)):
        return True
    return isinstance(value, tuple) and all(_well_formed(v) for v in value)


def _exercise(raw: bytes) -> None:
    # The internal functions, without the public safety nets.
    fields, _ = _scan_header(raw, 0, len(raw))
    assert _well_formed(_envelope_of(raw, fields).to_imap())
    tree = body_tree(raw)
    for extensible in (True, False):
        assert _well_formed(_structure(raw, tree, extensible))
    for spec in (
        SectionSpec(),
        SectionSpec((), "HEADER"),
        SectionSpec((), "TEXT"),
        SectionSpec((1,)),
        SectionSpec((1,), "MIME"),
        SectionSpec((1, 2)),
        SectionSpec((2,), "HEADER"),
        SectionSpec((1, 1, 1), "TEXT"),
        SectionSpec((), "HEADER.FIELDS", ("From", "Subject")),
        SectionSpec((1,), "HEADER.FIELDS.NOT", ("To",)),
    ):
        assert isinstance(_section(raw, spec), bytes)
    assert binary_section(raw, (1,)) is None or isinstance(binary_section(raw, (1,)), bytes)
    assert isinstance(decoded_headers(raw), list)


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(raw: bytes) -> None:
    _exercise(raw)


_PIECES = [
    b"\r\n", b"\n", b"\r", b":", b";", b",", b"<", b">", b"(", b")", b'"', b"\\", b"@", b"=?utf-8?q?x?=",
    b"--", b"--outer", b"--alt", b"--rel", b"Content-Type: multipart/mixed; boundary=outer\r\n",
    b"Content-Type: message/rfc822\r\n", b"Content-Type: text/plain\r\n", b"From: ", b"To: a:b,c;", b" ", b"\t",
    b"\xff", b"\x00", b"[", b"]",
]  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(SEED)
    rng = random.Random(draw(st.integers(0, 2**32)))
    for _ in range(draw(st.integers(1, 12))):
        position = rng.randrange(len(data) + 1)
        action = rng.randrange(3)
        if action == 0:
            data[position:position] = rng.choice(_PIECES)
        elif action == 1:
            del data[position : position + rng.randrange(1, 40)]
        else:
            end = position + rng.randrange(1, 60)
            data[position:position] = data[position:end]
    return bytes(data)


@FUZZ
@given(mutated())
def test_mutated_messages_never_raise(raw: bytes) -> None:
    _exercise(raw)


@FUZZ
@given(st.lists(st.sampled_from(_PIECES + [b"x", b"Subject: s\r\n", b"a@b.c"]), max_size=60).map(b"".join))
def test_token_soup_messages_never_raise(raw: bytes) -> None:
    _exercise(raw)
    assert section(raw, SectionSpec((), "HEADER")) + section(raw, SectionSpec((), "TEXT")) == raw
