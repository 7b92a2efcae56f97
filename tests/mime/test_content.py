from __future__ import annotations

import base64

from postern.mime import MessageContent, extract_content, get_attachment, summarise
from tests.mime.test_summary import ALTERNATIVE, FORWARD, INNER, MIXED, PLAIN, RELATED, crlf


def test_plain_only_message_renders_escaped_html() -> None:
    c = extract_content(PLAIN)
    assert isinstance(c, MessageContent)
    assert c.text == "Hi Bob,\n\nare you free for lunch tomorrow?\n\nAlice"
    assert c.html == ("<p>Hi Bob,</p>\n<p>are you free for lunch tomorrow?</p>\n<p>Alice</p>",)


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
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; see https://example.com/?a=1&amp;b=2<br>\nsecond line" in html
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
    assert c.text == "Heading\n\nFirst paragraph with a link.\n\nSecond\nline\n\na b\n\none\ntwo"
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

    meta = '<html><head><meta charset="koi8-r"></head><body>Привет</body></html>'.encode("koi8-r")
    raw = b"Content-Type: text/html\r\n\r\n" + meta
    assert extract_content(raw).text == "Привет"

    sjis = "Content-Type: text/plain; charset=Shift_JIS\r\n\r\n".encode() + "こんにちは".encode("shift_jis")
    assert extract_content(sjis).text == "こんにちは"

    not_a_text_codec = b"Content-Type: text/plain; charset=rot13\r\n\r\nhello\r\n"
    assert extract_content(not_a_text_codec).text == "hello"


def test_transfer_encodings() -> None:
    qp = b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: Quoted-Printable\r\n\r\nGr=C3=BC=C3=9Fe, a long=\r\n line=3D=ZZ\r\n"
    assert extract_content(qp).text == "Grüße, a long line==ZZ"

    b64 = b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes("Grüße\n".encode()) + b"!!garbage"
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
    assert extract_content(b"Content-Type: image/png\r\n\r\nPNG") == MessageContent(text="", html=())


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
