"""GET and PATCH /api/setting, and the domains of random aliases (v2 and v1)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import update

from postern.config import Settings
from postern.serve.runtime import Runtime
from postern.storage.ids import now_ms
from postern.storage.schema import custom_domains, users
from tests.http.api.helpers import Outbox, auth, signed_up

DEFAULTS = {"notification": True, "alias_generator": "word", "random_alias_default_domain": "alias.test", "sender_format": "AT", "random_alias_suffix": "word"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.alias_domains = ["alias.test", "other.test"]
    settings.premium_alias_domains = ["vip.test"]
    return settings


async def user_id_of(runtime: Runtime, email: str) -> str:
    user = await runtime.registration.by_email(email)
    assert user is not None
    return str(user.id)


async def add_custom_domain(runtime: Runtime, user_id: str, domain: str, verified: bool = True) -> None:
    async with runtime.db.write() as conn:
        await conn.execute(custom_domains.insert().values(user_id=user_id, domain=domain, ownership_token=domain, verified=verified, created_ms=now_ms()))


async def get_setting(api: httpx.AsyncClient, key: str) -> dict[str, Any]:
    response = await api.get("/api/setting", headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()


async def patch(api: httpx.AsyncClient, key: str, body: Any) -> httpx.Response:
    return await api.patch("/api/setting", json=body, headers=auth(key))


async def test_defaults(api: httpx.AsyncClient, outbox: Outbox) -> None:
    key = await signed_up(api, outbox, "ann@example.org")
    assert await get_setting(api, key) == DEFAULTS
    assert (await api.get("/api/setting")).status_code == 401
    assert (await api.patch("/api/setting", json={}, headers=auth("nope"))).status_code == 401


async def test_patch_each_value(api: httpx.AsyncClient, outbox: Outbox) -> None:
    key = await signed_up(api, outbox, "bob@example.org")
    expected = dict(DEFAULTS)
    for name, value in [
        ("notification", False),
        ("alias_generator", "uuid"),
        ("random_alias_suffix", "random_string"),
        ("sender_format", "NAME_ONLY"),
        ("sender_format", "no_name"),  # any case
        ("random_alias_default_domain", "other.test"),
        ("random_alias_default_domain", "OTHER.test."),
    ]:
        response = await patch(api, key, {name: value})
        assert response.status_code == 200, response.text
        expected[name] = value.upper() if name == "sender_format" else value
        if name == "random_alias_default_domain":
            expected[name] = "other.test"
        assert response.json() == expected
        assert await get_setting(api, key) == expected
    # Several at once; null resets the default domain.
    response = await patch(api, key, {"alias_generator": "word", "notification": True, "random_alias_default_domain": None})
    assert response.status_code == 200
    assert response.json() == {**expected, "alias_generator": "word", "notification": True, "random_alias_default_domain": "alias.test"}
    assert (await patch(api, key, {})).status_code == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"alias_generator": "words"}, "alias_generator must be one of word, uuid"),
        ({"alias_generator": None}, "alias_generator"),
        ({"random_alias_suffix": "digits"}, "random_alias_suffix must be one of word, random_string"),
        ({"sender_format": "VIA"}, "sender_format must be one of AT, A, NAME_ONLY, AT_ONLY, NO_NAME"),
        ({"sender_format": 1}, "sender_format"),
        ({"notification": "yes"}, "notification must be true or false"),
        ({"notification": 1}, "notification must be true or false"),
        ({"notification": None}, "notification"),
        ({"random_alias_default_domain": "elsewhere.test"}, "random_alias_default_domain must be one of"),
        ({"random_alias_default_domain": "vip.test"}, "random_alias_default_domain must be one of"),  # premium only
        ({"random_alias_default_domain": "bad domain"}, "random_alias_default_domain must be one of"),
        ({"random_alias_default_domain": ["alias.test"]}, "random_alias_default_domain must be one of"),
        # One bad value: nothing changes.
        ({"alias_generator": "uuid", "sender_format": "bad"}, "sender_format"),
        ({"alias_generator": "uuid", "random_alias_default_domain": "nope.test"}, "random_alias_default_domain"),
    ],
)
async def test_invalid_values(api: httpx.AsyncClient, outbox: Outbox, body: dict[str, Any], message: str) -> None:
    key = await signed_up(api, outbox, "cat@example.org")
    response = await patch(api, key, body)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]
    assert await get_setting(api, key) == DEFAULTS


async def test_invalid_bodies(api: httpx.AsyncClient, outbox: Outbox) -> None:
    key = await signed_up(api, outbox, "dot@example.org")
    for content in (b"[]", b"not json", b'"text"'):
        response = await api.patch("/api/setting", content=content, headers={**auth(key), "Content-Type": "application/json"})
        assert response.status_code == 400, response.text
        assert response.json()["error"]


async def test_domains(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    key = await signed_up(api, outbox, "eli@example.org")
    other = await signed_up(api, outbox, "fox@example.org")
    user_id = await user_id_of(runtime, "eli@example.org")
    await add_custom_domain(runtime, user_id, "eli.test")
    await add_custom_domain(runtime, user_id, "unverified.test", verified=False)
    await add_custom_domain(runtime, await user_id_of(runtime, "fox@example.org"), "fox.test")
    response = await api.get("/api/v2/setting/domains", headers=auth(key))
    assert response.status_code == 200
    assert response.json() == [
        {"domain": "eli.test", "is_custom": True},
        {"domain": "alias.test", "is_custom": False},
        {"domain": "other.test", "is_custom": False},
    ]
    v1 = await api.get("/api/setting/domains", headers=auth(key))
    assert v1.status_code == 200
    assert v1.json() == [[True, "alias.test"], [True, "other.test"], [False, "eli.test"]]
    # A custom domain may be the default; another user's may not.
    assert (await patch(api, key, {"random_alias_default_domain": "eli.test"})).json()["random_alias_default_domain"] == "eli.test"
    assert (await patch(api, other, {"random_alias_default_domain": "eli.test"})).status_code == 400
    assert (await get_setting(api, other))["random_alias_default_domain"] == "alias.test"
    assert (await api.get("/api/v2/setting/domains")).status_code == 401


async def test_premium_domains_and_a_default_that_is_no_longer_usable(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    key = await signed_up(api, outbox, "gus@example.org")
    user_id = await user_id_of(runtime, "gus@example.org")
    async with runtime.db.write() as conn:
        await conn.execute(update(users).where(users.c.id == user_id).values(premium=True))
    domains = (await api.get("/api/v2/setting/domains", headers=auth(key))).json()
    assert {"domain": "vip.test", "is_custom": False} in domains
    assert (await patch(api, key, {"random_alias_default_domain": "vip.test"})).json()["random_alias_default_domain"] == "vip.test"
    # Premium ends: the default falls back to the first domain.
    async with runtime.db.write() as conn:
        await conn.execute(update(users).where(users.c.id == user_id).values(premium=False))
    assert (await get_setting(api, key))["random_alias_default_domain"] == "alias.test"
