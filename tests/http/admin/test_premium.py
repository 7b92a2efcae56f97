"""The premium flag of the admin API's users: set at creation or by update, shown by
GET /users/{user}, and followed by the user API's user_info.is_premium."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from postern.serve.runtime import Runtime
from tests.apps import app_for

PASSWORD = "correct horse battery"


def error_of(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    assert "success" not in body, body
    if code is not None:
        assert body.get("code") == code, body
    return body


async def create(client: httpx.AsyncClient, **fields: Any) -> str:
    response = await client.post("/users", json={"password": PASSWORD, **fields})
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


async def premium_of(client: httpx.AsyncClient, user_id: str) -> bool:
    response = await client.get(f"/users/{user_id}")
    assert response.status_code == 200, response.text
    return bool(response.json()["premium"])


async def is_premium_in_user_api(api: httpx.AsyncClient, login: str) -> bool:
    response = await api.post("/api/auth/login", json={"email": login, "password": PASSWORD, "device": "d"})
    assert response.status_code == 200, response.text
    key = response.json()["api_key"]
    info = await api.get("/api/user_info", headers={"Authentication": key})
    assert info.status_code == 200, info.text
    return bool(info.json()["is_premium"])


async def test_premium_round_trip(client: httpx.AsyncClient, runtime: Runtime) -> None:
    transport = httpx.ASGITransport(app=app_for(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://postern.test") as api:
        plain = await create(client, username="plain")
        assert await premium_of(client, plain) is False
        assert await is_premium_in_user_api(api, "plain@example.com") is False

        rich = await create(client, username="rich", premium=True)
        assert await premium_of(client, rich) is True
        assert await is_premium_in_user_api(api, "rich@example.com") is True

        response = await client.put(f"/users/{plain}", json={"premium": True})
        assert response.status_code == 200 and response.json() == {"success": True}
        assert await premium_of(client, plain) is True
        assert await is_premium_in_user_api(api, "plain@example.com") is True

        # Other updates leave it alone; false takes it away.
        assert (await client.put(f"/users/{plain}", json={"name": "Plain"})).status_code == 200
        assert await premium_of(client, plain) is True
        assert (await client.put(f"/users/{plain}", json={"premium": False})).status_code == 200
        assert await premium_of(client, plain) is False
        assert await is_premium_in_user_api(api, "plain@example.com") is False
        assert await premium_of(client, rich) is True


@pytest.mark.parametrize("value", [None, "maybe", 2, [True], {"a": 1}])
async def test_invalid_premium_values(client: httpx.AsyncClient, value: Any) -> None:
    user_id = await create(client, username="val")
    body = error_of(await client.put(f"/users/{user_id}", json={"premium": value}), 400, "InputValidationError")
    assert "premium" in body.get("details", {}), body
    assert await premium_of(client, user_id) is False
    if value is not None:
        response = await client.post("/users", json={"username": "other", "password": PASSWORD, "premium": value})
        assert "premium" in error_of(response, 400, "InputValidationError").get("details", {})


async def test_premium_needs_the_admin_token(anonymous: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    user_id = await create(client, username="tok")
    response = await anonymous.put(f"/users/{user_id}", json={"premium": True})
    assert response.status_code in (401, 403)
    assert await premium_of(client, user_id) is False
