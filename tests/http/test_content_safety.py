"""Mail content cannot run as a page on the API's origin (issue 14, item 4), and a
request without access learns nothing about its body before being refused (item 10)."""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.helpers import create_user, folder_id, upload

CSP = "default-src 'none'; sandbox"


def _message(parts: list[tuple[str, str, bytes]]) -> bytes:
    """A multipart message whose parts are (content type, disposition, bytes)."""
    lines = [
        b"From: Mallory <mallory@example.org>",
        b"To: alice@example.com",
        b"Subject: pictures",
        b"MIME-Version: 1.0",
        b'Content-Type: multipart/mixed; boundary="b"',
        b"",
        b"--b",
        b"Content-Type: text/plain",
        b"",
        b"see attached",
    ]
    for index, (kind, disposition, data) in enumerate(parts):
        lines += [
            b"--b",
            f"Content-Type: {kind}".encode(),
            f'Content-Disposition: {disposition}; filename="part{index}"'.encode(),
            b"Content-Transfer-Encoding: base64",
            b"",
            base64.b64encode(data),
        ]
    lines += [b"--b--", b""]
    return b"\r\n".join(lines)


SCRIPT_HTML = b"<html><body><script>fetch('/users?accessToken='+location.search)</script></body></html>"
SCRIPT_SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.domain)</script></svg>'
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489")


def _assert_safe(response: httpx.Response) -> None:
    assert response.headers.get("x-content-type-options") == "nosniff", response.headers
    assert response.headers.get("content-security-policy") == CSP, response.headers


async def test_attachments_that_could_run_are_downloads_and_every_answer_is_sandboxed(client: httpx.AsyncClient) -> None:
    user = await create_user(client, "alice")
    inbox = await folder_id(client, user)
    raw = _message([
        ("text/html", "inline", SCRIPT_HTML),
        ("image/svg+xml", "inline", SCRIPT_SVG),
        ("image/png", "inline", PNG),
        ("image/png", "attachment", PNG),
        ("application/xhtml+xml", "inline", SCRIPT_HTML),
    ])
    uid = await upload(client, user, inbox, raw)
    base = f"/users/{user}/mailboxes/{inbox}/messages/{uid}"
    details = (await client.get(base)).json()
    ids = [a["id"] for a in details["attachments"]]
    assert len(ids) == 5, details["attachments"]

    dispositions = []
    for attachment in ids:
        response = await client.get(f"{base}/attachments/{attachment}")
        assert response.status_code == 200, response.text
        _assert_safe(response)
        dispositions.append(response.headers["content-disposition"].split(";")[0])
    # Only the PNG that asked to be inline is; HTML, SVG and XHTML are downloads.
    assert dispositions == ["attachment", "attachment", "inline", "attachment", "attachment"]

    for path in (base, f"{base}/message.eml", f"/users/{user}/mailboxes/{inbox}/messages", f"/users/{user}"):
        response = await client.get(path)
        assert response.status_code == 200, response.text
        _assert_safe(response)
    # Errors too, and with the token in the query.
    missing = await client.get(f"{base}/attachments/ATT00099", headers={"X-Access-Token": ""})
    assert missing.status_code in (401, 404)
    _assert_safe(missing)


async def test_user_api_answers_are_sandboxed(anonymous: httpx.AsyncClient) -> None:
    for path in ("/api/health", "/api/user_info"):
        _assert_safe(await anonymous.get(path))


@pytest.mark.parametrize("headers", [{}, {"X-Access-Token": "wrong"}])
@pytest.mark.parametrize("body", [b"{not json", b'{"username": "x", "password": ', b"\xff\xfe"])
async def test_admin_api_checks_the_token_before_the_body(anonymous: httpx.AsyncClient, headers: dict[str, str], body: bytes) -> None:
    response = await anonymous.post("/users", content=body, headers={**headers, "Content-Type": "application/json"})
    assert response.status_code == (403 if headers else 401), response.text
    assert response.json()["code"] in ("MissingAccessToken", "InvalidToken")
    # Same on a route with a path parameter and a body, and through the query's token.
    response = await anonymous.put("/users/0123456789abcdef01234567", params={"accessToken": "wrong"}, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 403, response.text


async def test_admin_api_with_the_token_still_names_the_bad_body(client: httpx.AsyncClient) -> None:
    response = await client.post("/users", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "InputValidationError"


@pytest.mark.parametrize("headers", [{}, {"Authentication": "wrong-key"}])
async def test_user_api_checks_the_key_before_the_body(anonymous: httpx.AsyncClient, headers: dict[str, str]) -> None:
    for method, path in (("POST", "/api/v3/alias/custom/new"), ("PATCH", "/api/setting"), ("PUT", "/api/aliases/1")):
        response = await anonymous.request(method, path, content=b"{not json", headers={**headers, "Content-Type": "application/json"})
        assert response.status_code == 401, (path, response.text)


async def test_the_openapi_document_is_public_and_carries_no_data(anonymous: httpx.AsyncClient) -> None:
    """Decided (README, Security): /openapi.json is served without a token. It is the
    shape of an open-source API, with no user's data in it."""
    response = await anonymous.get("/openapi.json")
    assert response.status_code == 200
    assert response.json()["paths"]
    assert (await anonymous.get("/users")).status_code == 401
