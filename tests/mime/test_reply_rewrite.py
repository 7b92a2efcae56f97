"""The rewrite of a mailbox's reply through a reverse alias (pure): From becomes the
alias, reverse aliases become their contacts, the mailbox appears nowhere."""

from __future__ import annotations

import base64
import email
from email import policy

import pytest

from postern.mime.reply_rewrite import ReplyIdentity, addresses_in, mentions, rewrite_reply

MAILBOX = "Alice.Smith@Mailbox.example"
ALIAS = "shopping@alias.test"
REVERSE = "ra+abcdefghijklmnopqrstuvwxyz@sl.test"
CONTACT = "john@wick.example"

IDENTITY = ReplyIdentity(
    alias=ALIAS,
    alias_name="Shopping",
    hidden=("alice.smith@mailbox.example",),
    contacts={REVERSE: (CONTACT, "John Wick")},
)


def message(*headers: str, body: str = "Hello\r\n") -> bytes:
    return ("\r\n".join(headers) + "\r\n\r\n" + body).encode("utf-8")


def head_of(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=policy.default)  # type: ignore[return-value]


def assert_hidden(raw: bytes) -> None:
    lowered = raw.lower()
    for form in (b"alice.smith@mailbox.example", b"alice.smith%40mailbox.example", b"alice.smith&#64;mailbox.example"):
        assert form not in lowered, raw.decode("utf-8", "replace")
    assert REVERSE.encode() not in lowered


BASIC = message(
    "Received: from laptop.home (home.isp.example [198.51.100.7]) by smtp.mailbox.example",
    "Received: from [10.0.0.2] by laptop.home",
    "X-Originating-IP: [198.51.100.7]",
    "Return-Path: <alice.smith@mailbox.example>",
    "DKIM-Signature: v=1; a=rsa-sha256; d=mailbox.example; s=sel;\r\n\tb=AAAA; bh=BBBB",
    "ARC-Seal: i=1; a=rsa-sha256; d=mailbox.example; b=CCC",
    "Authentication-Results: mx.mailbox.example; spf=pass",
    "From: Alice Smith <Alice.Smith@Mailbox.example>",
    "Sender: alice.smith@mailbox.example",
    'To: "John Wick | john at wick.example" <ra+abcdefghijklmnopqrstuvwxyz@sl.test>',
    "Cc: Bob <bob@elsewhere.example>, ALICE.SMITH@MAILBOX.EXAMPLE",
    "Reply-To: alice.smith@mailbox.example",
    "Subject: Re: your order",
    "Date: Wed, 02 Nov 2011 19:19:08 +0000",
    "Message-ID: <CAF123@mail.mailbox.example>",
    "In-Reply-To: <order-1@wick.example>",
    "References: <order-0@wick.example>\r\n <order-1@wick.example>",
    "X-Mailer: Thunderbird",
    "MIME-Version: 1.0",
    "Content-Type: text/plain; charset=utf-8",
    body="Thanks!\r\n\r\nOn Tue, John Wick <ra+abcdefghijklmnopqrstuvwxyz@sl.test> wrote:\r\n> Hi alice.smith@MAILBOX.example\r\n",
)


def test_from_to_cc_and_trace_fields() -> None:
    out = rewrite_reply(BASIC, IDENTITY)
    parsed = head_of(out)
    assert parsed["From"] == "Shopping <shopping@alias.test>"
    assert parsed["To"] == "John Wick <john@wick.example>"
    assert [a.addr_spec for a in parsed["Cc"].addresses] == ["bob@elsewhere.example", ALIAS]
    assert parsed["Reply-To"].addresses[0].addr_spec == ALIAS
    for name in ("Received", "X-Originating-IP", "Return-Path", "DKIM-Signature", "ARC-Seal", "Authentication-Results", "Sender"):
        assert parsed[name] is None, name
    assert b"198.51.100.7" not in out and b"laptop.home" not in out
    # Kept: the subject, the date, threading, the client's name, the content type.
    assert parsed["Subject"] == "Re: your order"
    assert parsed["In-Reply-To"] == "<order-1@wick.example>"
    assert "<order-0@wick.example>" in parsed["References"] and "<order-1@wick.example>" in parsed["References"]
    assert parsed["X-Mailer"] == "Thunderbird"
    assert parsed.get_content_type() == "text/plain"
    # The message id at the mailbox's domain moves to the alias's, the same each time.
    assert parsed["Message-ID"].endswith("@alias.test>")
    assert head_of(rewrite_reply(BASIC, IDENTITY))["Message-ID"] == parsed["Message-ID"]
    body = parsed.get_content()
    assert "On Tue, John Wick <john@wick.example> wrote:" in body
    assert "> Hi shopping@alias.test" in body
    assert_hidden(out)


