"""Reading one message over HTTP: its details (html, text, attachments), its raw
source (message.eml) and its attachments (attachments/{id})."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import httpx
import pytest

from postern.serve.runtime import Runtime
from tests.helpers import create_user, folder_id, make_message, upload

UNKNOWN_ID = "0123456789abcdef01234567"
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000") + bytes(range(256))


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"]
    if code is not None:
        assert body.get("code") == code, body
    return body


def url(user: str, mailbox: str, message: int | str) -> str:
    return f"/users/{user}/mailboxes/{mailbox}/messages/{message}"


async def setup(client: httpx.AsyncClient, raw: bytes, username: str = "alice") -> tuple[str, str, int]:
    user = await create_user(client, username)
    inbox = await folder_id(client, user)
    uid = await upload(client, user, inbox, raw)
    return user, inbox, uid


async def details(client: httpx.AsyncClient, user: str, mailbox: str, uid: int) -> dict[str, Any]:
    response = await client.get(url(user, mailbox, uid))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["success"] is True
    return body


def wrap64(data: bytes) -> bytes:
    encoded = base64.b64encode(data)
    return b"\r\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))


ALTERNATIVE = (
    b"From: Sender Name <sender@example.org>\r\n"
    b"To: Alice <alice@example.com>\r\n"
    b"Subject: Alternative\r\n"
    b"Date: Wed, 02 Nov 2011 19:19:08 +0000\r\n"
    b"Message-ID: <alt@example.org>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative; boundary="alt"\r\n'
    b"\r\n"
    b"--alt\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Plain version with \xc3\xbcmlauts.\r\n"
    b"--alt\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"\r\n"
    b"<html><head><style>body{}</style><script>alert('head')</script></head><body>"
    b"<p>Hello <b>bold</b> \xc3\xbcmlauts</p>"
    b"<script type=\"text/javascript\">document.cookie</script>"
    b"<a href=\"https://example.org/\" onclick=\"steal()\">link</a>"
    b"<img src=\"javascript:alert(1)\" onerror=\"steal()\">"
    b"<div onmouseover=\"steal()\" style=\"color: red\">hover</div>"
    b"</body></html>\r\n"
    b"--alt--\r\n"
)


async def test_multipart_alternative(client: httpx.AsyncClient) -> None:
    user, inbox, uid = await setup(client, ALTERNATIVE)
    body = await details(client, user, inbox, uid)
    assert body["text"].strip() == "Plain version with ümlauts."
    assert isinstance(body["html"], list) and len(body["html"]) == 1
    html = body["html"][0]
    assert isinstance(html, str)
    assert "<b>bold</b>" in html
    assert "ümlauts" in html
    assert 'href="https://example.org/"' in html
    assert "hover" in html
    lowered = html.lower()
    for banned in ("<script", "alert(", "document.cookie", "onclick", "onerror", "onmouseover", "javascript:", "steal()", "<style"):
        assert banned not in lowered, (banned, html)
    assert body["attachments"] == []


async def test_text_only_message_gets_html_from_text(client: httpx.AsyncClient) -> None:
    raw = make_message("Plain", "First line & <not a tag>\r\nsecond line\r\n\r\nNext paragraph.\r\n")
    user, inbox, uid = await setup(client, raw)
    body = await details(client, user, inbox, uid)
    assert body["text"].strip() == "First line & <not a tag>\nsecond line\n\nNext paragraph."
    assert len(body["html"]) == 1
    html = body["html"][0]
    assert "&lt;not a tag&gt;" in html and "<not a tag>" not in html
    assert "&amp;" in html
    assert "First line" in html and "second line" in html and "Next paragraph." in html
    assert html.count("<p>") == 2


async def test_html_only_message_gets_text(client: httpx.AsyncClient) -> None:
    raw = (
        b"From: a@example.org\r\nSubject: html only\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        b"<p>Only <i>HTML</i> here</p><script>evil()</script>\r\n"
    )
    user, inbox, uid = await setup(client, raw)
    body = await details(client, user, inbox, uid)
    assert "Only HTML here" in " ".join(body["text"].split())
    assert "evil" not in body["text"]
    assert len(body["html"]) == 1
    assert "<i>HTML</i>" in body["html"][0]
    assert "script" not in body["html"][0].lower()


async def test_quoted_printable_and_latin1_body(client: httpx.AsyncClient) -> None:
    raw = (
        b"From: a@example.org\r\nSubject: qp\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"Gr=FC=DFe aus K=F6ln, =\r\nsoft break.\r\n"
    )
    user, inbox, uid = await setup(client, raw)
    body = await details(client, user, inbox, uid)
    assert body["text"].strip() == "Grüße aus Köln, soft break."
    assert body["intro"] == "Grüße aus Köln, soft break."


async def test_details_fields(client: httpx.AsyncClient) -> None:
    raw = (
        b"From: Sender Name <sender@example.org>\r\n"
        b"Sender: Secretary <sec@example.org>\r\n"
        b"Reply-To: Replies <replies@example.org>\r\n"
        b"To: Alice <alice@example.com>\r\n"
        b"Cc: carol@example.net\r\n"
        b"Bcc: dave@example.net\r\n"
        b"Subject: All the fields\r\n"
        b"Date: Wed, 02 Nov 2011 19:19:08 +0000\r\n"
        b"Message-ID: <fields@example.org>\r\n"
        b"In-Reply-To: <parent@example.org>\r\n"
        b"References: <root@example.org> <parent@example.org>\r\n"
        b"\r\n"
        b"Body.\r\n"
    )
    user, inbox, uid = await setup(client, raw)
    body = await details(client, user, inbox, uid)
    assert body["id"] == uid
    assert body["mailbox"] == inbox
    assert body["user"] == user
    assert len(body["thread"]) == 24
    assert body["from"] == {"address": "sender@example.org", "name": "Sender Name"}
    assert body["sender"] == {"address": "sec@example.org", "name": "Secretary"}
    assert body["replyTo"] == [{"address": "replies@example.org", "name": "Replies"}]
    assert body["to"] == [{"address": "alice@example.com", "name": "Alice"}]
    assert body["cc"] == [{"address": "carol@example.net", "name": ""}]
    assert body["bcc"] == [{"address": "dave@example.net", "name": ""}]
    assert body["subject"] == "All the fields"
    assert body["messageId"] == "<fields@example.org>"
    assert body["inReplyTo"] == ["<parent@example.org>"]
    assert body["references"] == ["<root@example.org>", "<parent@example.org>"]
    assert body["date"] == "2011-11-02T19:19:08.000Z"
    assert body["idate"].endswith("Z")
    assert body["size"] == len(raw)
    assert body["intro"] == "Body."
    assert (body["seen"], body["deleted"], body["flagged"], body["draft"]) == (True, False, False, False)
    assert body["keywords"] == []
    assert body["expires"] is False
    assert body["attachments"] == []


def mixed_message() -> bytes:
    return (
        b"From: a@example.org\r\nTo: b@example.com\r\nSubject: files\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
        b"--outer\r\n"
        b'Content-Type: multipart/related; boundary="rel"\r\n\r\n'
        b"--rel\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        b'<p>See <img src="cid:logo@example.org"></p>\r\n'
        b"--rel\r\n"
        b"Content-Type: image/png\r\nContent-ID: <logo@example.org>\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + wrap64(PNG)
        + b"\r\n--rel--\r\n"
        b"--outer\r\n"
        b'Content-Type: text/plain; charset=utf-8; name="notes.txt"\r\n'
        b'Content-Disposition: attachment; filename="notes.txt"\r\n'
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"caf=C3=A9 notes=\r\n continue\r\n"
        b"--outer\r\n"
        b"Content-Type: application/pdf\r\n"
        b"Content-Disposition: attachment; filename*=UTF-8''r%C3%A9sum%C3%A9%20final.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + wrap64(b"%PDF-1.4\n" + bytes(range(256)) * 4) + b"\r\n"
        b"--outer--\r\n"
    )


async def test_attachments_listed(client: httpx.AsyncClient) -> None:
    user, inbox, uid = await setup(client, mixed_message())
    body = await details(client, user, inbox, uid)
    attachments = body["attachments"]
    assert [a["id"] for a in attachments] == ["ATT00001", "ATT00002", "ATT00003"]
    png, notes, pdf = attachments
    assert (png["contentType"], png["size"]) == ("image/png", len(PNG))
    assert png["filename"] is None or isinstance(png["filename"], str)
    assert (notes["filename"], notes["contentType"], notes["size"]) == ("notes.txt", "text/plain", len("café notes continue".encode()))
    assert (pdf["filename"], pdf["contentType"], pdf["size"]) == ("résumé final.pdf", "application/pdf", 9 + 1024)
    for attachment in attachments:
        assert set(attachment) >= {"id", "filename", "contentType", "size"}
    assert len(body["html"]) == 1 and "See" in body["html"][0]
    listed = (await client.get(f"/users/{user}/mailboxes/{inbox}/messages")).json()["results"]
    assert listed[0]["attachments"] is True


async def test_attachment_download(client: httpx.AsyncClient) -> None:
    user, inbox, uid = await setup(client, mixed_message())
    base = url(user, inbox, uid) + "/attachments/"

    png = await client.get(base + "ATT00001")
    assert png.status_code == 200, png.text
    assert png.headers["content-type"].split(";")[0] == "image/png"
    assert png.content == PNG

    notes = await client.get(base + "ATT00002")
    assert notes.status_code == 200, notes.text
    assert notes.headers["content-type"].split(";")[0] == "text/plain"
    assert notes.content == "café notes continue".encode()
    assert "notes.txt" in notes.headers.get("content-disposition", "")

    pdf = await client.get(base + "ATT00003")
    assert pdf.status_code == 200, pdf.text
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content == b"%PDF-1.4\n" + bytes(range(256)) * 4
    disposition = pdf.headers["content-disposition"]
    assert disposition.startswith("attachment")
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9%20final.pdf" in disposition


async def test_attached_message_is_returned_as_is(client: httpx.AsyncClient) -> None:
    inner = make_message("Inner message", "Forwarded body \xe9\r\n")
    raw = (
        b"From: a@example.org\r\nSubject: Fwd: inner\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="fw"\r\n\r\n'
        b"--fw\r\nContent-Type: text/plain\r\n\r\nSee below.\r\n"
        b"--fw\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment; filename=\"inner.eml\"\r\n\r\n"
        + inner
        + b"\r\n--fw--\r\n"
    )
    user, inbox, uid = await setup(client, raw)
    body = await details(client, user, inbox, uid)
    assert [(a["id"], a["contentType"]) for a in body["attachments"]] == [("ATT00001", "message/rfc822")]
    response = await client.get(url(user, inbox, uid) + "/attachments/ATT00001")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].split(";")[0] == "message/rfc822"
    assert response.content.rstrip(b"\r\n") == inner.rstrip(b"\r\n")


async def test_unknown_attachment(client: httpx.AsyncClient) -> None:
    user, inbox, uid = await setup(client, mixed_message())
    base = url(user, inbox, uid) + "/attachments/"
    assert_error(await client.get(base + "ATT00004"), 404, "AttachmentNotFound")
    assert_error(await client.get(base + "ATT99999"), 404, "AttachmentNotFound")
    assert_error(await client.get(base + "ATT00000"), 404, "AttachmentNotFound")
    for bad in ("att00001", "ATT1", "ATT000001", "..%2F..%2Fetc", "nothing"):
        response = await client.get(base + bad)
        assert response.status_code in (400, 404), (bad, response.text)
        assert "error" in response.json()


async def test_attachment_of_plain_message(client: httpx.AsyncClient) -> None:
    user, inbox, uid = await setup(client, make_message())
    assert_error(await client.get(url(user, inbox, uid) + "/attachments/ATT00001"), 404, "AttachmentNotFound")


async def test_attachment_of_unknown_message(client: httpx.AsyncClient) -> None:
    user, inbox, uid = await setup(client, mixed_message())
    assert_error(await client.get(url(user, inbox, uid + 1) + "/attachments/ATT00001"), 404, "MessageNotFound")


# message.eml ----------------------------------------------------------------------------

EIGHT_BIT = (
    b"From: =?utf-8?q?J=C3=BCrgen?= <j@example.de>\n"
    b"Subject: raw caf\xc3\xa9 \xe9\xff\n"
    b"X-Binary: \x80\x81\x82\n"
    b"\n"
    b"bare LF line\n"
    b"CRLF line\r\n"
    b"lonely CR\rhere\n"
    b"\x00\x01\x02 nul and controls\n"
    b"trailing spaces   \n"
    b"no final newline"
)


@pytest.mark.parametrize(
    "raw",
    [
        EIGHT_BIT,
        make_message("simple"),
        ALTERNATIVE,
        b"x",
        make_message("big", ("0123456789abcdef" * 8 + "\r\n") * 3000),  # > 256 KiB, several chunks
    ],
    ids=["8bit-bare-lf", "simple", "alternative", "one-byte", "big"],
)
async def test_message_eml_is_byte_exact(client: httpx.AsyncClient, raw: bytes) -> None:
    user, inbox, uid = await setup(client, raw)
    response = await client.get(url(user, inbox, uid) + "/message.eml")
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == "message/rfc822"
    assert response.content == raw
    assert hashlib.sha256(response.content).digest() == hashlib.sha256(raw).digest()
    assert int(response.headers["content-length"]) == len(raw)


async def test_eight_bit_message_details_do_not_fail(client: httpx.AsyncClient) -> None:
    user, inbox, uid = await setup(client, EIGHT_BIT)
    body = await details(client, user, inbox, uid)
    assert body["from"]["address"] == "j@example.de"
    assert body["from"]["name"] == "Jürgen"
    assert "bare LF line" in body["text"]
    assert body["size"] == len(EIGHT_BIT)


async def test_big_message_details(client: httpx.AsyncClient) -> None:
    raw = make_message("big", "word " * 100_000 + "\r\n")
    user, inbox, uid = await setup(client, raw)
    body = await details(client, user, inbox, uid)
    assert body["size"] == len(raw)
    assert body["text"].count("word") == 100_000
    assert body["intro"].startswith("word word")


async def test_message_eml_after_move(client: httpx.AsyncClient) -> None:
    raw = EIGHT_BIT
    user, inbox, uid = await setup(client, raw)
    archive = await folder_id(client, user, "Archive")
    response = await client.put(url(user, inbox, uid), json={"moveTo": archive})
    assert response.status_code == 200, response.text
    [[_, new_uid]] = response.json()["id"]
    assert (await client.get(url(user, archive, new_uid) + "/message.eml")).content == raw
    assert_error(await client.get(url(user, inbox, uid) + "/message.eml"), 404, "MessageNotFound")


async def test_message_eml_with_missing_blob_is_a_clean_error(client: httpx.AsyncClient, runtime: Runtime) -> None:
    raw = make_message("lost")
    user, inbox, uid = await setup(client, raw)
    await runtime.blobs.delete(hashlib.sha256(raw).hexdigest())
    response = await client.get(url(user, inbox, uid) + "/message.eml")
    assert response.status_code == 500
    assert response.json()["error"]
    response = await client.get(url(user, inbox, uid))
    assert response.status_code == 500
    assert response.json()["error"]


# Not found and other users ----------------------------------------------------------------


async def test_unknown_message(client: httpx.AsyncClient) -> None:
    user, inbox, uid = await setup(client, make_message())
    for path in ("", "/message.eml"):
        assert_error(await client.get(url(user, inbox, uid + 1) + path), 404, "MessageNotFound")
        assert_error(await client.get(url(user, inbox, 4294967295) + path), 404, "MessageNotFound")
    for bad in ("0", "-1", "abc", "4294967296"):
        response = await client.get(url(user, inbox, bad))
        assert_error(response, 400)
        response = await client.get(url(user, inbox, bad) + "/message.eml")
        assert_error(response, 400)


async def test_unknown_mailbox_and_user(client: httpx.AsyncClient) -> None:
    user, inbox, uid = await setup(client, make_message())
    for path in ("", "/message.eml", "/attachments/ATT00001"):
        assert_error(await client.get(url(user, UNKNOWN_ID, uid) + path), 404, "NoSuchMailbox")
        assert_error(await client.get(url(UNKNOWN_ID, inbox, uid) + path), 404, "UserNotFound")


async def test_another_users_message(client: httpx.AsyncClient) -> None:
    secret = mixed_message().replace(b"Subject: files", b"Subject: top secret files")
    bob, bobs_inbox, uid = await setup(client, secret, "bob")
    alice = await create_user(client, "alice")
    alices_inbox = await folder_id(client, alice)
    await upload(client, alice, alices_inbox, make_message("alice's"))
    for path in ("", "/message.eml", "/attachments/ATT00001", "/attachments/ATT00003"):
        # Bob's folder under Alice, and Alice's folder with Bob's message id.
        response = await client.get(url(alice, bobs_inbox, uid) + path)
        assert_error(response, 404, "NoSuchMailbox")
        assert b"secret" not in response.content and b"PDF" not in response.content
    # Alice's own message 1 is hers, not Bob's.
    mine = await details(client, alice, alices_inbox, 1)
    assert mine["subject"] == "alice's"
    assert_error(await client.get(url(alice, alices_inbox, 1) + "/attachments/ATT00001"), 404, "AttachmentNotFound")
    # Bob still reads his.
    assert (await client.get(url(bob, bobs_inbox, uid) + "/message.eml")).content == secret
