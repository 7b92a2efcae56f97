"""/users over HTTP: create, list (search, tags, cursors), read, update and delete."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import func, select

from postern.serve.runtime import Runtime
from postern.storage.schema import (
    addresses,
    blobs,
    folders,
    messages,
    threads,
    user_tags,
)
from tests.helpers import create_user, folder_id, make_message, upload

PASSWORD = "correct horse battery"
UNKNOWN_ID = "0123456789abcdef01234567"
MALFORMED_IDS = ["not-an-id", "0123456789ABCDEF01234567", "0123456789abcdef0123456", "0123456789abcdef012345678", "zz23456789abcdef01234567"]
SPEC_LIST_FIELDS = {"id", "username", "name", "address", "tags", "encryptMessages", "encryptForwarded", "quota", "hasPasswordSet", "activated", "disabled"}
SPEC_USER_FIELDS = {
    "success", "id", "username", "name", "address", "retention", "enabled2fa", "encryptMessages", "encryptForwarded",
    "pubKey", "keyInfo", "limits", "tags", "hasPasswordSet", "activated", "disabled",
}
PUB_KEY = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQENBFuvuyQBCAC1\n=abcd\n-----END PGP PUBLIC KEY BLOCK-----\n"


def error_of(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert an error answer: the status, ``{"error": "..."}`` and the code when given."""
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    assert "success" not in body, body
    if code is not None:
        assert body.get("code") == code, body
    return body


