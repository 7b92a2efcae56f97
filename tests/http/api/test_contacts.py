"""Contacts of an alias: list, create (with a reverse alias), delete, block."""

from __future__ import annotations

import re

import httpx
import pytest
from sqlalchemy import func, select

from postern.config import Settings
from postern.serve.runtime import Runtime
from postern.storage.schema import contacts
from tests.aliases import Person, new_alias, set_user


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.alias_domains = ["example.com"]
    settings.reverse_alias_domain = "reply.example.com"
    return settings


async def contact_count(runtime: Runtime) -> int:
    async with runtime.db.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(contacts)) or 0)


async def test_create_list_and_existed(api: httpx.AsyncClient, ann: Person) -> None:
    alias = await new_alias(api, ann, "shop")
    path = f"/api/aliases/{alias['id']}/contacts"
    response = await api.post(path, json={"contact": "First Last <First@Example.net>"}, headers=ann.headers)
    assert response.status_code == 201, response.text
    created = response.json()
    assert set(created) == {
        "id", "contact", "creation_date", "creation_timestamp", "last_email_sent_date", "last_email_sent_timestamp",
        "reverse_alias", "reverse_alias_address", "block_forward", "existed",
    }  # fmt: skip
    assert created["existed"] is False and created["block_forward"] is False
    assert created["contact"] == "first@example.net"
    assert re.fullmatch(r"ra\+[a-z]{26}@reply\.example\.com", created["reverse_alias_address"])
    assert created["reverse_alias"] == f'"First Last | first at example.net" <{created["reverse_alias_address"]}>'
    assert created["last_email_sent_date"] is None and created["last_email_sent_timestamp"] is None
    # The same contact again: 200 and existed.
    again = await api.post(path, json={"contact": "first@example.net"}, headers=ann.headers)
    assert again.status_code == 200
    assert again.json() == {**created, "existed": True}
    listed = (await api.get(path, params={"page_id": 0}, headers=ann.headers)).json()["contacts"]
    assert listed == [{k: v for k, v in created.items() if k != "existed"}]


async def test_list_pages(api: httpx.AsyncClient, ann: Person) -> None:
    alias = await new_alias(api, ann, "many")
    path = f"/api/aliases/{alias['id']}/contacts"
    for n in range(23):
        assert (await api.post(path, json={"contact": f"c{n}@example.net"}, headers=ann.headers)).status_code == 201
    first = (await api.get(path, params={"page_id": 0}, headers=ann.headers)).json()["contacts"]
    second = (await api.get(path, params={"page_id": 1}, headers=ann.headers)).json()["contacts"]
    assert len(first) == 20 and len(second) == 3
    assert first[0]["contact"] == "c22@example.net" and second[-1]["contact"] == "c0@example.net"
    assert (await api.get(path, headers=ann.headers)).status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"contact": ""},
        {"contact": "not an address"},
        {"contact": "Name <>"},
        {"contact": 12},
        {"contact": ["a@example.net"]},
        {"contact": "a\x00@example.net"},
        {"contact": "x" * 600 + "@example.net"},
        {"contact": "me@" + "x" * 300 + ".example"},
    ],
)
async def test_create_bad_input(api: httpx.AsyncClient, runtime: Runtime, ann: Person, body: dict[str, object]) -> None:
    alias = await new_alias(api, ann, "strict")
    response = await api.post(f"/api/aliases/{alias['id']}/contacts", json=body, headers=ann.headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]
    assert await contact_count(runtime) == 0


async def test_loops_are_refused(api: httpx.AsyncClient, runtime: Runtime, ann: Person) -> None:
    alias = await new_alias(api, ann, "loop")
    path = f"/api/aliases/{alias['id']}/contacts"
    assert (await api.post(path, json={"contact": alias["alias"].upper()}, headers=ann.headers)).status_code == 400
    made = (await api.post(path, json={"contact": "c@example.net"}, headers=ann.headers)).json()
    response = await api.post(path, json={"contact": made["reverse_alias_address"]}, headers=ann.headers)
    assert response.status_code == 400
    assert await contact_count(runtime) == 1


async def test_reverse_alias_needs_premium_when_configured(api: httpx.AsyncClient, runtime: Runtime, ann: Person) -> None:
    alias = await new_alias(api, ann, "paid")
    runtime.settings.free_reverse_alias = False
    path = f"/api/aliases/{alias['id']}/contacts"
    response = await api.post(path, json={"contact": "c@example.net"}, headers=ann.headers)
    assert response.status_code == 403
    assert response.json() == {"error": "Please upgrade to create a reverse-alias"}
    assert await contact_count(runtime) == 0
    await set_user(runtime, ann.user_id, premium=True)
    assert (await api.post(path, json={"contact": "c@example.net"}, headers=ann.headers)).status_code == 201


async def test_toggle_and_delete(api: httpx.AsyncClient, runtime: Runtime, ann: Person) -> None:
    alias = await new_alias(api, ann, "tog")
    made = (await api.post(f"/api/aliases/{alias['id']}/contacts", json={"contact": "c@example.net"}, headers=ann.headers)).json()
    toggle = f"/api/contacts/{made['id']}/toggle"
    assert (await api.post(toggle, headers=ann.headers)).json() == {"block_forward": True}
    listed = (await api.get(f"/api/aliases/{alias['id']}/contacts", params={"page_id": 0}, headers=ann.headers)).json()["contacts"]
    assert listed[0]["block_forward"] is True
    assert (await api.post(toggle, headers=ann.headers)).json() == {"block_forward": False}
    response = await api.delete(f"/api/contacts/{made['id']}", headers=ann.headers)
    assert response.status_code == 200 and response.json() == {"deleted": True}
    assert await contact_count(runtime) == 0
    assert (await api.delete(f"/api/contacts/{made['id']}", headers=ann.headers)).status_code == 404
    assert (await api.post(toggle, headers=ann.headers)).status_code == 404


async def test_another_users_contact_is_404(api: httpx.AsyncClient, runtime: Runtime, ann: Person, bob: Person) -> None:
    alias = await new_alias(api, bob, "bobs")
    made = (await api.post(f"/api/aliases/{alias['id']}/contacts", json={"contact": "c@example.net"}, headers=bob.headers)).json()
    for contact_id in (made["id"], 99999, 2**40):
        for method, path in (("POST", f"/api/contacts/{contact_id}/toggle"), ("DELETE", f"/api/contacts/{contact_id}")):
            response = await api.request(method, path, headers=ann.headers)
            assert response.status_code == 404, (method, path)
            assert "c@example.net" not in response.text
    listed = (await api.get(f"/api/aliases/{alias['id']}/contacts", params={"page_id": 0}, headers=bob.headers)).json()["contacts"]
    assert listed[0]["block_forward"] is False
    assert (await api.post(f"/api/contacts/{made['id']}/toggle")).status_code == 401
