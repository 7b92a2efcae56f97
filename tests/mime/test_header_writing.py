"""Every path that writes a header field from a user's value (issue 14, item 2), under
hypothesis: whatever the value (line breaks, NUL, control characters, encoded-word
look-alikes, any Unicode), the header section has no line break but the folding ones
(CRLF followed by white space), exactly one From, and decoding the field gives back the
value (its control characters as spaces, its white space runs as one)."""

from __future__ import annotations

import email
import email.policy
import re
from email.header import decode_header, make_header
from email.policy import compat32
from email.utils import getaddresses

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from postern.delivery.system_mail import compose
from postern.mime import header_writing, rewrite
from postern.mime.reply_rewrite import ReplyIdentity, rewrite_reply

# Text with a strong bias towards the characters that break headers.
_NASTY = st.sampled_from(
    [
        "\r",
        "\n",
        "\r\n",
        "\x00",
        "\x0b",
        "\x0c",
        "\x1b",
        "\x7f",
        "\x85",
        "\u2028",
        "\u2029",
        '"',
        "\\",
        "<",
        ">",
        ",",
        ";",
        ":",
        "=?",
        "?=",
        " ",
        "\t",
        "é",
        "☕",
        "𝒳",
    ]
)
NAMES = st.lists(st.one_of(st.text(max_size=8), _NASTY), max_size=30).map("".join)
ORIGINAL = b"From: Me <me@example.com>\r\nTo: ra+x@alias.test\r\nSubject: hi\r\nMessage-ID: <1@example.com>\r\n\r\nbody\r\n"


def head_lines(raw: bytes) -> list[bytes]:
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\x00" not in head
    assert not re.search(rb"\r(?!\n)|(?<!\r)\n", head), head  # only CRLF line breaks
    lines = head.split(b"\r\n")
    for line in lines:
        assert len(line) <= 998
        assert line[:1] in (b" ", b"\t") or re.match(rb"^[!-9;-~]+:", line), line
    return lines


def decoded(raw: bytes, name: str) -> tuple[str, str]:
    """(display name, address) of the one mailbox of field ``name``, decoded as RFC
    2047 says: white space between adjacent encoded words is not text. (The stdlib's
    ``policy.default`` puts a space there in a phrase, so it is not used for names.)"""
    message = email.message_from_bytes(raw, policy=compat32)
    [(display, address)] = getaddresses([str(message[name])])
    return str(make_header(decode_header(display))), address


def one_from(raw: bytes) -> tuple[str, str]:
    lines = head_lines(raw)
    assert sum(1 for line in lines if line.lower().startswith(b"from:")) == 1, lines
    # The program's own reader (IMAP ENVELOPE, the APIs) finds the same single From.
    assert len(rewrite.values(rewrite.split(raw), "from")) == 1
    return decoded(raw, "From")


def shown(value: str) -> str:
    return header_writing.clean(value)


@settings(max_examples=300, deadline=None)
@given(NAMES)
def test_mailbox_and_field(name: str) -> None:
    raw = (
        header_writing.field("From", header_writing.mailbox(name, "shop@alias.test"))
        + b"\r\nbody"
    )
    assert one_from(raw) == (shown(name), "shop@alias.test")


@settings(max_examples=200, deadline=None)
@given(NAMES)
def test_unstructured(subject: str) -> None:
    raw = (
        header_writing.field("Subject", header_writing.unstructured(subject))
        + b"From: a@b.example\r\n\r\nbody"
    )
    head_lines(raw)
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert str(message["Subject"]) == shown(subject)


@settings(max_examples=200, deadline=None)
@given(NAMES, st.sampled_from(rewrite.SENDER_FORMATS))
def test_forward_sender_formats(name: str, sender_format: str) -> None:
    """aliases/forwarding: the From of a forward, in every sender format, from the
    contact's name."""
    value = rewrite.sender_value(
        sender_format, name, "john@wick.test", "ra+abc@alias.test"
    )
    raw = rewrite.rewrite(ORIGINAL, replace={"from": value, "reply-to": value})
    label = rewrite.sender_label(
        sender_format, shown(name)[: rewrite.MAX_NAME], "john@wick.test"
    )
    assert one_from(raw) == (shown(label or ""), "ra+abc@alias.test")


@settings(max_examples=200, deadline=None)
@given(NAMES, NAMES)
def test_reply_through_a_reverse_alias(alias_name: str, contact_name: str) -> None:
    """aliases/replies: a mailbox's reply leaves from the alias, with its name, to the
    contact, with theirs."""
    assume(
        "=?" not in alias_name and "=?" not in contact_name
    )  # decoded first, by design
    identity = ReplyIdentity(
        alias="shop@alias.test",
        alias_name=alias_name,
        hidden=["me@example.com"],
        contacts={"ra+x@alias.test": ("john@wick.test", contact_name)},
    )
    raw = rewrite_reply(ORIGINAL, identity)
    assert one_from(raw) == (shown(alias_name), "shop@alias.test")
    assert decoded(raw, "To") == (shown(contact_name), "john@wick.test")


@settings(max_examples=100, deadline=None)
@given(NAMES)
def test_system_mail(subject: str) -> None:
    raw = compose(
        sender="postern <no-reply@example.com>",
        to="ann@example.org",
        subject=subject,
        text="hello",
        message_id_domain="example.com",
    )
    one_from(raw)
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert str(message["Subject"]) == shown(subject)
    assert message["To"].addresses[0].addr_spec == "ann@example.org"


def test_long_values_are_folded_and_round_trip() -> None:
    name = "word " * 400 + "☕" * 300
    line = header_writing.field("From", header_writing.mailbox(name, "a@b.example"))
    assert all(len(part) <= 998 for part in line.split(b"\r\n"))
    assert one_from(line + b"\r\nbody") == (shown(name), "a@b.example")


def test_field_names_are_checked() -> None:
    for bad in ("From\r\nBcc", "", "Sub ject", "X:Y"):
        try:
            header_writing.field(bad, "x")
        except header_writing.HeaderValueError:
            continue
        raise AssertionError(bad)
