"""The admin access token, and what every route shares: unknown routes, wrong methods,
bodies that are not JSON, and the legacy /user/{id}/... paths."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from postern.accounts import admin_token as admin_token_module
from postern.config import Settings
from postern.serve.runtime import Runtime
from tests.apps import app_for
from tests.conftest import ADMIN_TOKEN, FAST_PASSWORDS
from tests.helpers import create_user

PASSWORD = "correct horse battery"
UNKNOWN_ID = "0123456789abcdef01234567"


def error_of(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    assert "success" not in body, body
    if code is not None:
        assert body.get("code") == code, body
    return body


@asynccontextmanager
async def http_client(runtime: Runtime, **headers: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app_for(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://postern.test", headers=headers) as client:
        yield client


@asynccontextmanager
async def started(settings: Settings) -> AsyncIterator[tuple[Runtime, str | None]]:
    runtime = Runtime.build(settings, passwords=FAST_PASSWORDS)
    created = await runtime.start()
    try:
        yield runtime, created
    finally:
        await runtime.close()


def protected_requests(user_id: str = UNKNOWN_ID) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [
        ("GET", "/users", None),
        ("POST", "/users", {"username": "mallory", "password": "secret password"}),
        ("GET", f"/users/{user_id}", None),
        ("PUT", f"/users/{user_id}", {"name": "Mallory"}),
        ("DELETE", f"/users/{user_id}", None),
        ("POST", "/authenticate", {"username": "alice", "password": PASSWORD}),
        ("GET", "/addresses", None),
        ("GET", f"/users/{user_id}/addresses", None),
        ("POST", f"/users/{user_id}/addresses", {"address": "mallory@example.com"}),
        ("GET", f"/users/{user_id}/mailboxes", None),
    ]


# Missing and wrong tokens --------------------------------------------------------------


async def test_missing_token_is_401(client: httpx.AsyncClient, anonymous: httpx.AsyncClient) -> None:
    alice = await create_user(client, "alice")
    for method, path, body in protected_requests(alice):
        response = await anonymous.request(method, path, json=body)
        error_of(response, 401)
    # Nothing was changed by them.
    users = (await client.get("/users")).json()
    assert users["total"] == 1
    assert users["results"][0]["name"] is None
    assert (await client.get(f"/users/{alice}")).status_code == 200


async def test_empty_token_is_401(anonymous: httpx.AsyncClient) -> None:
    error_of(await anonymous.get("/users", params={"accessToken": ""}), 401)
    error_of(await anonymous.get("/users", headers={"X-Access-Token": ""}), 401)


@pytest.mark.parametrize("token", ["wrong", ADMIN_TOKEN + "x", ADMIN_TOKEN.upper(), " " + ADMIN_TOKEN, ADMIN_TOKEN[:-1], "ö" * 10])
async def test_wrong_token_is_403(client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token: str) -> None:
    alice = await create_user(client, "alice")
    for method, path, body in protected_requests(alice):
        error_of(await anonymous.request(method, path, json=body, params={"accessToken": token}), 403)
    if token.isascii():
        for method, path, body in protected_requests(alice):
            error_of(await anonymous.request(method, path, json=body, headers={"X-Access-Token": token}), 403)
    assert (await client.get("/users")).json()["total"] == 1
    assert (await client.get(f"/users/{alice}")).status_code == 200


async def test_token_in_header_works(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/users", headers={"X-Access-Token": ADMIN_TOKEN})
    assert response.status_code == 200, response.text
    assert response.json()["success"] is True
    response = await anonymous.post("/users", headers={"x-access-token": ADMIN_TOKEN}, json={"username": "alice", "password": PASSWORD})
    assert response.status_code == 200, response.text


async def test_token_in_query_works(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.post("/users", params={"accessToken": ADMIN_TOKEN}, json={"username": "alice", "password": PASSWORD})
    assert response.status_code == 200, response.text
    user_id = response.json()["id"]
    response = await anonymous.get(f"/users/{user_id}", params={"accessToken": ADMIN_TOKEN})
    assert response.status_code == 200 and response.json()["username"] == "alice"
    response = await anonymous.get("/users", params={"accessToken": ADMIN_TOKEN, "query": "ali"})
    assert response.status_code == 200 and response.json()["total"] == 1


async def test_health_needs_no_token(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert isinstance(body["version"], str) and body["version"]
    # A wrong token does not matter there either.
    assert (await anonymous.get("/health", params={"accessToken": "wrong"})).status_code == 200


async def test_admin_auth_off_lets_requests_through(settings: Settings) -> None:
    open_settings = settings.model_copy(update={"admin_auth": False})
    async with started(open_settings) as (runtime, _), http_client(runtime) as anonymous:
        response = await anonymous.post("/users", json={"username": "alice", "password": PASSWORD})
        assert response.status_code == 200, response.text
        user_id = response.json()["id"]
        assert (await anonymous.get(f"/users/{user_id}")).json()["username"] == "alice"
        assert (await anonymous.get("/users")).json()["total"] == 1
        response = await anonymous.post("/authenticate", json={"username": "alice", "password": PASSWORD})
        assert response.status_code == 200 and response.json()["id"] == user_id
        # Any token, even a wrong one, is ignored.
        assert (await anonymous.get("/users", params={"accessToken": "wrong"})).status_code == 200


async def test_admin_auth_on_by_default(settings: Settings) -> None:
    assert settings.admin_auth is True
    async with started(settings) as (runtime, _), http_client(runtime) as anonymous:
        error_of(await anonymous.get("/users"), 401)


async def test_rotated_token_replaces_the_configured_one(runtime: Runtime, client: httpx.AsyncClient, anonymous: httpx.AsyncClient) -> None:
    assert (await client.get("/users")).status_code == 200
    new_token = await runtime.admin_token.rotate()
    assert new_token and new_token != ADMIN_TOKEN
    error_of(await client.get("/users"), 403)
    error_of(await anonymous.get("/users", params={"accessToken": ADMIN_TOKEN}), 403)
    assert (await anonymous.get("/users", headers={"X-Access-Token": new_token})).status_code == 200
    assert (await anonymous.get("/users", params={"accessToken": new_token})).status_code == 200
    newer = await runtime.admin_token.rotate()
    error_of(await anonymous.get("/users", params={"accessToken": new_token}), 403)
    assert (await anonymous.get("/users", params={"accessToken": newer})).status_code == 200


async def test_generated_token_and_rotation(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    generated = settings.model_copy(update={"admin_token": None})
    async with started(generated) as (first, token):
        # Created on the first start and shown once.
        assert token
        async with http_client(first) as anonymous:
            assert (await anonymous.get("/users", params={"accessToken": token})).status_code == 200
            error_of(await anonymous.get("/users", params={"accessToken": ADMIN_TOKEN}), 403)

        # A second process on the same database finds it and does not make another.
        async with started(generated) as (second, again):
            assert again is None
            async with http_client(second) as other:
                assert (await other.get("/users", params={"accessToken": token})).status_code == 200

                # Rotated by the first process (as `postern token` would do).
                rotated = await first.admin_token.rotate()
                assert rotated != token
                async with http_client(first) as anonymous:
                    error_of(await anonymous.get("/users", params={"accessToken": token}), 403)
                    assert (await anonymous.get("/users", params={"accessToken": rotated})).status_code == 200
                # The other process picks the new token up when it next looks.
                monkeypatch.setattr(admin_token_module, "RELOAD_INTERVAL_S", 0.0)
                assert (await other.get("/users", params={"accessToken": rotated})).status_code == 200
                error_of(await other.get("/users", params={"accessToken": token}), 403)

    # And a restart keeps the rotated token.
    async with started(generated) as (third, created):
        assert created is None
        async with http_client(third) as anonymous:
            assert (await anonymous.get("/users", params={"accessToken": rotated})).status_code == 200
            error_of(await anonymous.get("/users", params={"accessToken": token}), 403)


# Routes, methods and bodies ------------------------------------------------------------


@pytest.mark.parametrize("path", ["/nope", "/users/0123456789abcdef01234567/nope", "/userz", "/users/0123456789abcdef01234567/addresses/0123456789abcdef01234567/x", "/api/users"])
async def test_unknown_route_is_404(client: httpx.AsyncClient, path: str) -> None:
    error_of(await client.get(path), 404)
    error_of(await client.post(path, json={}), 404)


@pytest.mark.parametrize(
    "method,path,allowed",
    [
        ("PATCH", "/users", {"GET", "POST"}),
        ("DELETE", "/users", {"GET", "POST"}),
        ("PUT", "/users", {"GET", "POST"}),
        ("POST", f"/users/{UNKNOWN_ID}", {"GET", "PUT", "DELETE"}),
        ("POST", f"/user/{UNKNOWN_ID}", {"GET", "PUT", "DELETE"}),
        ("GET", "/authenticate", {"POST"}),
        ("DELETE", "/authenticate", {"POST"}),
        ("POST", "/health", {"GET"}),
        ("DELETE", "/addresses", {"GET"}),
        ("PATCH", f"/users/{UNKNOWN_ID}/addresses/{UNKNOWN_ID}", {"GET", "PUT", "DELETE"}),
        ("PUT", f"/users/{UNKNOWN_ID}/addresses", {"GET", "POST"}),
    ],
)
async def test_wrong_method_is_405(client: httpx.AsyncClient, method: str, path: str, allowed: set[str]) -> None:
    response = await client.request(method, path)
    error_of(response, 405)
    named = {m.strip() for m in response.headers.get("allow", "").split(",") if m.strip()}
    assert named - {"HEAD"} == allowed, response.headers


@pytest.mark.parametrize("content", [b"{not json", b"{\"username\": \"alice\",}", b"", b"\xff\xfe\x00", b"{\"username\": \"alice\""])
async def test_invalid_json_body_is_400(client: httpx.AsyncClient, content: bytes) -> None:
    alice = await create_user(client, "alice")
    main_id = (await client.get(f"/users/{alice}/addresses")).json()["results"][0]["id"]
    headers = {"Content-Type": "application/json"}
    for method, path in [
        ("POST", "/users"),
        ("PUT", f"/users/{alice}"),
        ("POST", "/authenticate"),
        ("POST", f"/users/{alice}/addresses"),
        ("PUT", f"/users/{alice}/addresses/{main_id}"),
    ]:
        response = await client.request(method, path, content=content, headers=headers)
        body = error_of(response, 400, "InputValidationError")
        assert "body" in body.get("details", {}), body
    assert (await client.get("/users")).json()["total"] == 1


@pytest.mark.parametrize("body", [[], ["alice"], "alice", 42, None, True])
async def test_json_that_is_not_an_object_is_400(client: httpx.AsyncClient, body: Any) -> None:
    alice = await create_user(client, "alice")
    for method, path in [("POST", "/users"), ("PUT", f"/users/{alice}"), ("POST", "/authenticate"), ("POST", f"/users/{alice}/addresses")]:
        error_of(await client.request(method, path, json=body), 400, "InputValidationError")


async def test_form_body_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/users", data={"username": "alice", "password": PASSWORD})
    error_of(response, 400, "InputValidationError")
    assert (await client.get("/users")).json()["total"] == 0


async def test_anonymous_invalid_json_is_refused(client: httpx.AsyncClient, anonymous: httpx.AsyncClient) -> None:
    # The body is decoded before the token is checked (WildDuck's body parser runs first
    # too), so this may be a 400 rather than a 401; either way it is refused, never served.
    response = await anonymous.post("/users", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code in (400, 401), response.text
    assert "error" in response.json() and "success" not in response.json()
    # A valid body without the token is a 401.
    error_of(await anonymous.post("/users", json={"username": "mallory", "password": PASSWORD}), 401)
    assert (await client.get("/users")).json()["total"] == 0


# Legacy /user/{id}/... paths -----------------------------------------------------------


async def test_legacy_user_paths(client: httpx.AsyncClient) -> None:
    alice = await create_user(client, "alice", name="Alice")

    response = await client.get(f"/user/{alice}")
    assert response.status_code == 200, response.text
    assert response.json() == (await client.get(f"/users/{alice}")).json()

    response = await client.get(f"/user/{alice}/addresses")
    assert response.status_code == 200
    assert response.json() == (await client.get(f"/users/{alice}/addresses")).json()

    response = await client.post(f"/user/{alice}/addresses", json={"address": "legacy@example.org"})
    assert response.status_code == 200, response.text
    legacy_id = response.json()["id"]
    assert (await client.get(f"/users/{alice}/addresses/{legacy_id}")).json()["address"] == "legacy@example.org"
    assert (await client.get(f"/user/{alice}/addresses/{legacy_id}")).json()["address"] == "legacy@example.org"

    assert (await client.put(f"/user/{alice}/addresses/{legacy_id}", json={"main": True})).status_code == 200
    assert (await client.get(f"/users/{alice}")).json()["address"] == "legacy@example.org"

    assert (await client.put(f"/user/{alice}", json={"name": "Renamed"})).status_code == 200
    assert (await client.get(f"/users/{alice}")).json()["name"] == "Renamed"

    response = await client.get(f"/user/{alice}/mailboxes")
    assert response.status_code == 200
    assert len(response.json()["results"]) == 6

    main_first = next(a["id"] for a in (await client.get(f"/users/{alice}/addresses")).json()["results"] if a["address"] == "alice@example.com")
    assert (await client.delete(f"/user/{alice}/addresses/{main_first}")).status_code == 200

    # Errors look the same as on /users.
    error_of(await client.get(f"/user/{UNKNOWN_ID}"), 404, "UserNotFound")
    error_of(await client.get("/user/not-an-id"), 400, "InputValidationError")

    assert (await client.delete(f"/user/{alice}")).status_code == 200
    error_of(await client.get(f"/users/{alice}"), 404, "UserNotFound")


async def test_legacy_paths_need_the_token(client: httpx.AsyncClient, anonymous: httpx.AsyncClient) -> None:
    alice = await create_user(client, "alice")
    error_of(await anonymous.get(f"/user/{alice}"), 401)
    error_of(await anonymous.get(f"/user/{alice}", params={"accessToken": "wrong"}), 403)
    response = await anonymous.get(f"/user/{alice}", params={"accessToken": ADMIN_TOKEN})
    assert response.status_code == 200 and response.json()["id"] == alice
