"""Issue 14, item 11: POST /api/auth/register refuses an address that postern itself
forwards (an alias, a deleted alias, a reverse alias, any address on a domain of
aliases or a user's custom domain) with 400: the activation code would go to whoever
the alias forwards to. Nothing is made and nothing is mailed."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import func, select

from postern.accounts.addressing import normalise_domain
from postern.aliases.contacts import find_or_create
from postern.config import Settings
from postern.serve.runtime import Runtime
from postern.storage.ids import now_ms
from postern.storage.schema import custom_domains, users
from tests.aliases import Person, new_alias
from tests.http.api.helpers import Outbox

PASSWORD = "an attacker's password"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.alias_domains = ["example.com", "sl.example"]
    return settings


async def user_count(runtime: Runtime) -> int:
    async with runtime.db.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(users)) or 0)


async def test_register_refuses_forwarded_addresses(
    api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox, ann: Person
) -> None:
    alias = await new_alias(api, ann, "shop")
    gone = await new_alias(api, ann, "gone")
    assert (
        await api.delete(f"/api/aliases/{gone['id']}", headers=ann.headers)
    ).status_code == 200
    async with runtime.db.write() as conn:
        contact, _ = await find_or_create(
            conn,
            user_id=ann.user_id,
            alias_id=alias["id"],
            email="john@wick.test",
            name=None,
            reverse_alias_domain="example.com",
        )
        await conn.execute(
            custom_domains.insert().values(
                user_id=ann.user_id,
                domain=normalise_domain("ann.example")[0],
                ownership_token="t",
                verified=True,
                created_ms=now_ms(),
            )
        )
    users_before = await user_count(runtime)
    mailed_before = len(await outbox.all())
    for email in (
        alias["alias"],
        alias["alias"].upper(),
        gone["alias"],
        contact.reverse_alias,
        "nobody.yet@sl.example",
        "anyone@ann.example",
    ):
        response = await api.post(
            "/api/auth/register", json={"email": email, "password": PASSWORD}
        )
        assert response.status_code == 400, (email, response.text)
        assert (
            "email" in response.json()["error"]
            or email.lower() in response.json()["error"].lower()
        )
    assert await user_count(runtime) == users_before
    assert len(await outbox.all()) == mailed_before


async def test_register_still_takes_an_outside_address(
    api: httpx.AsyncClient, outbox: Outbox
) -> None:
    response = await api.post(
        "/api/auth/register", json={"email": "dave@example.org", "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    assert [m.to for m in await outbox.all()] == ["dave@example.org"]
