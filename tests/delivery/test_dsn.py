from __future__ import annotations

import base64
import email
import email.policy
import re
from datetime import UTC, datetime, timedelta
from email.message import Message
from email.utils import parsedate_to_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postern.delivery.dsn import FailedRecipient, build_dsn, is_bounce_worthy

ARRIVAL = datetime(2025, 7, 1, 10, 0, 0, tzinfo=UTC)
LAST = datetime(2025, 7, 1, 10, 5, 0, tzinfo=UTC)
NOW = datetime(2025, 7, 1, 10, 5, 1, tzinfo=UTC)

HEADERS = (
    b"Return-Path: <alice@example.com>\r\n"
    b"From: Alice <alice@example.com>\r\n"
    b"To: Bob <bob@example.net>, Carol <carol@example.org>\r\n"
    b"Subject: Lunch tomorrow?\r\n"
    b"Date: Tue, 1 Jul 2025 10:00:00 +0000\r\n"
    b"Message-ID: <lunch.1@example.com>\r\n"
)
ORIGINAL = HEADERS + b"\r\nThe secret body.\r\n"


def failed(address: str = "bob@example.net", **kw: object) -> FailedRecipient:
    values: dict[str, object] = {
        "address": address,
        "status": "5.1.1",
        "action": "failed",
        "diagnostic": "550 5.1.1 <bob@example.net>: user unknown",
        "remote_mta": "mx.example.net",
        "last_attempt": LAST,
    }
    values.update(kw)
    return FailedRecipient(**values)  # type: ignore[arg-type]


def build(**kw: object) -> bytes:
    values: dict[str, object] = {
        "original": ORIGINAL,
        "envelope_from": "alice@example.com",
        "recipients": [failed()],
        "reporting_mta": "mail.example.com",
        "arrival_date": ARRIVAL,
        "now": NOW,
        "message_id_domain": "example.com",
    }
    values.update(kw)
    return build_dsn(**values)  # type: ignore[arg-type]


def parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.default)


def text_of(msg: Message) -> str:
    """The explanation part's words, unwrapped."""
    return " ".join(msg.get_payload()[0].get_content().split())


def status_blocks(msg: Message) -> list[Message]:
    report = msg.get_payload()[1]
    assert report.get_content_type() == "message/delivery-status"
    return report.get_payload()


def assert_well_formed(raw: bytes) -> None:
    assert b"\r\n" in raw
    assert re.search(rb"(?<!\r)\n", raw) is None, "bare LF"
    assert re.search(rb"\r(?!\n)", raw) is None, "bare CR"
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert b"\x00" not in raw


def test_structure_and_top_level_headers() -> None:
    raw = build()
    assert_well_formed(raw)
    msg = parse(raw)
    assert msg["From"] == "Mail Delivery System <MAILER-DAEMON@mail.example.com>"
    assert msg["To"] == "alice@example.com"
    assert b"\r\nTo: <alice@example.com>\r\n" in raw
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["MIME-Version"] == "1.0"
    assert parsedate_to_datetime(msg["Date"]) == NOW
    assert re.fullmatch(r"<dsn\.[0-9a-f]{32}@example\.com>", msg["Message-ID"])
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    parts = msg.get_payload()
    assert [p.get_content_type() for p in parts] == ["text/plain", "message/delivery-status", "text/rfc822-headers"]
    assert not msg.defects and all(not p.defects for p in parts)


def test_message_ids_are_unique() -> None:
    assert parse(build())["Message-ID"] != parse(build())["Message-ID"]


