"""GET /api/export/data: the user's own data, nobody else's."""

from __future__ import annotations

import httpx
from sqlalchemy import update

from postern.serve.runtime import Runtime
from postern.storage.aliases import insert_alias
from postern.storage.ids import now_ms
from postern.storage.schema import custom_domains, users
from tests.http.api.helpers import Outbox, auth, signed_up


async def user_id_of(runtime: Runtime, email: str) -> str:
    user = await runtime.registration.by_email(email)
    assert user is not None
    return str(user.id)


async def test_export_data(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    key = await signed_up(api, outbox, "ann@example.org")
    other = await signed_up(api, outbox, "bob@example.org")
    empty = await api.get("/api/export/data", headers=auth(key))
    assert empty.status_code == 200
    body = empty.json()
    assert set(body) == {"email", "name", "aliases", "apps", "custom_domains", "mailboxes"}
    assert (body["email"], body["name"], body["aliases"], body["apps"], body["custom_domains"]) == ("ann@example.org", "", [], [], [])
    [mailbox] = body["mailboxes"]
    assert (mailbox["email"], mailbox["default"], mailbox["verified"]) == ("ann@example.org", True, True)

    user_id = await user_id_of(runtime, "ann@example.org")
    other_id = await user_id_of(runtime, "bob@example.org")
    other_mailbox = (await api.get("/api/v2/mailboxes", headers=auth(other))).json()["mailboxes"][0]["id"]
    async with runtime.db.write() as conn:
        await conn.execute(update(users).where(users.c.id == user_id).values(name="Ann Lee"))
        for name, enabled in (("one", True), ("two", False)):
            await insert_alias(
                conn, user_id=user_id, email=f"{name}@example.com", email_key=f"{name}@example.com",
                mailbox_ids=[mailbox["id"]], created_ms=now_ms(), enabled=enabled,
            )
        await insert_alias(
            conn, user_id=other_id, email="bobs@example.com", email_key="bobs@example.com", mailbox_ids=[other_mailbox], created_ms=now_ms()
        )
        await conn.execute(custom_domains.insert().values(user_id=user_id, domain="ann.test", ownership_token="t", created_ms=now_ms()))
        await conn.execute(custom_domains.insert().values(user_id=other_id, domain="bob.test", ownership_token="u", created_ms=now_ms()))
    response = await api.post("/api/mailboxes", json={"email": "ann@example.net"}, headers=auth(key))
    assert response.status_code == 201
    body = (await api.get("/api/export/data", headers=auth(key))).json()
    assert body["name"] == "Ann Lee"
    assert body["aliases"] == [{"email": "one@example.com", "enabled": True}, {"email": "two@example.com", "enabled": False}]
    assert body["custom_domains"] == ["ann.test"]
    assert [(m["email"], m["verified"], m["nb_alias"]) for m in body["mailboxes"]] == [("ann@example.org", True, 2), ("ann@example.net", False, 0)]
    assert body["apps"] == []
    assert (await api.get("/api/export/data")).status_code == 401