async def get_user(client: httpx.AsyncClient, user_id: str) -> dict[str, Any]:
    response = await client.get(f"/users/{user_id}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    return body


async def list_users(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/users", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    return body


async def total_users(client: httpx.AsyncClient) -> int:
    return (await list_users(client))["total"]


async def authenticate(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post("/authenticate", json={"username": username, "password": password})


async def post_user(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    body.setdefault("password", PASSWORD)
    return await client.post("/users", json=body)


# Create ------------------------------------------------------------------------------


async def test_create_minimal_user(client: httpx.AsyncClient, settings: Any) -> None:
    response = await post_user(client, username="alice")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    assert set(body) == {"success", "id"}
    assert len(body["id"]) == 24 and all(c in "0123456789abcdef" for c in body["id"])

    user = await get_user(client, body["id"])
    assert user["id"] == body["id"]
    assert user["username"] == "alice"
    assert user["address"] == "alice@example.com"  # generated from username@domain
    assert user["name"] is None
    assert user["hasPasswordSet"] is True
    assert user["activated"] is True
    assert user["disabled"] is False
    assert user["retention"] is False
    assert user["enabled2fa"] == []
    assert user["encryptMessages"] is False
    assert user["encryptForwarded"] is False
    assert user["pubKey"] == ""
    assert user["keyInfo"] is False
    assert user["tags"] == []
    assert user["limits"] == {
        "quota": {"allowed": settings.default_quota, "used": 0},
        "recipients": {"allowed": settings.default_recipients, "used": 0, "ttl": False},
        "forwards": {"allowed": settings.default_forwards, "used": 0, "ttl": False},
    }
    assert SPEC_USER_FIELDS <= set(user)


@pytest.mark.parametrize(
    "username",
    ["a", "alice", "bob.smith", "bob_smith", "bob-smith", "user01", "0day", "x" * 128, "a.b-c_d9"],
)
async def test_valid_usernames(client: httpx.AsyncClient, username: str) -> None:
    # emptyAddress: a 128 character username would not make a valid generated address.
    response = await post_user(client, username=username, emptyAddress=True)
    assert response.status_code == 200, response.text
    user = await get_user(client, response.json()["id"])
    assert user["username"] == username
    assert (await authenticate(client, username, PASSWORD)).status_code == 200


@pytest.mark.parametrize(
    "username",
    ["al ice", "al!ce", "alice$", "ali/ce", "ali:ce", "ali%ce", "ålice", "алиса", ".alice", "alice.", "-alice", "alice-", "   ", "ali\u0000ce", "ali\nce"],
)
async def test_usernames_with_invalid_characters(client: httpx.AsyncClient, username: str) -> None:
    response = await post_user(client, username=username)
    body = error_of(response, 400, "InputValidationError")
    assert "username" in body.get("details", {}), body
    assert await total_users(client) == 0


@pytest.mark.parametrize("username", ["", "x" * 129, "a" * 1000])
async def test_usernames_of_invalid_length(client: httpx.AsyncClient, username: str) -> None:
    body = error_of(await post_user(client, username=username), 400, "InputValidationError")
    assert "username" in body.get("details", {}), body
    assert await total_users(client) == 0


@pytest.mark.parametrize("body", [{"password": PASSWORD}, {"username": 42, "password": PASSWORD}, {"username": None, "password": PASSWORD}, {"username": ["alice"], "password": PASSWORD}])
async def test_username_missing_or_not_a_string(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    response = await client.post("/users", json=body)
    assert "username" in error_of(response, 400, "InputValidationError").get("details", {})
    assert await total_users(client) == 0


async def test_email_form_username(client: httpx.AsyncClient) -> None:
    response = await post_user(client, username="bob@example.org")
    assert response.status_code == 200, response.text
    user = await get_user(client, response.json()["id"])
    assert user["username"] == "bob@example.org"
    # No address given: the username itself is the address.
    assert user["address"] == "bob@example.org"
    assert (await authenticate(client, "bob@example.org", PASSWORD)).status_code == 200


async def test_email_form_username_with_another_address(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "carol@example.org", address="carol.main@example.com")
    user = await get_user(client, user_id)
    assert user["username"] == "carol@example.org"
    assert user["address"] == "carol.main@example.com"


@pytest.mark.parametrize("username", ["bob@", "@example.org", "bob@@example.org", "bob@exa mple.org", "bob@-example.org", "b ob@example.org"])
async def test_invalid_email_form_usernames(client: httpx.AsyncClient, username: str) -> None:
    error_of(await post_user(client, username=username), 400, "InputValidationError")
    assert await total_users(client) == 0


async def test_password_false_creates_user_without_password(client: httpx.AsyncClient) -> None:
    response = await post_user(client, username="nopass", password=False)
    assert response.status_code == 200, response.text
    user_id = response.json()["id"]
    assert (await get_user(client, user_id))["hasPasswordSet"] is False
    listed = await list_users(client, query="nopass")
    assert listed["results"][0]["hasPasswordSet"] is False


@pytest.mark.parametrize("password", [None, True, "", 12345, "x" * 257])
async def test_invalid_passwords(client: httpx.AsyncClient, password: Any) -> None:
    response = await client.post("/users", json={"username": "alice", "password": password})
    assert "password" in error_of(response, 400, "InputValidationError").get("details", {})
    assert await total_users(client) == 0


async def test_missing_password(client: httpx.AsyncClient) -> None:
    response = await client.post("/users", json={"username": "alice"})
    assert "password" in error_of(response, 400, "InputValidationError").get("details", {})
    assert await total_users(client) == 0


async def test_create_with_given_address_is_normalised(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "alice", address="Alice.Smith@Example.COM")
    assert (await get_user(client, user_id))["address"] == "alice.smith@example.com"
    listed = (await client.get(f"/users/{user_id}/addresses")).json()["results"]
    assert [(a["address"], a["main"]) for a in listed] == [("alice.smith@example.com", True)]


async def test_create_with_idn_address(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "andris", address="андрис@уайлддак.орг")
    assert (await get_user(client, user_id))["address"] == "андрис@уайлддак.орг"
    # The same address in its punycode form belongs to someone already.
    response = await post_user(client, username="other", address="андрис@xn--80aalaxjd5d.xn--c1avg")
    error_of(response, 409, "AddressExistsError")
    assert await total_users(client) == 1


async def test_create_with_invalid_address(client: httpx.AsyncClient) -> None:
    for address in ["not-an-address", "two@at@example.com", "spa ce@example.com", "@example.com", "user@", "x" * 65 + "@example.com"]:
        body = error_of(await post_user(client, username="alice", address=address), 400, "InputValidationError")
        assert "address" in body.get("details", {}), (address, body)
    assert await total_users(client) == 0


async def test_generated_address(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "Dave")
    user = await get_user(client, user_id)
    assert user["address"] == "dave@example.com"
    results = (await client.get(f"/users/{user_id}/addresses")).json()["results"]
    assert len(results) == 1
    assert results[0]["address"] == "dave@example.com"
    assert results[0]["main"] is True


async def test_empty_address(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "erin", emptyAddress=True)
    user = await get_user(client, user_id)
    assert user["address"] is None
    response = await client.get(f"/users/{user_id}/addresses")
    assert response.status_code == 200
    assert response.json() == {"success": True, "results": []}
    # The address it would have been given is free.
    other = await create_user(client, "frank", address="erin@example.com")
    assert (await get_user(client, other))["address"] == "erin@example.com"
    assert (await authenticate(client, "erin", PASSWORD)).status_code == 200


async def test_create_with_every_field_and_get_returns_them(client: httpx.AsyncClient) -> None:
    user_id = await create_user(
        client,
        "grace",
        address="grace@example.org",
        name="Grace Hopper",
        quota=1024 * 1024,
        retention=86_400_000,
        language="et",
        recipients=100,
        forwards=50,
        tags=["red", "green"],
        pubKey=PUB_KEY,
        encryptMessages=True,
        encryptForwarded=True,
        sess="session-1",
        ip="192.168.10.10",
    )
    user = await get_user(client, user_id)
    assert user["username"] == "grace"
    assert user["name"] == "Grace Hopper"
    assert user["address"] == "grace@example.org"
    assert user["retention"] == 86_400_000
    assert user["language"] == "et"
    assert user["pubKey"] == PUB_KEY
    assert user["encryptMessages"] is True
    assert user["encryptForwarded"] is True
    assert sorted(user["tags"]) == ["green", "red"]
    assert user["limits"]["quota"] == {"allowed": 1024 * 1024, "used": 0}
    assert user["limits"]["recipients"] == {"allowed": 100, "used": 0, "ttl": False}
    assert user["limits"]["forwards"] == {"allowed": 50, "used": 0, "ttl": False}

    item = (await list_users(client, query="grace"))["results"][0]
    assert SPEC_LIST_FIELDS <= set(item)
    assert item["id"] == user_id
    assert item["name"] == "Grace Hopper"
    assert item["address"] == "grace@example.org"
    assert item["encryptMessages"] is True and item["encryptForwarded"] is True
    assert item["quota"] == {"allowed": 1024 * 1024, "used": 0}
    assert sorted(item["tags"]) == ["green", "red"]


async def test_retention_applies_to_new_folders(client: httpx.AsyncClient) -> None:
    day = 86_400_000
    user_id = await create_user(client, "keeper", retention=90 * day)
    folders_by_path = {m["path"]: m for m in (await client.get(f"/users/{user_id}/mailboxes")).json()["results"]}
    assert folders_by_path["INBOX"]["retention"] == 90 * day
    # Trash and Junk are capped at 30 days.
    assert folders_by_path["Trash"]["retention"] == 30 * day
    assert folders_by_path["Junk"]["retention"] == 30 * day


async def test_tags_as_comma_string(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "henry", tags="red, green ,blue,,")
    assert sorted((await get_user(client, user_id))["tags"]) == ["blue", "green", "red"]


@pytest.mark.parametrize(
    "field,value",
    [("quota", -1), ("quota", "lots"), ("quota", 1.5), ("quota", 2**70), ("quota", True), ("quota", False), ("recipients", True), ("retention", -5), ("retention", True), ("recipients", -1), ("forwards", "x"),
     ("encryptMessages", "maybe"), ("tags", 5), ("tags", ["x" * 129]), ("name", "n" * 257), ("language", "x" * 17), ("emptyAddress", "nope")],
)
async def test_create_rejects_invalid_fields(client: httpx.AsyncClient, field: str, value: Any) -> None:
    body = error_of(await post_user(client, username="ivan", **{field: value}), 400, "InputValidationError")
    assert any(key.split(".")[0] == field for key in body.get("details", {})), body
    assert await total_users(client) == 0


async def test_new_user_gets_default_folders(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "judy")
    response = await client.get(f"/users/{user_id}/mailboxes")
    assert response.status_code == 200
    results = response.json()["results"]
    assert sorted((m["path"], m["specialUse"]) for m in results) == sorted(
        [
            ("INBOX", None),
            ("Drafts", "\\Drafts"),
            ("Sent Mail", "\\Sent"),
            ("Junk", "\\Junk"),
            ("Trash", "\\Trash"),
            ("Archive", "\\Archive"),
        ]
    )
    assert len({m["id"] for m in results}) == 6


async def test_duplicate_username_is_409_case_insensitive(client: httpx.AsyncClient) -> None:
    first = await create_user(client, "alice")
    for username in ["alice", "ALICE", "Alice"]:
        body = error_of(await post_user(client, username=username, address=f"other-{username}@example.org"), 409, "UserExistsError")
        assert body["error"]
    assert await total_users(client) == 1
    assert (await list_users(client))["results"][0]["id"] == first
    # Nothing of the failed attempts: the alternative addresses are free.
    search = (await client.get("/addresses", params={"query": "other-"})).json()
    assert search["total"] == 0


async def test_duplicate_address_is_409_and_nothing_half_written(client: httpx.AsyncClient, runtime: Runtime) -> None:
    await create_user(client, "alice", address="shared@example.com")
    response = await post_user(client, username="bob", address="Shared@Example.COM", tags=["t"], name="Bob")
    error_of(response, 409, "AddressExistsError")
    assert await total_users(client) == 1
    assert (await list_users(client, query="bob"))["total"] == 0
    assert (await list_users(client, tags="t"))["total"] == 0
    assert (await client.get("/addresses")).json()["total"] == 1
    error_of(await authenticate(client, "bob", PASSWORD), 403, "AuthFailed")
    async with runtime.db.read() as conn:
        assert await conn.scalar(select(func.count()).select_from(folders)) == 6  # alice's only
        assert await conn.scalar(select(func.count()).select_from(user_tags)) == 0
    # The username is still free.
    await create_user(client, "bob", address="bob@example.com")
    assert await total_users(client) == 2


async def test_generated_address_that_is_taken_is_409(client: httpx.AsyncClient) -> None:
    await create_user(client, "alice", address="bob@example.com")
    error_of(await post_user(client, username="bob"), 409, "AddressExistsError")
    assert await total_users(client) == 1
    # With an address of its own it works.
    await create_user(client, "bob", address="bobby@example.com")
    assert await total_users(client) == 2


async def test_create_ignores_unknown_fields(client: httpx.AsyncClient) -> None:
    response = await post_user(client, username="kim", somethingElse=True)
    assert response.status_code == 200, response.text


# List ------------------------------------------------------------------------------


async def test_list_empty(client: httpx.AsyncClient) -> None:
    body = await list_users(client)
    assert body == {"success": True, "query": "", "total": 0, "page": 1, "previousCursor": False, "nextCursor": False, "results": []}


async def test_list_query_partial_match(client: httpx.AsyncClient) -> None:
    alice = await create_user(client, "alice")
    alicia = await create_user(client, "alicia", address="ally@example.org")
    bob = await create_user(client, "bob", address="bob@wonder.example.net")
    await create_user(client, "under_score", address="us@example.com")

    body = await list_users(client, query="ali")
    assert body["query"] == "ali"
    assert body["total"] == 2
    assert sorted(r["id"] for r in body["results"]) == sorted([alice, alicia])

    assert {r["id"] for r in (await list_users(client, query="ALI"))["results"]} == {alice, alicia}
    # The address counts as well as the username.
    assert [r["id"] for r in (await list_users(client, query="wonder"))["results"]] == [bob]
    assert [r["id"] for r in (await list_users(client, query="ally@"))["results"]] == [alicia]
    # LIKE wildcards are matched literally.
    assert [r["username"] for r in (await list_users(client, query="_"))["results"]] == ["under_score"]
    assert (await list_users(client, query="%"))["total"] == 0
    assert (await list_users(client, query="nobody"))["results"] == []
    andris = await create_user(client, "andris", address="андрис@уайлддак.орг")
    for query in ["уайлддак", "УАЙЛДДАК", "Андрис@"]:
        assert [r["id"] for r in (await list_users(client, query=query))["results"]] == [andris], query


async def test_list_tags_any_and_required(client: httpx.AsyncClient) -> None:
    red = await create_user(client, "red", tags=["red"])
    green = await create_user(client, "green", tags="green")
    both = await create_user(client, "both", tags=["red", "green", "blue"])
    await create_user(client, "none")

    def ids(body: dict[str, Any]) -> set[str]:
        assert body["total"] == len(body["results"])
        return {r["id"] for r in body["results"]}

    assert ids(await list_users(client, tags="red,green")) == {red, green, both}
    assert ids(await list_users(client, tags="red")) == {red, both}
    assert ids(await list_users(client, tags="RED")) == {red, both}
    assert ids(await list_users(client, tags="purple")) == set()
    assert ids(await list_users(client, requiredTags="red,green")) == {both}
    assert ids(await list_users(client, requiredTags="red")) == {red, both}
    assert ids(await list_users(client, requiredTags="red,purple")) == set()
    assert ids(await list_users(client, tags="green", requiredTags="red")) == {both}
    assert ids(await list_users(client, tags="red", query="bo")) == {both}
    assert ids(await list_users(client, tags="")) == {red, green, both} | ids(await list_users(client, query="none"))


async def test_list_limit(client: httpx.AsyncClient) -> None:
    for i in range(5):
        await create_user(client, f"user{i}")
    body = await list_users(client, limit=2)
    assert body["total"] == 5
    assert len(body["results"]) == 2
    assert body["nextCursor"] is not False
    body = await list_users(client, limit=250)
    assert len(body["results"]) == 5
    assert body["nextCursor"] is False and body["previousCursor"] is False


@pytest.mark.parametrize("limit", ["0", "251", "-1", "abc", "1.5"])
async def test_list_invalid_limit(client: httpx.AsyncClient, limit: str) -> None:
    body = error_of(await client.get("/users", params={"limit": limit}), 400, "InputValidationError")
    assert "limit" in body.get("details", {}), body


@pytest.mark.parametrize("page", ["0", "-1", "x"])
async def test_list_invalid_page(client: httpx.AsyncClient, page: str) -> None:
    error_of(await client.get("/users", params={"page": page}), 400, "InputValidationError")


async def test_list_page_is_echoed(client: httpx.AsyncClient) -> None:
    await create_user(client, "alice")
    assert (await list_users(client, page=3))["page"] == 3
    assert (await list_users(client))["page"] == 1


async def test_cursor_walk_forward_and_back(client: httpx.AsyncClient) -> None:
    ids = {}
    for name in ["gina", "alma", "fred", "carl", "erik", "bert", "dora"]:
        ids[name] = await create_user(client, name)
    expected = sorted(ids)  # listed by username

    pages: list[dict[str, Any]] = []
    body = await list_users(client, limit=3)
    pages.append(body)
    assert body["previousCursor"] is False
    while body["nextCursor"] is not False:
        assert len(pages) < 10, "the cursor walk does not end"
        body = await list_users(client, limit=3, next=body["nextCursor"], page=len(pages) + 1)
        pages.append(body)
        assert body["page"] == len(pages)

    assert len(pages) == 3
    assert [len(p["results"]) for p in pages] == [3, 3, 1]
    assert all(p["total"] == 7 for p in pages)
    walked = [r["username"] for p in pages for r in p["results"]]
    assert walked == expected  # every user exactly once, in order
    assert [r["id"] for p in pages for r in p["results"]] == [ids[n] for n in expected]
    assert pages[-1]["nextCursor"] is False
    assert pages[1]["previousCursor"] is not False and pages[2]["previousCursor"] is not False

    # Back from the last page: the second page again.
    back = await list_users(client, limit=3, previous=pages[2]["previousCursor"], page=2)
    assert [r["id"] for r in back["results"]] == [r["id"] for r in pages[1]["results"]]
    assert back["nextCursor"] is not False and back["previousCursor"] is not False
    assert back["total"] == 7
    # And back again: the first page, with nothing before it.
    first = await list_users(client, limit=3, previous=back["previousCursor"], page=1)
    assert [r["id"] for r in first["results"]] == [r["id"] for r in pages[0]["results"]]
    assert first["previousCursor"] is False
    assert first["nextCursor"] is not False
    # Forward again from a page reached backwards.
    again = await list_users(client, limit=3, next=back["nextCursor"])
    assert [r["id"] for r in again["results"]] == [r["id"] for r in pages[2]["results"]]
    assert again["nextCursor"] is False


async def test_cursor_walk_with_filter(client: httpx.AsyncClient) -> None:
    tagged = set()
    for i in range(9):
        user_id = await create_user(client, f"member{i}", tags=["club"] if i % 2 == 0 else ["other"])
        if i % 2 == 0:
            tagged.add(user_id)
    seen: list[str] = []
    body = await list_users(client, tags="club", limit=2)
    seen += [r["id"] for r in body["results"]]
    while body["nextCursor"] is not False:
        assert len(seen) <= 5
        body = await list_users(client, tags="club", limit=2, next=body["nextCursor"])
        assert body["total"] == 5
        seen += [r["id"] for r in body["results"]]
    assert len(seen) == 5 and set(seen) == tagged


async def test_cursor_walk_with_exact_multiple_of_limit(client: httpx.AsyncClient) -> None:
    for i in range(6):
        await create_user(client, f"even{i}")
    first = await list_users(client, limit=3)
    second = await list_users(client, limit=3, next=first["nextCursor"])
    assert len(second["results"]) == 3
    assert second["nextCursor"] is False
    assert {r["id"] for r in first["results"]}.isdisjoint({r["id"] for r in second["results"]})


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


@pytest.mark.parametrize("param", ["next", "previous"])
@pytest.mark.parametrize("cursor", ["not a cursor!", "%%%", "e30", _cursor([1]), _cursor(["a", "b"]), _cursor({"k": "v"}), _cursor([True]), _cursor(None), "x" * 600])
async def test_bad_cursor_is_400(client: httpx.AsyncClient, param: str, cursor: str) -> None:
    await create_user(client, "alice")
    body = error_of(await client.get("/users", params={param: cursor}), 400, "InputValidationError")
    assert param in body.get("details", {}), body


async def test_next_and_previous_together_is_400(client: httpx.AsyncClient) -> None:
    for i in range(3):
        await create_user(client, f"user{i}")
    page = await list_users(client, limit=1)
    error_of(await client.get("/users", params={"next": page["nextCursor"], "previous": page["nextCursor"]}), 400, "InputValidationError")


# Get ----------------------------------------------------------------------------------


async def test_get_unknown_user_is_404(client: httpx.AsyncClient) -> None:
    for method in ("GET", "DELETE"):
        error_of(await client.request(method, f"/users/{UNKNOWN_ID}"), 404, "UserNotFound")
    error_of(await client.put(f"/users/{UNKNOWN_ID}", json={"name": "x"}), 404, "UserNotFound")
    error_of(await client.put(f"/users/{UNKNOWN_ID}", json={}), 404, "UserNotFound")
    error_of(await client.put(f"/users/{UNKNOWN_ID}", json={"password": "new password", "existingPassword": "x"}), 404, "UserNotFound")
    error_of(await client.get(f"/users/{UNKNOWN_ID}/addresses"), 404, "UserNotFound")
    error_of(await client.post(f"/users/{UNKNOWN_ID}/addresses", json={"address": "new@example.com"}), 404, "UserNotFound")
    error_of(await client.get(f"/users/{UNKNOWN_ID}/mailboxes"), 404, "UserNotFound")
    # Nothing was created on the way.
    assert (await client.get("/addresses")).json()["total"] == 0


@pytest.mark.parametrize("bad_id", MALFORMED_IDS)
async def test_malformed_user_id_is_400(client: httpx.AsyncClient, bad_id: str) -> None:
    await create_user(client, "alice")
    error_of(await client.get(f"/users/{bad_id}"), 400, "InputValidationError")
    error_of(await client.put(f"/users/{bad_id}", json={"name": "x"}), 400, "InputValidationError")
    error_of(await client.delete(f"/users/{bad_id}"), 400, "InputValidationError")
    error_of(await client.get(f"/users/{bad_id}/addresses"), 400, "InputValidationError")
    assert await total_users(client) == 1


# Update -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field,value,check",
    [
        ("name", "New Name", lambda u: u["name"] == "New Name"),
        ("name", None, lambda u: u["name"] is None),
        ("language", "fi", lambda u: u["language"] == "fi"),
        ("quota", 2048, lambda u: u["limits"]["quota"]["allowed"] == 2048),
        ("quota", 0, lambda u: u["limits"]["quota"]["allowed"] == 0),
        ("retention", 3_600_000, lambda u: u["retention"] == 3_600_000),
        ("retention", False, lambda u: u["retention"] is False),
        ("retention", 0, lambda u: u["retention"] is False),
        ("recipients", 7, lambda u: u["limits"]["recipients"]["allowed"] == 7),
        ("forwards", 9, lambda u: u["limits"]["forwards"]["allowed"] == 9),
        ("pubKey", PUB_KEY, lambda u: u["pubKey"] == PUB_KEY),
        ("pubKey", "", lambda u: u["pubKey"] == ""),
        ("encryptMessages", True, lambda u: u["encryptMessages"] is True),
        ("encryptForwarded", True, lambda u: u["encryptForwarded"] is True),
        ("disabled", True, lambda u: u["disabled"] is True),
        ("tags", ["new", "tags"], lambda u: sorted(u["tags"]) == ["new", "tags"]),
        ("tags", "one,two", lambda u: sorted(u["tags"]) == ["one", "two"]),
        ("tags", [], lambda u: u["tags"] == []),
    ],
)
async def test_update_each_field(client: httpx.AsyncClient, field: str, value: Any, check: Any) -> None:
    user_id = await create_user(client, "alice", name="Alice", quota=4096, retention=60_000, language="en", recipients=3, forwards=4, tags=["old"], pubKey="old key")
    before = await get_user(client, user_id)
    response = await client.put(f"/users/{user_id}", json={field: value})
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    after = await get_user(client, user_id)
    assert check(after), after
    # Only that field changed.
    touched = {
        "name": ["name"], "language": ["language"], "quota": ["limits"], "retention": ["retention"], "recipients": ["limits"],
        "forwards": ["limits"], "pubKey": ["pubKey"], "encryptMessages": ["encryptMessages"], "encryptForwarded": ["encryptForwarded"],
        "disabled": ["disabled"], "tags": ["tags"],
    }[field]
    for key in set(before) - set(touched):
        assert before[key] == after[key], key


async def test_update_tags_are_replaced_and_filterable(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "alice", tags=["red", "green"])
    assert (await client.put(f"/users/{user_id}", json={"tags": ["blue"]})).status_code == 200
    assert (await get_user(client, user_id))["tags"] == ["blue"]
    assert (await list_users(client, tags="red"))["total"] == 0
    assert (await list_users(client, tags="blue"))["total"] == 1


async def test_update_password_then_authenticate(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "alice")
    response = await client.put(f"/users/{user_id}", json={"password": "a brand new secret"})
    assert response.status_code == 200 and response.json() == {"success": True}
    ok = await authenticate(client, "alice", "a brand new secret")
    assert ok.status_code == 200 and ok.json()["id"] == user_id
    error_of(await authenticate(client, "alice", PASSWORD), 403, "AuthFailed")


async def test_update_password_with_correct_existing_password(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "alice")
    response = await client.put(f"/users/{user_id}", json={"password": "second secret", "existingPassword": PASSWORD, "name": "Al"})
    assert response.status_code == 200, response.text
    assert (await authenticate(client, "alice", "second secret")).status_code == 200
    assert (await get_user(client, user_id))["name"] == "Al"


async def test_wrong_existing_password_is_403_and_changes_nothing(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "alice", name="Alice", quota=1000)
    before = await get_user(client, user_id)
    response = await client.put(
        f"/users/{user_id}",
        json={"password": "stolen secret", "existingPassword": "not the password", "name": "Mallory", "quota": 5, "tags": ["x"], "disabled": True},
    )
    error_of(response, 403, "AuthFailed")
    assert await get_user(client, user_id) == before
    assert (await authenticate(client, "alice", PASSWORD)).status_code == 200
    error_of(await authenticate(client, "alice", "stolen secret"), 403, "AuthFailed")


async def test_existing_password_of_user_without_password_is_403(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "alice", password=False)
    error_of(await client.put(f"/users/{user_id}", json={"password": "mine now", "existingPassword": "anything"}), 403, "AuthFailed")
    assert (await get_user(client, user_id))["hasPasswordSet"] is False


async def test_update_password_false_removes_it(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "alice")
    assert (await client.put(f"/users/{user_id}", json={"password": False})).status_code == 200
    assert (await get_user(client, user_id))["hasPasswordSet"] is False
    error_of(await authenticate(client, "alice", PASSWORD), 403, "AuthFailed")
    # And a password can be set again.
    assert (await client.put(f"/users/{user_id}", json={"password": "back again"})).status_code == 200
    assert (await get_user(client, user_id))["hasPasswordSet"] is True
    assert (await authenticate(client, "alice", "back again")).status_code == 200


@pytest.mark.parametrize("field", ["quota", "recipients", "forwards", "encryptMessages", "encryptForwarded", "disabled"])
async def test_update_null_is_400(client: httpx.AsyncClient, field: str) -> None:
    user_id = await create_user(client, "alice", quota=1234)
    before = await get_user(client, user_id)
    body = error_of(await client.put(f"/users/{user_id}", json={field: None}), 400, "InputValidationError")
    assert field in body.get("details", {}), body
    assert await get_user(client, user_id) == before


@pytest.mark.parametrize(
    "body",
    [{"quota": -1}, {"quota": "big"}, {"quota": 2**70}, {"quota": False}, {"forwards": True}, {"retention": -1}, {"retention": True}, {"password": ""}, {"password": True},
     {"name": "n" * 257}, {"tags": 3}, {"disabled": "sure"}],
)
async def test_update_invalid_values_are_400(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    user_id = await create_user(client, "alice")
    before = await get_user(client, user_id)
    error_of(await client.put(f"/users/{user_id}", json=body), 400, "InputValidationError")
    assert await get_user(client, user_id) == before
    assert (await authenticate(client, "alice", PASSWORD)).status_code == 200


async def test_update_empty_body_changes_nothing(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "alice", name="Alice")
    before = await get_user(client, user_id)
    response = await client.put(f"/users/{user_id}", json={})
    assert response.status_code == 200 and response.json() == {"success": True}
    assert await get_user(client, user_id) == before


async def test_update_one_user_leaves_others(client: httpx.AsyncClient) -> None:
    alice = await create_user(client, "alice", name="Alice", tags=["a"])
    bob = await create_user(client, "bob", name="Bob", tags=["b"])
    bob_before = await get_user(client, bob)
    assert (await client.put(f"/users/{alice}", json={"name": "Changed", "tags": ["c"], "password": "new one"})).status_code == 200
    assert await get_user(client, bob) == bob_before
    assert (await authenticate(client, "bob", PASSWORD)).status_code == 200


# Delete -------------------------------------------------------------------------------


async def test_delete_user(client: httpx.AsyncClient, runtime: Runtime) -> None:
    alice = await create_user(client, "alice", address="alice@example.com", tags=["x"])
    bob = await create_user(client, "bob")
    alias = await client.post(f"/users/{alice}/addresses", json={"address": "alias@example.org"})
    assert alias.status_code == 200
    inbox = await folder_id(client, alice)
    shared = make_message("Shared bytes", **{"Message-ID": "<shared@example.org>"})
    await upload(client, alice, inbox, make_message("Only alice's"))
    await upload(client, alice, inbox, shared)
    await upload(client, bob, await folder_id(client, bob), shared)

    response = await client.delete(f"/users/{alice}")
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}

    error_of(await client.get(f"/users/{alice}"), 404, "UserNotFound")
    error_of(await client.get(f"/users/{alice}/addresses"), 404, "UserNotFound")
    error_of(await client.get(f"/users/{alice}/mailboxes"), 404, "UserNotFound")
    error_of(await client.get(f"/users/{alice}/mailboxes/{inbox}/messages"), 404)
    body = await list_users(client)
    assert body["total"] == 1 and [r["id"] for r in body["results"]] == [bob]
    assert (await list_users(client, tags="x"))["total"] == 0
    error_of(await authenticate(client, "alice", PASSWORD), 403, "AuthFailed")
    error_of(await authenticate(client, "alias@example.org", PASSWORD), 403, "AuthFailed")
    # Its messages, folders, threads, tags and addresses are gone.
    async with runtime.db.read() as conn:
        for table in (messages, folders, threads, user_tags, addresses):
            count = await conn.scalar(select(func.count()).select_from(table).where(table.c.user_id == alice))
            assert count == 0, table.name
        refcounts = {row.key: row.refcount for row in await conn.execute(select(blobs.c.key, blobs.c.refcount))}
    # The bytes bob also holds keep one reference; alice's own message has none left.
    assert {key: n for key, n in refcounts.items() if n > 0} == {hashlib.sha256(shared).hexdigest(): 1}
    # Bob's copy is intact.
    bob_inbox = await folder_id(client, bob)
    listed = (await client.get(f"/users/{bob}/mailboxes/{bob_inbox}/messages")).json()
    assert listed["total"] == 1
    raw = await client.get(f"/users/{bob}/mailboxes/{bob_inbox}/messages/{listed['results'][0]['id']}/message.eml")
    assert raw.status_code == 200 and raw.content == shared


async def test_deleted_users_addresses_and_username_are_free(client: httpx.AsyncClient) -> None:
    alice = await create_user(client, "alice", address="alice@example.com")
    assert (await client.post(f"/users/{alice}/addresses", json={"address": "alias@example.org"})).status_code == 200
    assert (await client.delete(f"/users/{alice}")).status_code == 200
    assert (await client.get("/addresses")).json()["total"] == 0

    other = await create_user(client, "someone", address="alice@example.com")
    response = await client.post(f"/users/{other}/addresses", json={"address": "alias@example.org"})
    assert response.status_code == 200, response.text
    again = await create_user(client, "alice", emptyAddress=True, password="fresh password")
    assert again != alice
    ok = await authenticate(client, "alice", "fresh password")
    assert ok.status_code == 200 and ok.json()["id"] == again
    ok = await authenticate(client, "alice@example.com", PASSWORD)
    assert ok.status_code == 200 and ok.json()["id"] == other


async def test_delete_twice_is_404(client: httpx.AsyncClient) -> None:
    alice = await create_user(client, "alice")
    assert (await client.delete(f"/users/{alice}")).status_code == 200
    error_of(await client.delete(f"/users/{alice}"), 404, "UserNotFound")
    error_of(await client.put(f"/users/{alice}", json={"name": "ghost"}), 404, "UserNotFound")


async def test_delete_leaves_other_users(client: httpx.AsyncClient) -> None:
    alice = await create_user(client, "alice")
    bob = await create_user(client, "bob", tags=["keep"])
    bob_before = await get_user(client, bob)
    assert (await client.delete(f"/users/{alice}")).status_code == 200
    assert await get_user(client, bob) == bob_before
    assert len((await client.get(f"/users/{bob}/mailboxes")).json()["results"]) == 6
    assert (await client.get(f"/users/{bob}/addresses")).json()["results"][0]["address"] == "bob@example.com"


# Concurrency ---------------------------------------------------------------------------


async def test_concurrent_creates_of_one_username(client: httpx.AsyncClient) -> None:
    responses = await asyncio.gather(*(post_user(client, username="racer", address=f"racer{i}@example.com") for i in range(6)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * 5, [r.text for r in responses]
    for response in responses:
        if response.status_code == 409:
            assert error_of(response, 409)["code"] in ("UserExistsError", "AddressExistsError")
    assert await total_users(client) == 1
    assert (await client.get("/addresses")).json()["total"] == 1


async def test_concurrent_creates_of_one_address(client: httpx.AsyncClient) -> None:
    responses = await asyncio.gather(*(post_user(client, username=f"racer{i}", address="same@example.com") for i in range(6)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * 5, [r.text for r in responses]
    for response in responses:
        if response.status_code == 409:
            assert error_of(response, 409)["code"] in ("UserExistsError", "AddressExistsError")
    assert await total_users(client) == 1
    assert (await client.get("/addresses")).json()["total"] == 1