def test_delivery_status_fields() -> None:
    recipients = [
        failed(),
        failed("carol@example.org", status="5.2.2", diagnostic="552 5.2.2 mailbox full", remote_mta="mx2.example.org."),
    ]
    blocks = status_blocks(parse(build(recipients=recipients, envelope_id="QQ314159")))
    assert len(blocks) == 3
    per_message = blocks[0]
    assert per_message["Original-Envelope-Id"] == "QQ314159"
    assert per_message["Reporting-MTA"] == "dns; mail.example.com"
    assert parsedate_to_datetime(per_message["Arrival-Date"]) == ARRIVAL
    bob, carol = blocks[1], blocks[2]
    assert bob["Final-Recipient"] == "rfc822; bob@example.net"
    assert bob["Action"] == "failed"
    assert bob["Status"] == "5.1.1"
    assert bob["Remote-MTA"] == "dns; mx.example.net"
    assert bob["Diagnostic-Code"] == "smtp; 550 5.1.1 <bob@example.net>: user unknown"
    assert parsedate_to_datetime(bob["Last-Attempt-Date"]) == LAST
    assert carol["Final-Recipient"] == "rfc822; carol@example.org"
    assert carol["Status"] == "5.2.2"
    assert carol["Remote-MTA"] == "dns; mx2.example.org"


def test_field_order_follows_rfc_3464() -> None:
    raw = build(envelope_id="E1")
    report = raw.split(b"Content-Type: message/delivery-status")[1]
    order = [b"Original-Envelope-Id:", b"Reporting-MTA:", b"Arrival-Date:", b"Final-Recipient:", b"Action:",
             b"Status:", b"Remote-MTA:", b"Diagnostic-Code:", b"Last-Attempt-Date:"]
    positions = [report.index(name) for name in order]
    assert positions == sorted(positions)


def test_without_remote_mta_or_diagnostic() -> None:
    recipient = failed(remote_mta=None, diagnostic="", status="5.4.7")
    blocks = status_blocks(parse(build(recipients=[recipient])))
    assert blocks[1]["Remote-MTA"] is None and blocks[1]["Diagnostic-Code"] is None
    assert blocks[1]["Status"] == "5.4.7"


def test_human_readable_part() -> None:
    recipients = [failed(), failed("carol@example.org", status="5.2.2", diagnostic="552 5.2.2 mailbox full")]
    text = text_of(parse(build(recipients=recipients)))
    assert "mail.example.com" in text
    assert "<bob@example.net>" in text and "<carol@example.org>" in text
    assert "does not exist" in text
    assert "mailbox is full" in text
    assert "550 5.1.1 <bob@example.net>: user unknown" in text
    assert "(mx.example.net) said" in text
    assert "headers of your message are attached" in text


def test_original_headers_are_attached_but_not_the_body() -> None:
    raw = build()
    part = parse(raw).get_payload()[2]
    assert part.get_payload(decode=True) == HEADERS
    assert b"secret body" not in raw


def test_full_message_attached_on_request() -> None:
    raw = build(include_full_message=True)
    assert_well_formed(raw)
    msg = parse(raw)
    part = msg.get_payload()[2]
    assert part.get_content_type() == "message/rfc822"
    inner = part.get_payload()[0]
    assert inner["Subject"] == "Lunch tomorrow?"
    assert "The secret body." in inner.get_content()
    assert "Your message is attached" in text_of(msg)


def test_delayed_only() -> None:
    recipient = failed(action="delayed", status="4.4.1", diagnostic="421 4.4.1 try later")
    msg = parse(build(recipients=[recipient]))
    assert msg["Subject"] == "Delayed Mail (still being retried)"
    assert status_blocks(msg)[1]["Action"] == "delayed"
    text = text_of(msg)
    assert "keep trying" in text and "do not need to send it again" in text


def test_mixed_failed_and_delayed_is_undelivered() -> None:
    recipients = [failed(), failed("carol@example.org", action="delayed", status="4.2.0", diagnostic="450 busy")]
    msg = parse(build(recipients=recipients))
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert [b["Action"] for b in status_blocks(msg)[1:]] == ["failed", "delayed"]


def test_invalid_status_falls_back_to_the_class_of_the_action() -> None:
    recipients = [failed(status="bogus"), failed("c@example.org", action="delayed", status="9.9.9")]
    blocks = status_blocks(parse(build(recipients=recipients)))
    assert [b["Status"] for b in blocks[1:]] == ["5.0.0", "4.0.0"]


