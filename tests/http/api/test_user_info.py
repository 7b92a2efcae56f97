"""GET and PATCH /api/user_info, and the public profile picture."""

from __future__ import annotations

import base64

import httpx
import pytest
from sqlalchemy import update

from postern.serve.runtime import Runtime
from postern.storage.schema import users
from tests.http.api.helpers import Outbox, auth, signed_up

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(17)
JPEG = b"\xff\xd8\xff\xe0" + bytes(20)
GIF = b"GIF89a" + bytes(20)
WEBP = b"RIFF\x10\x00\x00\x00WEBPVP8 " + bytes(8)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_user_info_has_every_field_the_apps_decode(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    key = await signed_up(api, outbox, "ava@example.org")
    response = await api.get("/api/user_info", headers=auth(key))
    assert response.status_code == 200
    assert response.json() == {
        "name": "",
        "email": "ava@example.org",
        "is_premium": False,
        "in_trial": False,
        "max_alias_free_plan": 5,
        "can_create_reverse_alias": True,
        "profile_picture_url": None,
        "trial_end_timestamp": None,
        "connected_proton_address": None,
    }
    runtime.settings.max_alias_free_plan = 10
    runtime.settings.free_reverse_alias = False
    assert (await api.get("/api/user_info", headers=auth(key))).json()["can_create_reverse_alias"] is False
    async with runtime.db.write() as conn:
        await conn.execute(update(users).values(premium=True))
    body = (await api.get("/api/user_info", headers=auth(key))).json()
    assert (body["is_premium"], body["can_create_reverse_alias"], body["max_alias_free_plan"]) == (True, True, 10)


async def test_patch_name(api: httpx.AsyncClient, outbox: Outbox) -> None:
    key = await signed_up(api, outbox, "bud@example.org")
    response = await api.patch("/api/user_info", json={"name": "  Bud Spencer "}, headers=auth(key))
    assert response.status_code == 200
    assert response.json()["name"] == "Bud Spencer"
    # Fields not sent stay; a null name clears it.
    assert (await api.patch("/api/user_info", json={}, headers=auth(key))).json()["name"] == "Bud Spencer"
    assert (await api.patch("/api/user_info", json={"name": None}, headers=auth(key))).json()["name"] == ""


@pytest.mark.parametrize(("image", "kind"), [(PNG, "image/png"), (JPEG, "image/jpeg"), (GIF, "image/gif"), (WEBP, "image/webp")])
async def test_profile_picture_is_served_publicly(api: httpx.AsyncClient, outbox: Outbox, image: bytes, kind: str) -> None:
    key = await signed_up(api, outbox, "cid@example.org")
    response = await api.patch("/api/user_info", json={"profile_picture": b64(image)}, headers=auth(key))
    assert response.status_code == 200, response.text
    url = response.json()["profile_picture_url"]
    assert url.startswith("http://127.0.0.1:8080/api/profile_picture/")
    path = url.removeprefix("http://127.0.0.1:8080")
    picture = await api.get(path)  # no key: like a CDN URL
    assert picture.status_code == 200
    assert picture.content == image
    assert picture.headers["content-type"] == kind
    assert picture.headers["x-content-type-options"] == "nosniff"
    assert (await api.get("/api/user_info", headers=auth(key))).json()["profile_picture_url"] == url


async def test_new_picture_new_url_and_removal(api: httpx.AsyncClient, outbox: Outbox) -> None:
    key = await signed_up(api, outbox, "del@example.org")
    first = (await api.patch("/api/user_info", json={"profile_picture": b64(PNG)}, headers=auth(key))).json()["profile_picture_url"]
    second = (await api.patch("/api/user_info", json={"profile_picture": "data:image/gif;base64," + b64(GIF)}, headers=auth(key))).json()["profile_picture_url"]
    assert first != second
    base = "http://127.0.0.1:8080"
    old = await api.get(first.removeprefix(base))
    assert (old.status_code, old.json()) == (404, {"error": "No such profile picture"})
    assert (await api.get(second.removeprefix(base))).content == GIF
    # The name is left alone by a picture change, and null removes the picture.
    removed = await api.patch("/api/user_info", json={"profile_picture": None}, headers=auth(key))
    assert removed.json()["profile_picture_url"] is None
    assert (await api.get(second.removeprefix(base))).status_code == 404


async def test_picture_urls_do_not_cross_users(api: httpx.AsyncClient, outbox: Outbox) -> None:
    one = await signed_up(api, outbox, "eda@example.org")
    two = await signed_up(api, outbox, "fin@example.org")
    url_one = (await api.patch("/api/user_info", json={"profile_picture": b64(PNG)}, headers=auth(one))).json()["profile_picture_url"]
    url_two = (await api.patch("/api/user_info", json={"profile_picture": b64(GIF)}, headers=auth(two))).json()["profile_picture_url"]
    *_, user_one, token_one = url_one.split("/")
    *_, user_two, token_two = url_two.split("/")
    assert (await api.get(f"/api/profile_picture/{user_one}/{token_two}")).status_code == 404
    assert (await api.get(f"/api/profile_picture/{user_two}/{token_one}")).status_code == 404
    assert (await api.get(f"/api/profile_picture/{user_one}/")).status_code == 404
    assert (await api.get(f"/api/profile_picture/nonsense/{token_one}")).status_code == 404


@pytest.mark.parametrize(
    ("picture", "error"),
    [
        ("not base64!", "profile_picture must be a base64 encoded image"),
        ("", "profile_picture must be a base64 encoded image"),
        (b64(b"<svg xmlns='http://www.w3.org/2000/svg'/>"), "profile_picture must be a PNG, JPEG, GIF or WebP image"),
        (b64(b"<html><script>alert(1)</script></html>"), "profile_picture must be a PNG, JPEG, GIF or WebP image"),
        (b64(PNG + bytes(2 * 1024 * 1024)), "profile_picture is too large (at most 2 MB)"),
        (12, "profile_picture must be a string"),
    ],
)
async def test_bad_pictures_are_refused(api: httpx.AsyncClient, outbox: Outbox, picture: object, error: str) -> None:
    key = await signed_up(api, outbox, "gil@example.org")
    response = await api.patch("/api/user_info", json={"profile_picture": picture}, headers=auth(key))
    assert (response.status_code, response.json()) == (400, {"error": error})
    assert (await api.get("/api/user_info", headers=auth(key))).json()["profile_picture_url"] is None


@pytest.mark.parametrize("body", [{"name": "x" * 257}, {"name": 5}, {"name": "a\x00"}])
async def test_bad_names_are_refused(api: httpx.AsyncClient, outbox: Outbox, body: dict) -> None:
    key = await signed_up(api, outbox, "hub@example.org")
    response = await api.patch("/api/user_info", json=body, headers=auth(key))
    assert response.status_code == 400 and response.json()["error"]
