from __future__ import annotations

import base64

from postern.mime import MessageContent, extract_content, get_attachment, summarise
from tests.mime.test_summary import (
    ALTERNATIVE,
    FORWARD,
    INNER,
    MIXED,
    PLAIN,
    RELATED,
    crlf,
)


def test_plain_only_message_renders_escaped_html() -> None:
    c = extract_content(PLAIN)
    assert isinstance(c, MessageContent)
    assert c.text == "Hi Bob,\n\nare you free for lunch tomorrow?\n\nAlice"
    assert c.html == (
        "<p>Hi Bob,</p>\n<p>are you free for lunch tomorrow?</p>\n<p>Alice</p>",
    )


def test_plain_text_is_escaped_and_links_are_not_made() -> None:
    raw = crlf(
        """\
Content-Type: text/plain; charset=utf-8

<script>alert("x")</script> & see https://example.com/?a=1&b=2
second line
"""
    )
    c = extract_content(raw)
    assert c.text.startswith('<script>alert("x")</script>')
    (html,) = c.html
    assert "<script>" not in html
    assert (
        "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; see https://example.com/?a=1&amp;b=2<br>\nsecond line"
        in html
    )
    assert "<a " not in html


def test_alternative_uses_plain_text_and_sanitised_html() -> None:
    c = extract_content(ALTERNATIVE)
    assert c.text == "Thanks for your order of 3 café mugs."
    (html,) = c.html
    assert "<p>Thanks for your order of 3 café mugs.</p>" in html
    assert "<style" not in html and "color: red" not in html


def test_html_only_message_is_converted_to_text() -> None:
    raw = crlf(
        """\
Content-Type: text/html; charset=utf-8

<html><head><title>Title</title><style>p{}</style><script>evil()</script></head>
<body><h1>Heading</h1><p>First&nbsp;paragraph with <a href="javascript:alert(1)" onclick="x()">a link</a>.</p>
<p>Second<br>line</p><table><tr><td>a</td><td>b</td></tr></table><ul><li>one</li><li>two</li></ul></body></html>
"""
    )
    c = extract_content(raw)
    assert (
        c.text
        == "Heading\n\nFirst paragraph with a link.\n\nSecond\nline\n\na b\n\none\ntwo"
    )
    (html,) = c.html
    assert "javascript" not in html and "onclick" not in html and "evil" not in html
    assert "<h1>Heading</h1>" in html
    assert "<td>a</td>" in html


def test_related_html_keeps_cid_image() -> None:
    c = extract_content(RELATED)
    assert c.text == "Look at the logo."
    (html,) = c.html
    assert '<img src="cid:logo@example.com">' in html


def test_attachments_are_not_body_text() -> None:
    c = extract_content(MIXED)
    assert c.text == "See the attached files."
    assert c.html == ("<p>See the attached files.</p>",)


def test_forwarded_message_body_is_not_inlined() -> None:
    c = extract_content(FORWARD)
    assert c.text == "Forwarding this."


def test_footer_part_after_alternative() -> None:
    raw = crlf(
        """\
Content-Type: multipart/mixed; boundary=m

--m
Content-Type: multipart/alternative; boundary=a

--a
Content-Type: text/plain

Main text
--a
Content-Type: text/html

<p>Main <i>text</i></p>
--a--
--m
Content-Type: text/plain

-- 
List footer
--m--
"""
    )
    c = extract_content(raw)
    assert c.text == "Main text\n-- \nList footer"
    assert c.html == ("<p>Main <i>text</i></p>", "<p>-- <br>\nList footer</p>")


def test_charsets() -> None:
    latin = b"Content-Type: text/plain; charset=ISO-8859-1\r\n\r\nCaf\xe9 cr\xe8me \x93quoted\x94\r\n"
    assert extract_content(latin).text == "Café crème \u201cquoted\u201d"

    unknown = "Content-Type: text/plain; charset=x-made-up\r\n\r\nnaïve\r\n".encode()
    assert extract_content(unknown).text == "naïve"

    unknown_latin = b"Content-Type: text/plain; charset=x-made-up\r\n\r\nna\xefve\r\n"
    assert extract_content(unknown_latin).text == "naïve"

    undeclared = "\r\nüber\r\n".encode()
    assert extract_content(undeclared).text == "über"

    bad_utf8 = b"Content-Type: text/plain; charset=utf-8\r\n\r\nok \xff end\r\n"
    assert extract_content(bad_utf8).text == "ok \ufffd end"

    meta = (
        '<html><head><meta charset="koi8-r"></head><body>Привет</body></html>'.encode(
            "koi8-r"
        )
    )
    raw = b"Content-Type: text/html\r\n\r\n" + meta
    assert extract_content(raw).text == "Привет"

    sjis = b"Content-Type: text/plain; charset=Shift_JIS\r\n\r\n" + "こんにちは".encode(
        "shift_jis"
    )
    assert extract_content(sjis).text == "こんにちは"

    not_a_text_codec = b"Content-Type: text/plain; charset=rot13\r\n\r\nhello\r\n"
    assert extract_content(not_a_text_codec).text == "hello"