def test_header_fields_are_in_place_and_line_breaks_kept() -> None:
    out = rewrite_reply(BASIC, IDENTITY)
    assert b"\n" not in out.replace(b"\r\n", b"")
    head, _, body = out.partition(b"\r\n\r\n")
    names = [line.split(b":")[0] for line in head.split(b"\r\n") if line[:1] not in (b" ", b"\t")]
    assert names.index(b"From") < names.index(b"To") < names.index(b"Subject")
    assert body.startswith(b"Thanks!\r\n")


def test_message_id_elsewhere_is_kept_and_a_missing_one_added() -> None:
    raw = message("From: alice.smith@mailbox.example", "To: " + REVERSE, "Message-ID: <abc@client.example>")
    assert head_of(rewrite_reply(raw, IDENTITY))["Message-ID"] == "<abc@client.example>"
    raw = message("From: alice.smith@mailbox.example", "To: " + REVERSE)
    assert head_of(rewrite_reply(raw, IDENTITY))["Message-ID"].endswith("@alias.test>")


def test_alias_without_name_and_missing_from() -> None:
    identity = ReplyIdentity(alias=ALIAS, hidden=IDENTITY.hidden, contacts=IDENTITY.contacts)
    out = rewrite_reply(message("To: " + REVERSE, "Subject: x"), identity)
    assert head_of(out)["From"] == ALIAS
    assert head_of(out)["To"] == "John Wick <john@wick.example>"
    out = rewrite_reply(message("From: a <alice.smith@mailbox.example>", "From: b <x@y.example>", "To: x@y.example"), identity)
    assert head_of(out).get_all("From") == [ALIAS]
    assert head_of(out)["To"] == "x@y.example"


def test_non_ascii_names() -> None:
    identity = ReplyIdentity(alias=ALIAS, alias_name="Café Ünïcode", hidden=IDENTITY.hidden, contacts={REVERSE: (CONTACT, "Jöhn")})
    out = rewrite_reply(message("From: alice.smith@mailbox.example", "To: " + REVERSE), identity)
    assert out.isascii()
    parsed = head_of(out)
    assert parsed["From"].addresses[0].display_name == "Café Ünïcode"
    assert parsed["To"].addresses[0].display_name == "Jöhn"


def test_encoded_words_in_headers() -> None:
    word = "=?utf-8?q?R=C3=A9ponse_de_alice=2Esmith=40mailbox=2Eexample?="
    out = rewrite_reply(message("From: alice.smith@mailbox.example", f"Subject: {word}", "To: x@y.example"), IDENTITY)
    assert head_of(out)["Subject"] == "Réponse de shopping@alias.test"
    assert_hidden(out)


def test_quoted_printable_body_with_a_soft_break_in_the_address() -> None:
    body = "Bonjour,\r\n\r\nLe mardi, alice.smi=\r\nth@mailbox.example a =C3=A9crit :\r\n> merci\r\n"
    raw = message(
        "From: alice.smith@mailbox.example",
        "To: " + REVERSE,
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
        body=body,
    )
    out = rewrite_reply(raw, IDENTITY)
    assert_hidden(out)
    text = head_of(out).get_content()
    assert "Le mardi, shopping@alias.test a écrit :" in text
    assert "> merci" in text
    # Untouched when there is nothing to hide.
    raw = message("From: alice.smith@mailbox.example", "Content-Transfer-Encoding: quoted-printable", body="caf=C3=A9 =\r\nok\r\n")
    assert rewrite_reply(raw, IDENTITY).endswith(b"\r\n\r\ncaf=C3=A9 =\r\nok\r\n")


