"""Helpers the alias tests share: users with API keys, extra mailboxes and premium
made straight in the database, and the calls that make aliases."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import update

from postern.accounts.addressing import normalise_address
from postern.serve.runtime import Runtime
from postern.storage import aliases as alias_store
from postern.storage import mailboxes as mailbox_store
from postern.storage.ids import now_ms
from postern.storage.schema import users
from tests.http.api.helpers import Outbox, auth, signed_up


class Person:
    """A signed-up user of the user API."""

    def __init__(self, key: str, user_id: str, email: str, mailbox_id: int):
        self.key, self.user_id, self.email, self.mailbox_id = key, user_id, email, mailbox_id

    @property
    def headers(self) -> dict[str, str]:
        return auth(self.key)


async def person(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox, email: str) -> Person:
    key = await signed_up(api, outbox, email)
    holder = await runtime.api_keys.authenticate(key)
    assert holder is not None
    async with runtime.db.read() as conn:
        box = await mailbox_store.get_by_email_key(conn, holder.user.id, normalise_address(email).key)
    assert box is not None and box.verified
    return Person(key, holder.user.id, email, box.id)


async def add_mailbox(runtime: Runtime, user_id: str, email: str, *, verified: bool = True) -> int:
    address = normalise_address(email)
    async with runtime.db.write() as conn:
        return await mailbox_store.insert(
            conn, {"user_id": user_id, "email": address.display, "email_key": address.key, "verified": verified, "created_ms": now_ms()}
        )


async def set_user(runtime: Runtime, user_id: str, **values: Any) -> None:
    async with runtime.db.write() as conn:
        await conn.execute(update(users).where(users.c.id == user_id).values(**values))


async def insert_aliases(runtime: Runtime, who: Person, count: int, *, domain: str = "example.com", start_ms: int = 1_600_000_000_000) -> list[int]:
    """``count`` aliases straight through storage, activity one second apart (the
    last one the most recent)."""
    ids = []
    async with runtime.db.write() as conn:
        for i in range(count):
            email = f"bulk{i}@{domain}"
            ids.append(
                await alias_store.insert_alias(
                    conn, user_id=who.user_id, email=email, email_key=email, mailbox_ids=[who.mailbox_id], created_ms=start_ms + i * 1000
                )
            )
    return ids


async def options(api: httpx.AsyncClient, who: Person, hostname: str | None = None) -> dict[str, Any]:
    params = {"hostname": hostname} if hostname is not None else {}
    response = await api.get("/api/v5/alias/options", params=params, headers=who.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def signed_suffix_for(api: httpx.AsyncClient, who: Person, domain: str) -> str:
    body = await options(api, who)
    found = [s["signed_suffix"] for s in body["suffixes"] if s["suffix"].endswith("@" + domain)]
    assert found, body
    return found[0]


async def create_custom(
    api: httpx.AsyncClient, who: Person, prefix: str, domain: str = "example.com", **extra: Any
) -> httpx.Response:
    signed = await signed_suffix_for(api, who, domain)
    body = {"alias_prefix": prefix, "signed_suffix": signed, "mailbox_ids": [who.mailbox_id], **extra}
    return await api.post("/api/v3/alias/custom/new", json=body, headers=who.headers)


async def new_alias(api: httpx.AsyncClient, who: Person, prefix: str, domain: str = "example.com", **extra: Any) -> dict[str, Any]:
    response = await create_custom(api, who, prefix, domain, **extra)
    assert response.status_code == 201, response.text
    return response.json()
