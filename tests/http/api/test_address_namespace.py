"""Issue 14, item 1, over the HTTP doors: an import takes exactly the addresses that
making an alias by hand takes (on a shared alias domain a prefix and a random suffix,
never a reserved name, never an odd local part), and one namespace of addresses holds
for both APIs: the admin API cannot make an address that an alias, a deleted alias or
a reverse alias holds, and the user API cannot make an alias of an address the admin
API made."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from postern.accounts.addressing import normalise_domain
from postern.aliases.contacts import find_or_create
from postern.config import Settings
from postern.serve.runtime import Runtime
from postern.storage.ids import now_ms
from postern.storage.schema import aliases, custom_domains
from tests.aliases import Person, new_alias
from tests.helpers import create_user

ROLE_NAMES = [
    "postmaster",
    "abuse",
    "admin",
    "administrator",
    "hostmaster",
    "webmaster",
    "root",
    "security",
    "noc",
    "info",
    "support",
    "sales",
    "marketing",
    "no-reply",
    "noreply",
    "mailer-daemon",
    "postmaster+tag",
]
ODD = ["ädmin", "a!b", "a..b", ".a", "a b", '"a"', "ra+abcdefghijklmnop", "bounce+x"]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.alias_domains = ["example.com", "sl.example"]
    settings.max_alias_free_plan = 100
    return settings


async def import_rows(
    api: httpx.AsyncClient, who: Person, addresses: list[str]
) -> dict[str, Any]:
    text = "alias,note,enabled,mailboxes\r\n" + "".join(
        f"{a},,True,\r\n" for a in addresses
    )
    response = await api.post(
        "/api/import/aliases",
        content=text.encode(),
        headers={**who.headers, "Content-Type": "text/csv"},
    )
    assert response.status_code == 200, response.text
    return response.json()


async def alias_count(runtime: Runtime) -> int:
    async with runtime.db.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(aliases)) or 0)


async def test_import_takes_no_reserved_or_free_form_address(
    api: httpx.AsyncClient, runtime: Runtime, ann: Person
) -> None:
    wanted = (
        [f"{name}@example.com" for name in ROLE_NAMES]
        + [f"{name}@sl.example" for name in ODD]
        + ["good@example.com", "billing@sl.example"]
    )
    body = await import_rows(api, ann, wanted)
    assert body["imported"] == 0, body
    assert len(body["skipped"]) == len(wanted)
    reasons = {s["alias"]: s["reason"] for s in body["skipped"]}
    assert "reserved" in reasons["postmaster@example.com"]
    assert "prefix and a random suffix" in reasons["good@example.com"]
    assert await alias_count(runtime) == 0
    # The forms alias/options and alias/random/new make are taken.
    body = await import_rows(
        api,
        ann,
        [
            "shop.river12@example.com",
            "news.x7k2q@sl.example",
            "quick_otter42@example.com",
        ],
    )
    assert body == {"imported": 3, "skipped": []}


async def test_operator_policy_and_reserved_list(
    api: httpx.AsyncClient, runtime: Runtime, ann: Person
) -> None:
    runtime.settings.alias_import_any_local_part = True
    runtime.settings.reserved_local_parts = ["billing"]
    body = await import_rows(
        api,
        ann,
        [
            "good@example.com",
            "billing@example.com",
            "postmaster@example.com",
            "ädmin@example.com",
        ],
    )
    assert body["imported"] == 1
    assert {s["alias"] for s in body["skipped"]} == {
        "billing@example.com",
        "postmaster@example.com",
        "ädmin@example.com",
    }


async def test_import_on_ones_own_domain_takes_role_names(
    api: httpx.AsyncClient, runtime: Runtime, ann: Person
) -> None:
    async with runtime.db.write() as conn:
        await conn.execute(
            custom_domains.insert().values(
                user_id=ann.user_id,
                domain=normalise_domain("ann.example")[0],
                ownership_token="t",
                verified=True,
                created_ms=now_ms(),
            )
        )
    body = await import_rows(api, ann, ["postmaster@ann.example", "a!b@ann.example"])
    assert body["imported"] == 1
    assert [s["alias"] for s in body["skipped"]] == ["a!b@ann.example"]


async def test_admin_cannot_take_what_an_alias_holds(
    api: httpx.AsyncClient, client: httpx.AsyncClient, runtime: Runtime, ann: Person
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
    user = await create_user(client, "eve")
    for held in (
        alias["alias"],
        alias["alias"].upper(),
        gone["alias"],
        contact.reverse_alias,
    ):
        response = await client.post(f"/users/{user}/addresses", json={"address": held})
        assert response.status_code == 409, (held, response.text)
        assert response.json()["code"] == "AddressExistsError"
        response = await client.post(
            "/users",
            json={
                "username": "mallory",
                "password": "correct horse battery",
                "address": held,
            },
        )
        assert response.status_code == 409, (held, response.text)
        assert response.json()["code"] == "AddressExistsError"
    # Nothing was half written: no user mallory, eve has only her own address.
    assert (await client.get("/users", params={"query": "mallory"})).json()[
        "results"
    ] == []
    listed = (await client.get(f"/users/{user}/addresses")).json()["results"]
    assert all(
        a["address"] not in (alias["alias"], gone["alias"], contact.reverse_alias)
        for a in listed
    )


async def test_alias_cannot_take_what_the_admin_api_made(
    api: httpx.AsyncClient, client: httpx.AsyncClient, runtime: Runtime, ann: Person
) -> None:
    user = await create_user(client, "eve")
    assert (
        await client.post(
            f"/users/{user}/addresses", json={"address": "shop.river12@example.com"}
        )
    ).status_code == 200
    body = await import_rows(api, ann, ["shop.river12@example.com"])
    assert body["imported"] == 0 and "taken" in body["skipped"][0]["reason"]
    # Deleting the address frees it, for either side.
    address_id = next(
        a["id"]
        for a in (await client.get(f"/users/{user}/addresses")).json()["results"]
        if a["address"] == "shop.river12@example.com"
    )
    assert (
        await client.delete(f"/users/{user}/addresses/{address_id}")
    ).status_code == 200
    body = await import_rows(api, ann, ["shop.river12@example.com"])
    assert body == {"imported": 1, "skipped": []}
    from postern.storage.schema import address_claims

    async with runtime.db.read() as conn:
        kind = await conn.scalar(
            select(address_claims.c.kind).where(
                address_claims.c.address_key == "shop.river12@example.com"
            )
        )
    assert kind == "alias"