def test_multipart_with_base64_html_and_an_attachment() -> None:
    html = '<p>Reply</p><blockquote>From <a href="mailto:Alice.Smith@mailbox.example">me</a> alice.smith&#64;mailbox.example</blockquote>'
    html_b64 = base64.encodebytes(html.encode()).decode().replace("\n", "\r\n")
    attachment = base64.encodebytes(b"%PDF-1.4 alice.smith@mailbox.example binary \x00\x01").decode().replace("\n", "\r\n")
    raw = message(
        "From: alice.smith@mailbox.example",
        "To: " + REVERSE,
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="outer"',
        body=(
            "preamble\r\n--outer\r\n"
            'Content-Type: multipart/alternative; boundary="inner"\r\n\r\n'
            "--inner\r\nContent-Type: text/plain\r\n\r\nsee alice.smith%40mailbox.example\r\n"
            "--inner\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n" + html_b64 + "--inner--\r\n"
            "--outer\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n" + attachment + "--outer--\r\nepilogue\r\n"
        ),
    )
    out = rewrite_reply(raw, IDENTITY)
    parsed = head_of(out)
    parts = list(parsed.walk())
    kinds = [p.get_content_type() for p in parts]
    assert kinds == ["multipart/mixed", "multipart/alternative", "text/plain", "text/html", "application/pdf"]
    assert parts[2].get_content().strip() == "see shopping%40alias.test"
    assert parts[3].get_content() == html.replace("Alice.Smith@mailbox.example", ALIAS).replace("alice.smith&#64;mailbox.example", "shopping&#64;alias.test")
    # A binary attachment is not ours to change.
    assert parts[4].get_content() == b"%PDF-1.4 alice.smith@mailbox.example binary \x00\x01"
    assert out.endswith(b"--outer--\r\nepilogue\r\n")
    assert b"preamble\r\n--outer\r\n" in out
    head = out.split(b"\r\n\r\n", 1)[0].lower()
    assert b"mailbox.example" not in head


def test_forwarded_message_inside() -> None:
    inner = "From: Alice <alice.smith@mailbox.example>\r\nSubject: old\r\n\r\nold text by alice.smith@mailbox.example\r\n"
    raw = message(
        "From: alice.smith@mailbox.example",
        "To: " + REVERSE,
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="b"',
        body=f"--b\r\nContent-Type: text/plain\r\n\r\nsee below\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n{inner}--b--\r\n",
    )
    out = rewrite_reply(raw, IDENTITY)
    assert_hidden(out)
    assert b"old text by shopping@alias.test" in out


def test_untouched_body_bytes() -> None:
    body = "Line one\r\n\r\n\tindented =3D not qp\r\n" + "x" * 2000 + "\r\n"
    raw = message("From: alice.smith@mailbox.example", "To: " + REVERSE, body=body)
    assert rewrite_reply(raw, IDENTITY).endswith(b"\r\n\r\n" + body.encode())


def test_bare_lf_messages() -> None:
    raw = BASIC.replace(b"\r\n", b"\n")
    out = rewrite_reply(raw, IDENTITY)
    assert b"\r\n" not in out
    assert_hidden(out)
    assert head_of(out)["From"] == "Shopping <shopping@alias.test>"


@pytest.mark.parametrize(
    "raw",
    [b"", b"\r\n", b"no header at all", b"\r\n\r\nbody only alice.smith@mailbox.example", b"From: \xff\xfe\r\n\r\n\xff", b"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n"],
)
def test_hostile_input_never_raises(raw: bytes) -> None:
    out = rewrite_reply(raw, IDENTITY)
    assert b"alice.smith@mailbox.example" not in out.lower()


def test_broken_encodings_are_left_alone() -> None:
    raw = message(
        "From: alice.smith@mailbox.example",
        "Content-Type: text/plain",
        "Content-Transfer-Encoding: base64",
        body="!!!not base64 at all!!!\r\n",
    )
    assert rewrite_reply(raw, IDENTITY).endswith(b"!!!not base64 at all!!!\r\n")


def test_addresses_in_and_mentions() -> None:
    assert addresses_in(BASIC) == [REVERSE, "bob@elsewhere.example", "ALICE.SMITH@MAILBOX.EXAMPLE"]
    assert addresses_in(BASIC, ("from",)) == ["Alice.Smith@Mailbox.example"]
    assert addresses_in(b"garbage") == []
    assert mentions(BASIC, "alice.smith@mailbox.example")
    assert not mentions(rewrite_reply(BASIC, IDENTITY), "alice.smith@mailbox.example")