def test_transfer_encodings() -> None:
    qp = b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: Quoted-Printable\r\n\r\nGr=C3=BC=C3=9Fe, a long=\r\n line=3D=ZZ\r\n"
    assert extract_content(qp).text == "Grüße, a long line==ZZ"

    b64 = (
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes("Grüße\n".encode())
        + b"!!garbage"
    )
    assert extract_content(b64).text.startswith("Grüße\n")

    bad_pad = b"Content-Transfer-Encoding: base64\r\n\r\nSGVsbG8\r\n"
    assert extract_content(bad_pad).text == "Hello"


def test_format_flowed() -> None:
    raw = crlf(
        """\
Content-Type: text/plain; charset=utf-8; format=flowed; delsp=yes

This is a long line that was wrapped by the sen 
der and should be joined.
> quoted text that was 
> wrapped too
 >not a quote (space-stuffed)
-- 
Sig
"""
    )
    c = extract_content(raw)
    assert c.text == (
        "This is a long line that was wrapped by the sender and should be joined.\n"
        "> quoted text that waswrapped too\n"
        ">not a quote (space-stuffed)\n"
        "-- \n"
        "Sig"
    )


def test_format_flowed_without_delsp_keeps_space() -> None:
    raw = b"Content-Type: text/plain; format=flowed\r\n\r\nhello \r\nworld\r\n"
    assert extract_content(raw).text == "hello world"


def test_empty_and_headers_only() -> None:
    assert extract_content(b"") == MessageContent(text="", html=())
    assert extract_content(b"Subject: x\r\n") == MessageContent(text="", html=())
    assert extract_content(b"Content-Type: image/png\r\n\r\nPNG") == MessageContent(
        text="", html=()
    )


def test_html_that_sanitises_to_nothing_is_dropped() -> None:
    raw = b"Content-Type: text/html\r\n\r\n<script>alert(1)</script>"
    assert extract_content(raw) == MessageContent(text="", html=())


# --------------------------------------------------------------------------
# attachments


def test_get_attachment_returns_decoded_bytes() -> None:
    summary = summarise(MIXED)
    pdf = get_attachment(MIXED, "ATT00001")
    assert pdf is not None
    info, data = pdf
    assert data == base64.b64decode("JVBERi0xLjQKJcfsj6IKJSVFT0YK")
    assert info == summary.attachments[0]

    txt = get_attachment(MIXED, "ATT00002")
    assert txt is not None
    assert txt[1] == b"Caf\xe9 au lait"
    assert txt[0].filename == "résumé.txt"

    png = get_attachment(MIXED, "ATT00003")
    assert png is not None
    assert png[1] == b"\x89PNG\r\n\x1a\n"
    for att in summary.attachments:
        result = get_attachment(MIXED, att.id)
        assert result is not None and result[0] == att and len(result[1]) == att.size


def test_get_attachment_unknown_ids() -> None:
    assert get_attachment(MIXED, "ATT00004") is None
    assert get_attachment(MIXED, "ATT00000") is None
    assert get_attachment(MIXED, "att00001") is None
    assert get_attachment(MIXED, "") is None
    assert get_attachment(PLAIN, "ATT00001") is None
    assert get_attachment(b"", "ATT00001") is None
    assert get_attachment(MIXED, None) is None  # type: ignore[arg-type]


def test_get_attachment_inline_and_nested() -> None:
    gif = get_attachment(RELATED, "ATT00001")
    assert gif is not None
    assert gif[0].content_id == "logo@example.com"
    assert gif[1].startswith(b"GIF89a")
    inner = get_attachment(FORWARD, "ATT00001")
    assert inner is not None and inner[1] == INNER
    # the forwarded message is itself a message we can look into
    assert summarise(inner[1]).attachments[0].filename == "inner.zip"


# --------------------------------------------------------------------------
# html to text


def test_html_to_text_edge_cases() -> None:
    from postern.mime import html_to_text

    cases = {
        "<p>a</p><pre>  def f():\n      return 1</pre><p>after   text</p>": "a\n\n  def f():\n      return 1\n\nafter text",
        "<pre>\tindented\n\tlines</pre>": "\tindented\n\tlines",
        "x&#1;y&#2;z": "xyz",
        "a <script>never closed <p>hidden": "a",
        "a<svg/>b<svg><text>hidden</text></svg>c": "abc",
        "&lt;b&gt;not a tag&lt;/b&gt;": "<b>not a tag</b>",
        "a < b and c > d": "a < b and c > d",
        "x<!-- hidden -->y<!-- unclosed": "xy",
        "<TITLE>T</TITLE><STYLE>x{}</style >body": "body",
        "<ul><li>one<li>two</ul>": "one\ntwo",
        "a&nbsp;&nbsp;b\u200bc": "a bc",
        "<title>unclosed title<p>text": "unclosed title\ntext",
    }
    for markup, expected in cases.items():
        assert html_to_text(markup) == expected, markup


