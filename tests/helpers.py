"""Helpers the admin API tests share."""

from __future__ import annotations

import secrets
from typing import Any

import httpx


async def create_user(client: httpx.AsyncClient, username: str = "alice", **fields: Any) -> str:
    body = {"username": username, "password": "correct horse battery", **fields}
    response = await client.post("/users", json=body)
    assert response.status_code == 200, response.text
    return response.json()["id"]


async def folder_id(client: httpx.AsyncClient, user_id: str, path: str = "INBOX") -> str:
    response = await client.get(f"/users/{user_id}/mailboxes")
    assert response.status_code == 200, response.text
    return next(m["id"] for m in response.json()["results"] if m["path"] == path)


def make_message(subject: str = "Hello", body: str = "Hi there.\r\n", **headers: str) -> bytes:
    lines = {
        "From": "Sender Name <sender@example.org>",
        "To": "Alice <alice@example.com>",
        "Subject": subject,
        "Date": "Wed, 02 Nov 2011 19:19:08 +0000",
        "Message-ID": f"<{secrets.token_hex(8)}@example.org>",
        **{k.replace("_", "-"): v for k, v in headers.items()},
    }
    head = "".join(f"{k}: {v}\r\n" for k, v in lines.items() if v is not None)
    return (head + "\r\n" + body).encode("utf-8")


async def upload(client: httpx.AsyncClient, user_id: str, folder: str, raw: bytes, **params: Any) -> int:
    response = await client.post(
        f"/users/{user_id}/mailboxes/{folder}/messages",
        content=raw,
        headers={"Content-Type": "message/rfc822"},
        params=params,
    )
    assert response.status_code == 200, response.text
    return response.json()["message"]["id"]