def _decode_utf8_addr_xtext(value: str) -> str:
    return re.sub(r"\\x\{([0-9A-F]+)\}", lambda m: chr(int(m.group(1), 16)), value)


def test_utf8_recipient_uses_the_rfc_6533_utf8_type() -> None:
    address = "用户@例子.广告"
    recipient = failed(address, diagnostic="550 5.1.1 адрес не найден")
    raw = build(recipients=[recipient], envelope_from="élodie@exemple.fr")
    assert_well_formed(raw)
    msg = parse(raw)
    report = raw.split(b"Content-Type: message/delivery-status")[1].split(b"Content-Type: text/rfc822")[0]
    assert report.isascii()  # message/delivery-status stays 7-bit
    block = status_blocks(msg)[1]
    kind, _, value = block["Final-Recipient"].partition(";")
    assert kind == "utf-8"
    assert value.strip().isascii()
    assert _decode_utf8_addr_xtext(value.strip()) == address
    assert _decode_utf8_addr_xtext(block["Diagnostic-Code"]) == "smtp; 550 5.1.1 адрес не найден"
    # the text part says it in Unicode, and stays 7-bit on the wire
    text_part = msg.get_payload()[0]
    assert text_part["Content-Transfer-Encoding"] == "quoted-printable"
    text = text_of(msg)
    assert address in text and "адрес не найден" in text
    assert "To: <élodie@exemple.fr>".encode() in raw  # RFC 6532 header


def test_ascii_address_with_specials_stays_rfc822() -> None:
    block = status_blocks(parse(build(recipients=[failed("a+tag=x@example.net")])))[1]
    assert block["Final-Recipient"] == "rfc822; a+tag=x@example.net"


def test_cr_lf_in_diagnostic_is_neutralised() -> None:
    evil = "550 5.1.1 no\r\nBcc: victim@example.org\r\n\r\nFinal-Recipient: rfc822; forged@example.org\n.\r\nX"
    raw = build(recipients=[failed(diagnostic=evil)])
    assert_well_formed(raw)
    assert not re.search(rb"^(Bcc|Final-Recipient: rfc822; forged)", raw, re.MULTILINE)
    msg = parse(raw)
    blocks = status_blocks(msg)
    assert len(blocks) == 2
    assert blocks[1]["Final-Recipient"] == "rfc822; bob@example.net"
    diagnostic = blocks[1]["Diagnostic-Code"]
    assert diagnostic == "smtp; 550 5.1.1 no Bcc: victim@example.org Final-Recipient: rfc822; forged@example.org . X"
    paragraph = msg.get_payload()[0].get_content().split("said:")[1].split("\r\n\r\n")[0]
    assert all(line.startswith("    ") for line in paragraph.split("\r\n")[1:] if line)  # indented, no injected line
    assert "no Bcc: victim@example.org Final-Recipient" in text_of(msg)


def test_controls_in_address_remote_mta_and_envelope_id_are_neutralised() -> None:
    recipient = failed("bob@example.net\r\nBcc: x@y", remote_mta="mx.example.net\r\nX-Evil: 1", diagnostic="550\x00 no\x1b[31m")
    raw = build(recipients=[recipient], envelope_id="id\r\nX-Evil: 2", envelope_from="alice@example.com\r\nBcc: z@z")
    assert_well_formed(raw)
    assert not re.search(rb"^(Bcc|X-Evil)", raw, re.MULTILINE)
    msg = parse(raw)
    assert msg["Bcc"] is None
    assert b"\r\nTo: <alice@example.com Bcc: z@z>\r\n" in raw
    blocks = status_blocks(msg)
    assert blocks[1]["Remote-MTA"] is None  # not a host name: left out
    assert blocks[0]["Original-Envelope-Id"] == "id X-Evil: 2"