def test_hostile_html_is_handled_in_linear_time() -> None:
    import time

    for body in (
        b"<title>" * 50_000,
        b"<div>" * 50_000,
        b"<" * 300_000,
        b"<b>" * 100_000,
    ):
        raw = b"Content-Type: text/html\r\n\r\n" + body
        start = time.perf_counter()
        summarise(raw)
        extract_content(raw)
        assert time.perf_counter() - start < 10


# --------------------------------------------------------------------------
# shapes produced by real mail clients


def test_apple_mail_text_image_text() -> None:
    raw = crlf(
        """\
Content-Type: multipart/mixed; boundary="Apple-Mail=_1"

--Apple-Mail=_1
Content-Transfer-Encoding: 7bit
Content-Type: text/plain; charset=us-ascii

Before the picture.
--Apple-Mail=_1
Content-Disposition: inline; filename=IMG_0001.jpeg
Content-Type: image/jpeg; name="IMG_0001.jpeg"
Content-Transfer-Encoding: base64

/9j/4AAQ
--Apple-Mail=_1
Content-Transfer-Encoding: 7bit
Content-Type: text/plain; charset=us-ascii

After the picture.
--Apple-Mail=_1--
"""
    )
    s = summarise(raw)
    assert [(a.filename, a.disposition, a.part, a.size) for a in s.attachments] == [
        ("IMG_0001.jpeg", "inline", "2", 6)
    ]
    c = extract_content(raw)
    assert c.text == "Before the picture.\nAfter the picture."
    assert c.html == ("<p>Before the picture.</p>", "<p>After the picture.</p>")


def test_outlook_related_around_alternative_and_signed_and_report() -> None:
    raw = crlf(
        """\
Content-Type: multipart/signed; protocol="application/pgp-signature"; boundary=s

--s
Content-Type: multipart/related; boundary=r

--r
Content-Type: multipart/alternative; boundary=a

--a
Content-Type: text/plain; charset="utf-8"

Signed text
--a
Content-Type: text/html; charset="utf-8"

<p>Signed <img src="cid:logo"></p>
--a--
--r
Content-Type: image/png; name=logo.png
Content-ID: <logo>
Content-Disposition: inline; filename=logo.png

PNG
--r--
--s
Content-Type: application/pgp-signature; name=signature.asc

-----BEGIN PGP SIGNATURE-----
--s--
"""
    )
    s = summarise(raw)
    assert [
        (a.content_type, a.part, a.disposition, a.content_id) for a in s.attachments
    ] == [
        ("image/png", "1.2", "inline", "logo"),
        ("application/pgp-signature", "2", "attachment", None),
    ]
    c = extract_content(raw)
    assert c.text == "Signed text"
    assert c.html == ('<p>Signed <img src="cid:logo"></p>',)

    report = crlf(
        """\
Content-Type: multipart/report; report-type=delivery-status; boundary=r

--r
Content-Type: text/plain

Delivery failed.
--r
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.com
--r
Content-Type: text/rfc822-headers

Subject: original
--r--
"""
    )
    s = summarise(report)
    assert [a.content_type for a in s.attachments] == [
        "message/delivery-status",
        "text/rfc822-headers",
    ]
    assert extract_content(report).text == "Delivery failed."


def test_empty_plain_alternative_falls_back_to_html() -> None:
    raw = crlf(
        """\
Content-Type: multipart/alternative; boundary=a

--a
Content-Type: text/plain

  
--a
Content-Type: text/html

<p>The real content</p>
--a--
"""
    )
    assert summarise(raw).intro == "The real content"
    c = extract_content(raw)
    assert c.text == "The real content"
    assert c.html == ("<p>The real content</p>",)


def test_extract_text_is_the_text_of_extract_content() -> None:
    from postern.mime import extract_content, extract_text

    samples = [
        b"Subject: plain\r\n\r\nJust text\r\n",
        b"Content-Type: text/html\r\n\r\n<p>Hello <b>there</b></p>",
        b'Content-Type: multipart/alternative; boundary="a"\r\n\r\n--a\r\nContent-Type: text/plain\r\n\r\n\r\n--a\r\nContent-Type: text/html\r\n\r\n<p>html only</p>\r\n--a--\r\n',
        b'Content-Type: multipart/mixed; boundary="m"\r\n\r\n--m\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nJ=FCrgen\r\n--m\r\nContent-Type: application/pdf\r\n\r\nx\r\n--m--\r\n',
        b"",
        b"\xff\xfe garbage",
    ]
    for raw in samples:
        assert extract_text(raw) == extract_content(raw).text, raw
