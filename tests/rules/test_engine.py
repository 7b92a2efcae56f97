"""The filter engine on its own: matching of each query field, and the text test on
messages whose plain text is not their raw bytes."""

from __future__ import annotations

import base64

from postern.rules.engine import Filter, Message, UserRules, decide


def one(query: dict, raw: bytes, delivered_to: str = "alice@example.com") -> bool:
    rules = UserRules("u", (Filter.of("f", query, {"seen": True}),))
    return decide(rules, Message(raw, delivered_to)).seen


HEAD = b"From: =?utf-8?q?J=C3=BCrgen?= <jurgen@example.org>\r\nTo: alice@example.com\r\nCc: Team <team@example.net>\r\nSubject: Quarterly\r\n report\r\nList-Id: Dev list <dev.lists.example.org>\r\n"


def test_header_fields() -> None:
    raw = HEAD + b"\r\nhello\r\n"
    assert one({"from": "JÜRGEN"}, raw)
    assert one({"to": "team@"}, raw) and one({"to": "alice@"}, raw)
    assert one({"to": "bob@"}, raw, delivered_to="bob@example.com")  # Delivered-To counts
    assert one({"subject": "quarterly report"}, raw)  # unfolded
    assert one({"listId": "<dev.lists.example.org>"}, raw) and one({"listId": "dev.lists"}, raw)
    assert not one({"from": "jurgen", "subject": "annual"}, raw)  # all must hold
    assert one({"size": 10}, raw) and not one({"size": -10}, raw) and one({"size": -10_000}, raw)


def test_text_through_encodings() -> None:
    body = b"Please pay the\r\n  Invoice today"
    plain = b"From: a@example.org\r\nSubject: x\r\n\r\n" + body
    assert one({"text": "pay the invoice"}, plain)
    assert not one({"text": "receipt"}, plain)
    encoded = (
        b"From: a@example.org\r\nSubject: x\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.b64encode(body)
    )
    assert one({"text": "invoice"}, encoded)
    html = b"From: a@example.org\r\nContent-Type: text/html\r\n\r\n<p>in<b>voice</b> due</p>"
    assert one({"text": "invoice due"}, html)
    flowed = b"From: a@example.org\r\nContent-Type: text/plain; format=flowed; delsp=yes\r\n\r\nin \r\nvoice\r\n"
    assert one({"text": "invoice"}, flowed)


def test_attachments() -> None:
    raw = (
        b"From: a@example.org\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b"Content-Type: text/plain\r\n\r\nsee\r\n--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n\r\nx\r\n--b--\r\n"
    )
    assert one({"ha": True}, raw) and not one({"ha": False}, raw)
    assert one({"ha": False}, HEAD + b"\r\nno files\r\n")