def test_long_diagnostic_is_folded() -> None:
    diagnostic = "550 5.7.1 " + " ".join(f"word{i}" for i in range(300)) + " " + "x" * 2500
    raw = build(recipients=[failed(diagnostic=diagnostic)])
    assert_well_formed(raw)
    value = status_blocks(parse(raw))[1]["Diagnostic-Code"]
    assert value.startswith("smtp; 550 5.7.1 word0 word1")
    assert "word200" in value and value.endswith(" [...]")  # cut at 2000 characters


def test_hostile_original_headers_are_carried_safely() -> None:
    original = b"Subject: caf\xe9 \x00 bare\nX-Long: " + b"a" * 3000 + b"\r\nFrom: x@example.com\r\n\r\nbody"
    raw = build(original=original)
    assert_well_formed(raw)
    part = parse(raw).get_payload()[2]
    assert part["Content-Transfer-Encoding"] == "base64"
    assert part.get_payload(decode=True) == original.split(b"\r\n\r\n")[0].replace(b"bare\n", b"bare\r\n") + b"\r\n"


def test_utf8_original_headers_are_8bit() -> None:
    original = "Subject: Déjeuner ?\r\nFrom: élodie@exemple.fr\r\n\r\nbody".encode()
    raw = build(original=original)
    assert_well_formed(raw)
    part = parse(raw).get_payload()[2]
    assert part["Content-Transfer-Encoding"] == "8bit"
    assert part.get_content_charset() == "utf-8"
    assert "Déjeuner".encode() in raw


def test_lf_only_original_is_attached_with_crlf() -> None:
    raw = build(original=ORIGINAL.replace(b"\r\n", b"\n"), include_full_message=True)
    assert_well_formed(raw)
    assert parse(raw).get_payload()[2].get_payload()[0]["Subject"] == "Lunch tomorrow?"


def test_full_message_that_is_not_8bit_clean_falls_back_to_headers() -> None:
    original = HEADERS + b"\r\n" + b"\x00binary" + b"y" * 2000 + b"\r\n"
    raw = build(original=original, include_full_message=True)
    assert_well_formed(raw)
    msg = parse(raw)
    assert msg.get_payload()[2].get_content_type() == "text/rfc822-headers"
    assert "headers of your message" in text_of(msg)


@pytest.mark.parametrize("original", [b"", b"\r\n\r\nbody only", b"no separator at all", b"Subject: x"])
def test_degenerate_originals(original: bytes) -> None:
    raw = build(original=original)
    assert_well_formed(raw)
    assert len(parse(raw).get_payload()) == 3


def test_huge_header_section_is_cut_at_a_line_end() -> None:
    original = b"".join(b"X-Filler-%06d: %s\r\n" % (i, b"z" * 80) for i in range(2000)) + b"\r\nbody"
    raw = build(original=original)
    assert_well_formed(raw)
    attached = parse(raw).get_payload()[2].get_payload(decode=True)
    assert 60_000 < len(attached) <= 64 * 1024
    assert attached.endswith(b"\r\n") and original.startswith(attached)


def test_naive_datetimes_are_utc() -> None:
    raw = build(arrival_date=ARRIVAL.replace(tzinfo=None), now=NOW.replace(tzinfo=None),
                recipients=[failed(last_attempt=LAST.replace(tzinfo=None))])
    msg = parse(raw)
    assert parsedate_to_datetime(msg["Date"]) == NOW
    assert parsedate_to_datetime(status_blocks(msg)[0]["Arrival-Date"]) == ARRIVAL


def test_idn_reporting_mta_is_written_as_a_label() -> None:
    msg = parse(build(reporting_mta="mail.bücher.example", message_id_domain="bücher.example"))
    assert msg["From"] == "Mail Delivery System <MAILER-DAEMON@mail.xn--bcher-kva.example>"
    assert msg["Message-ID"].endswith("@xn--bcher-kva.example>")
    assert status_blocks(msg)[0]["Reporting-MTA"] == "dns; mail.xn--bcher-kva.example"


