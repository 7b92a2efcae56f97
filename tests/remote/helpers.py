"""Helpers of the remote identity tests."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import update

from postern.serve.runtime import Runtime
from postern.storage.schema import remote_identities
from tests.aliases import Person
from tests.remote.dovecot import Dovecot

PATH = "/api/v1/remote-identities"


def message(number: int, body: str = "hello", message_id: str | None = None) -> bytes:
    mid = message_id or f"<m{number}@remote.example>"
    return (
        f"From: Sender {number} <sender{number}@remote.example>\r\nTo: ann@example.org\r\nSubject: message {number}\r\n"
        f"Message-ID: {mid}\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\n\r\n{body} {number}\r\n"
    ).encode()


async def connect(
    api: httpx.AsyncClient, who: Person, dovecot: Dovecot, login: str, password: str, **params: Any
) -> dict[str, Any]:
    protocol = params.pop("mail_protocol", "IMAP")
    port = params.pop("mail_port", dovecot.imaps if protocol == "IMAP" else dovecot.pop3s)
    body = {
        "identity_id": who.email,
        "connection_required": params.pop("connection_required", True),
        "params": {
            "login": login,
            "password": password,
            "mail_protocol": protocol,
            "incomming_mail_server": "localhost",
            "mail_port": str(port),
            "fetch_method": params.pop("fetch_method", "from_now"),
            "poll_interval": params.pop("poll_interval", 1),
            **params,
        },
    }
    answer = await api.post(PATH, json=body, headers=who.headers)
    assert answer.status_code == 201, answer.text
    return answer.json()


async def state(api: httpx.AsyncClient, who: Person, identity: dict[str, Any]) -> dict[str, Any]:
    answer = await api.get(f"{PATH}/{identity['remote_identity_id']}", headers=who.headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def inbox(runtime: Runtime, user_id: str, path: str = "INBOX") -> list[bytes]:
    """The raw messages of a user's folder (without postern's trace lines), oldest first."""
    folder = await runtime.mailstore.folder_by_path(user_id, path)
    _, rows = await runtime.mailstore.list_messages(user_id, folder.id, descending=False, limit=100000, cursor=None)
    found = []
    for r in rows:
        full = await runtime.mailstore.get_message(user_id, folder.id, r.uid)
        found.append(await runtime.blobs.get(full.blob_key))
    return found


async def subjects(runtime: Runtime, user_id: str, path: str = "INBOX") -> list[str]:
    folder = await runtime.mailstore.folder_by_path(user_id, path)
    _, rows = await runtime.mailstore.list_messages(user_id, folder.id, descending=False, limit=100000, cursor=None)
    return sorted(r.subject for r in rows)


async def set_row(runtime: Runtime, identity_id: str, **values: Any) -> None:
    async with runtime.db.write() as conn:
        await conn.execute(update(remote_identities).where(remote_identities.c.id == identity_id).values(**values))


async def due_now(runtime: Runtime, identity_id: str) -> None:
    await set_row(runtime, identity_id, next_fetch_ms=0, lease_owner=None, lease_until_ms=None)