@pytest.mark.parametrize(
    "kw",
    [
        {"envelope_from": ""},
        {"envelope_from": "<>"},
        {"envelope_from": "  "},
        {"recipients": []},
        {"recipients": [failed(action="delivered")]},
        {"reporting_mta": "not a host"},
        {"message_id_domain": ""},
    ],
)
def test_refused_input(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        build(**kw)


@pytest.mark.parametrize("kw", [{"original": "not bytes"}, {"arrival_date": "yesterday"}, {"reporting_mta": None}])
def test_wrong_types(kw: dict[str, object]) -> None:
    with pytest.raises(TypeError):
        build(**kw)


@settings(max_examples=150, deadline=None)
@given(
    original=st.binary(max_size=400),
    diagnostic=st.text(max_size=200),
    address=st.text(min_size=1, max_size=60),
    full=st.booleans(),
)
def test_fuzz_always_well_formed(original: bytes, diagnostic: str, address: str, full: bool) -> None:
    recipient = failed(address, diagnostic=diagnostic)
    raw = build(original=original, recipients=[recipient], include_full_message=full)
    assert_well_formed(raw)
    msg = parse(raw)
    assert msg.get_content_type() == "multipart/report"
    parts = msg.get_payload()
    assert len(parts) == 3
    assert len(status_blocks(msg)) == 2
    report = raw.split(b"Content-Type: message/delivery-status", 1)[1].split(b"\r\n--postern-dsn-", 1)[0]
    assert report.isascii()


# --- is_bounce_worthy ------------------------------------------------------------

DSN_HEADERS = (
    b"From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\n"
    b"Content-Type: multipart/report;\r\n\treport-type=\"delivery-status\"; boundary=\"b1\"\r\n"
)


@pytest.mark.parametrize(
    ("envelope_from", "headers", "expected"),
    [
        ("alice@example.com", HEADERS, True),
        ("", HEADERS, False),
        ("<>", HEADERS, False),
        ("MAILER-DAEMON@example.net", HEADERS, False),
        ("mailer-daemon@example.net", HEADERS, False),
        ("<Mailer-Daemon@example.net>", HEADERS, False),
        ("MAILER-DAEMON", HEADERS, False),
        ("postmaster@example.net", HEADERS, True),
        ("alice@example.com", DSN_HEADERS, False),
        ("alice@example.com", DSN_HEADERS.replace(b"delivery-status", b"global-delivery-status"), False),
        ("alice@example.com", DSN_HEADERS.replace(b"delivery-status", b"disposition-notification"), True),
        ("alice@example.com", HEADERS + b"Auto-Submitted: auto-replied\r\n", True),
        ("alice@example.com", b"Content-Type: multipart/report; report-type*=us-ascii''delivery-status\r\n", False),
        ("alice@example.com", b"\x00\xff garbage \r\n\r\n", True),
        ("alice@example.com", b"", True),
        ("alice@example.com", b"Content-Type: multipart/report\r\n", True),
    ],
)
def test_is_bounce_worthy(envelope_from: str, headers: bytes, expected: bool) -> None:
    assert is_bounce_worthy(envelope_from, headers) is expected


def test_a_dsn_we_built_is_not_bounce_worthy() -> None:
    raw = build()
    assert not is_bounce_worthy("alice@example.com", raw.split(b"\r\n\r\n")[0] + b"\r\n")


def test_dates_in_the_past_and_future_are_kept() -> None:
    later = LAST + timedelta(days=5)
    block = status_blocks(parse(build(recipients=[failed(last_attempt=later)])))[1]
    assert parsedate_to_datetime(block["Last-Attempt-Date"]) == later


def test_base64_part_round_trips_exact_bytes() -> None:
    original = b"Subject: \xff\xfe\r\n\r\n"
    part = parse(build(original=original)).get_payload()[2]
    assert base64.b64decode(part.get_payload()) == b"Subject: \xff\xfe\r\n"


@settings(max_examples=200, deadline=None)
@given(envelope_from=st.text(max_size=40), headers=st.binary(max_size=300))
def test_fuzz_is_bounce_worthy_never_raises(envelope_from: str, headers: bytes) -> None:
    assert is_bounce_worthy(envelope_from, b"Content-Type: " + headers) in (True, False)
