"""/addresses and /users/{user}/addresses over HTTP."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest

from tests.helpers import create_user

PASSWORD = "correct horse battery"
UNKNOWN_ID = "0123456789abcdef01234567"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def error_of(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    assert "success" not in body, body
    if code is not None:
        assert body.get("code") == code, body
    return body


async def add(client: httpx.AsyncClient, user_id: str, address: str, **extra: Any) -> str:
    response = await client.post(f"/users/{user_id}/addresses", json={"address": address, **extra})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True and set(body) == {"success", "id"}
    assert re.fullmatch(r"[0-9a-f]{24}", body["id"])
    return body["id"]


async def addresses_of(client: httpx.AsyncClient, user_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/users/{user_id}/addresses")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    return body["results"]


async def main_of(client: httpx.AsyncClient, user_id: str) -> str:
    """The one main address of the user, checked against GET /users/{id}."""
    results = await addresses_of(client, user_id)
    mains = [a["address"] for a in results if a["main"]]
    assert len(mains) == 1, results
    user = (await client.get(f"/users/{user_id}")).json()
    assert user["address"] == mains[0]
    return mains[0]


async def search(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/addresses", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    return body


# List and get --------------------------------------------------------------------------


async def test_list_user_addresses(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "alice", address="alice@example.com")
    alias_id = await add(client, user_id, "alias@example.org")
    results = await addresses_of(client, user_id)
    assert len(results) == 2
    by_address = {a["address"]: a for a in results}
    assert set(by_address) == {"alice@example.com", "alias@example.org"}
    assert by_address["alice@example.com"]["main"] is True
    assert by_address["alias@example.org"]["main"] is False
    assert by_address["alias@example.org"]["id"] == alias_id
    for item in results:
        assert set(item) >= {"id", "address", "main", "created"}
        assert ISO.match(item["created"]), item
        assert re.fullmatch(r"[0-9a-f]{24}", item["id"])


async def test_get_one_address(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "alice")
    alias_id = await add(client, user_id, "alias@example.org")
    response = await client.get(f"/users/{user_id}/addresses/{alias_id}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    assert body["id"] == alias_id
    assert body["address"] == "alias@example.org"
    assert body["main"] is False
    assert ISO.match(body["created"])
    listed = next(a for a in await addresses_of(client, user_id) if a["id"] == alias_id)
    assert {k: body[k] for k in listed} == listed

    main_id = next(a["id"] for a in await addresses_of(client, user_id) if a["main"])
    main = (await client.get(f"/users/{user_id}/addresses/{main_id}")).json()
    assert main["main"] is True and main["address"] == "alice@example.com"


async def test_unknown_address_is_404(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "alice")
    error_of(await client.get(f"/users/{user_id}/addresses/{UNKNOWN_ID}"), 404, "AddressNotFound")
    error_of(await client.put(f"/users/{user_id}/addresses/{UNKNOWN_ID}", json={"main": True}), 404, "AddressNotFound")
    error_of(await client.delete(f"/users/{user_id}/addresses/{UNKNOWN_ID}"), 404, "AddressNotFound")
    assert await main_of(client, user_id) == "alice@example.com"


async def test_unknown_user_is_404(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "alice")
    main_id = (await addresses_of(client, user_id))[0]["id"]
    error_of(await client.get(f"/users/{UNKNOWN_ID}/addresses"), 404, "UserNotFound")
    error_of(await client.post(f"/users/{UNKNOWN_ID}/addresses", json={"address": "x@example.com"}), 404, "UserNotFound")
    error_of(await client.get(f"/users/{UNKNOWN_ID}/addresses/{main_id}"), 404, "UserNotFound")
    error_of(await client.put(f"/users/{UNKNOWN_ID}/addresses/{main_id}", json={"main": True}), 404, "UserNotFound")
    error_of(await client.delete(f"/users/{UNKNOWN_ID}/addresses/{main_id}"), 404, "UserNotFound")
    assert (await search(client))["total"] == 1


@pytest.mark.parametrize("bad_id", ["nope", "0123456789ABCDEF01234567", "0123456789abcdef0123456", "0123456789abcdef012345678"])
async def test_malformed_ids_are_400(client: httpx.AsyncClient, bad_id: str) -> None:
    user_id = await create_user(client, "alice")
    main_id = (await addresses_of(client, user_id))[0]["id"]
    error_of(await client.get(f"/users/{user_id}/addresses/{bad_id}"), 400, "InputValidationError")
    error_of(await client.put(f"/users/{user_id}/addresses/{bad_id}", json={"main": True}), 400, "InputValidationError")
    error_of(await client.delete(f"/users/{user_id}/addresses/{bad_id}"), 400, "InputValidationError")
    error_of(await client.get(f"/users/{bad_id}/addresses"), 400, "InputValidationError")
    error_of(await client.post(f"/users/{bad_id}/addresses", json={"address": "x@example.com"}), 400, "InputValidationError")
    error_of(await client.get(f"/users/{bad_id}/addresses/{main_id}"), 400, "InputValidationError")
    assert (await search(client))["total"] == 1


# Create --------------------------------------------------------------------------------


async def test_create_is_normalised_to_lowercase(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "alice")
    address_id = await add(client, user_id, "Alice.Smith@Example.COM")
    body = (await client.get(f"/users/{user_id}/addresses/{address_id}")).json()
    assert body["address"] == "alice.smith@example.com"
    # In any case it is the same address.
    error_of(await client.post(f"/users/{user_id}/addresses", json={"address": "ALICE.SMITH@EXAMPLE.COM"}), 409, "AddressExistsError")
    error_of(await client.post(f"/users/{user_id}/addresses", json={"address": "alice.smith@example.com"}), 409, "AddressExistsError")
    error_of(await client.post(f"/users/{user_id}/addresses", json={"address": " alice.smith@example.com "}), 409, "AddressExistsError")
    error_of(await client.post(f"/users/{user_id}/addresses", json={"address": "alice.smith@example.com."}), 409, "AddressExistsError")
    assert len(await addresses_of(client, user_id)) == 2


async def test_create_idn_address_and_punycode_duplicate(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "andris")
    address_id = await add(client, user_id, "андрис@уайлддак.орг")
    body = (await client.get(f"/users/{user_id}/addresses/{address_id}")).json()
    assert body["address"] == "андрис@уайлддак.орг"
    for same in ["андрис@xn--80aalaxjd5d.xn--c1avg", "АНДРИС@УАЙЛДДАК.ОРГ", "андрис@XN--80AALAXJD5D.xn--c1avg"]:
        error_of(await client.post(f"/users/{user_id}/addresses", json={"address": same}), 409, "AddressExistsError")
    # Also for another user.
    other = await create_user(client, "other")
    error_of(await client.post(f"/users/{other}/addresses", json={"address": "андрис@xn--80aalaxjd5d.xn--c1avg"}), 409, "AddressExistsError")
    assert len(await addresses_of(client, user_id)) == 2
    assert len(await addresses_of(client, other)) == 1


async def test_create_punycode_first_is_shown_in_unicode(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "andris")
    address_id = await add(client, user_id, "info@xn--80aalaxjd5d.xn--c1avg")
    assert (await client.get(f"/users/{user_id}/addresses/{address_id}")).json()["address"] == "info@уайлддак.орг"
    error_of(await client.post(f"/users/{user_id}/addresses", json={"address": "info@уайлддак.орг"}), 409, "AddressExistsError")


@pytest.mark.parametrize("address", ["jõgeva@example.com", "用户@例子.测试", "δοκιμή@παράδειγμα.δοκιμή", "üser+tag@exämple.de"])
async def test_create_utf8_local_part(client: httpx.AsyncClient, address: str) -> None:
    user_id = await create_user(client, "alice")
    address_id = await add(client, user_id, address)
    assert (await client.get(f"/users/{user_id}/addresses/{address_id}")).json()["address"] == address
    assert (await client.post("/authenticate", json={"username": address, "password": PASSWORD})).json()["id"] == user_id


async def test_unicode_normalisation_makes_duplicates(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "alice")
    await add(client, user_id, "jõgeva@example.com")  # precomposed õ
    error_of(await client.post(f"/users/{user_id}/addresses", json={"address": "jo\u0303geva@example.com"}), 409, "AddressExistsError")


@pytest.mark.parametrize(
    "address",
    [
        "no-at-sign",
        "no-at-sign.example.com",
        "spa ce@example.com",
        "space@exa mple.com",
        "two@at@",
        "a@b@c",
        "@example.com",
        "user@",
        "@",
        "user@.",
        "user..dots@example.com",
        ".user@example.com",
        "user.@example.com",
        "user@-example.com",
        "user@example-.com",
        "user@exam_ple.com",
        "user@example..com",
        "x" * 65 + "@example.com",
        "user@" + "l" * 64 + ".com",
        "user@" + ".".join(["abcdefghi"] * 30) + ".com",
        "a" * 64 + "@" + ".".join(["b" * 60] * 5),
        "tab\t@example.com",
        "nl\n@example.com",
        "nul\u0000@example.com",
        "zero\u200bwidth@example.com",
        "",
        "ab",
    ],
)
async def test_invalid_addresses_are_400(client: httpx.AsyncClient, address: str) -> None:
    user_id = await create_user(client, "alice")
    body = error_of(await client.post(f"/users/{user_id}/addresses", json={"address": address}), 400, "InputValidationError")
    assert "address" in body.get("details", {}), body
    assert len(await addresses_of(client, user_id)) == 1


@pytest.mark.parametrize("body", [{}, {"address": None}, {"address": 42}, {"address": ["a@example.com"]}, {"address": "a@example.com", "main": "perhaps"}])
async def test_create_invalid_body_is_400(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    user_id = await create_user(client, "alice")
    error_of(await client.post(f"/users/{user_id}/addresses", json=body), 400, "InputValidationError")
    assert len(await addresses_of(client, user_id)) == 1


async def test_longest_valid_local_part(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "alice")
    address = "x" * 64 + "@example.com"
    address_id = await add(client, user_id, address)
    assert (await client.get(f"/users/{user_id}/addresses/{address_id}")).json()["address"] == address


async def test_addresses_are_unique_across_users(client: httpx.AsyncClient) -> None:
    alice = await create_user(client, "alice")
    bob = await create_user(client, "bob")
    await add(client, alice, "shared@example.org")
    for address in ["shared@example.org", "SHARED@example.org", "alice@example.com"]:
        error_of(await client.post(f"/users/{bob}/addresses", json={"address": address}), 409, "AddressExistsError")
    error_of(await client.post(f"/users/{bob}/addresses", json={"address": "shared@example.org", "main": True}), 409, "AddressExistsError")
    assert [a["address"] for a in await addresses_of(client, bob)] == ["bob@example.com"]
    assert await main_of(client, bob) == "bob@example.com"
    assert len(await addresses_of(client, alice)) == 2


# The main address ----------------------------------------------------------------------


async def test_create_with_main_moves_the_main_flag(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "alice")
    await add(client, user_id, "second@example.com")
    assert await main_of(client, user_id) == "alice@example.com"
    await add(client, user_id, "third@example.com", main=True)
    assert await main_of(client, user_id) == "third@example.com"
    listed = (await client.get("/users", params={"query": "alice"})).json()["results"]
    assert listed[0]["address"] == "third@example.com"
    auth = await client.post("/authenticate", json={"username": "alice", "password": PASSWORD})
    assert auth.json()["address"] == "third@example.com"
    assert len(await addresses_of(client, user_id)) == 3


async def test_put_main_moves_the_main_flag(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "alice")
    second = await add(client, user_id, "second@example.com")
    response = await client.put(f"/users/{user_id}/addresses/{second}", json={"main": True})
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    assert await main_of(client, user_id) == "second@example.com"
    assert (await client.get(f"/users/{user_id}/addresses/{second}")).json()["main"] is True
    # Again on the main one: nothing changes, still exactly one main.
    assert (await client.put(f"/users/{user_id}/addresses/{second}", json={"main": True})).status_code == 200
    assert await main_of(client, user_id) == "second@example.com"
    # And back.
    first = next(a["id"] for a in await addresses_of(client, user_id) if a["address"] == "alice@example.com")
    assert (await client.put(f"/users/{user_id}/addresses/{first}", json={"main": True})).status_code == 200
    assert await main_of(client, user_id) == "alice@example.com"


@pytest.mark.parametrize("body", [{"main": False}, {}, {"main": None}, {"main": "yes please"}, {"address": "renamed@example.com"}])
async def test_put_requires_main_true(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    user_id = await create_user(client, "alice")
    second = await add(client, user_id, "second@example.com")
    error_of(await client.put(f"/users/{user_id}/addresses/{second}", json=body), 400, "InputValidationError")
    assert await main_of(client, user_id) == "alice@example.com"
    assert {a["address"] for a in await addresses_of(client, user_id)} == {"alice@example.com", "second@example.com"}


async def test_main_address_cannot_be_deleted(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "alice")
    await add(client, user_id, "second@example.com")
    main_id = next(a["id"] for a in await addresses_of(client, user_id) if a["main"])
    error_of(await client.delete(f"/users/{user_id}/addresses/{main_id}"), 403, "MainAddressError")
    assert await main_of(client, user_id) == "alice@example.com"
    assert len(await addresses_of(client, user_id)) == 2


async def test_only_address_cannot_be_deleted(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "alice")
    main_id = (await addresses_of(client, user_id))[0]["id"]
    error_of(await client.delete(f"/users/{user_id}/addresses/{main_id}"), 403, "MainAddressError")
    assert await main_of(client, user_id) == "alice@example.com"


async def test_secondary_address_can_be_deleted(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "alice")
    second = await add(client, user_id, "second@example.com")
    response = await client.delete(f"/users/{user_id}/addresses/{second}")
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    error_of(await client.get(f"/users/{user_id}/addresses/{second}"), 404, "AddressNotFound")
    error_of(await client.delete(f"/users/{user_id}/addresses/{second}"), 404, "AddressNotFound")
    assert [a["address"] for a in await addresses_of(client, user_id)] == ["alice@example.com"]
    assert await main_of(client, user_id) == "alice@example.com"
    # The address is free again, for anyone.
    bob = await create_user(client, "bob")
    await add(client, bob, "second@example.com")


async def test_former_main_can_be_deleted_after_moving(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "alice")
    await add(client, user_id, "second@example.com", main=True)
    old = next(a["id"] for a in await addresses_of(client, user_id) if a["address"] == "alice@example.com")
    assert (await client.delete(f"/users/{user_id}/addresses/{old}")).status_code == 200
    assert await main_of(client, user_id) == "second@example.com"
    assert len(await addresses_of(client, user_id)) == 1


async def test_first_address_of_user_without_one_becomes_main(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "alice", emptyAddress=True)
    assert (await client.get(f"/users/{user_id}")).json()["address"] is None
    await add(client, user_id, "first@example.com", main=False)
    assert await main_of(client, user_id) == "first@example.com"
    await add(client, user_id, "second@example.com")
    assert await main_of(client, user_id) == "first@example.com"


async def test_another_users_address_id_is_404(client: httpx.AsyncClient) -> None:
    alice = await create_user(client, "alice")
    bob = await create_user(client, "bob", address="bob.secret@example.org")
    bob_alias = await add(client, bob, "bob.alias@example.org")
    bob_main = next(a["id"] for a in await addresses_of(client, bob) if a["main"])
    bob_before = await addresses_of(client, bob)
    alice_before = await addresses_of(client, alice)

    for address_id in (bob_main, bob_alias):
        for response in (
            await client.get(f"/users/{alice}/addresses/{address_id}"),
            await client.put(f"/users/{alice}/addresses/{address_id}", json={"main": True}),
            await client.delete(f"/users/{alice}/addresses/{address_id}"),
        ):
            error_of(response, 404, "AddressNotFound")
            assert "bob" not in response.text  # nothing about bob's address leaks

    assert await addresses_of(client, bob) == bob_before
    assert await addresses_of(client, alice) == alice_before
    assert await main_of(client, bob) == "bob.secret@example.org"
    assert await main_of(client, alice) == "alice@example.com"


# Search --------------------------------------------------------------------------------


async def test_search_across_users(client: httpx.AsyncClient) -> None:
    alice = await create_user(client, "alice")
    bob = await create_user(client, "bob")
    alice_team = await add(client, alice, "team-alice@example.org")
    bob_team = await add(client, bob, "team-bob@example.org")

    body = await search(client, query="team")
    assert body["query"] == "team"
    assert body["total"] == 2
    assert body["page"] == 1
    assert body["previousCursor"] is False and body["nextCursor"] is False
    assert sorted((r["id"], r["address"], r["user"]) for r in body["results"]) == sorted(
        [(alice_team, "team-alice@example.org", alice), (bob_team, "team-bob@example.org", bob)]
    )
    for item in body["results"]:
        assert set(item) >= {"id", "address", "user"}

    assert {r["id"] for r in (await search(client, query="TEAM"))["results"]} == {alice_team, bob_team}
    assert [r["address"] for r in (await search(client, query="m-b"))["results"]] == ["team-bob@example.org"]
    assert {r["address"] for r in (await search(client, query="@example.com"))["results"]} == {"alice@example.com", "bob@example.com"}
    all_ = await search(client)
    assert all_["query"] == ""
    assert all_["total"] == 4
    assert (await search(client, query="nothing-like-this"))["results"] == []
    # LIKE wildcards are matched literally.
    assert [r["address"] for r in (await search(client, query="_"))["results"]] == []
    assert (await search(client, query="%"))["total"] == 0


async def test_search_idn(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "andris", address="андрис@уайлддак.орг")
    await create_user(client, "other")
    for query in ["андрис", "уайлддак", "xn--80aalaxjd5d", "АНДРИС", "Уайлддак"]:
        body = await search(client, query=query)
        assert [(r["address"], r["user"]) for r in body["results"]] == [("андрис@уайлддак.орг", user_id)], query


async def test_search_paging(client: httpx.AsyncClient) -> None:
    alice = await create_user(client, "alice", emptyAddress=True)
    bob = await create_user(client, "bob", emptyAddress=True)
    expected = {}
    for i in range(7):
        owner = alice if i % 2 else bob
        address = f"list{i}@example.net"
        expected[await add(client, owner, address)] = (address, owner)

    pages = [await search(client, query="list", limit=3)]
    assert pages[0]["previousCursor"] is False
    while pages[-1]["nextCursor"] is not False:
        assert len(pages) < 10
        pages.append(await search(client, query="list", limit=3, next=pages[-1]["nextCursor"], page=len(pages) + 1))
        assert pages[-1]["page"] == len(pages)
    assert [len(p["results"]) for p in pages] == [3, 3, 1]
    assert all(p["total"] == 7 for p in pages)
    walked = [r["id"] for p in pages for r in p["results"]]
    assert sorted(walked) == sorted(expected) and len(set(walked)) == 7
    assert {r["id"]: (r["address"], r["user"]) for p in pages for r in p["results"]} == expected

    back = await search(client, query="list", limit=3, previous=pages[2]["previousCursor"])
    assert [r["id"] for r in back["results"]] == [r["id"] for r in pages[1]["results"]]
    first = await search(client, query="list", limit=3, previous=back["previousCursor"])
    assert [r["id"] for r in first["results"]] == [r["id"] for r in pages[0]["results"]]
    assert first["previousCursor"] is False


@pytest.mark.parametrize("params", [{"limit": "0"}, {"limit": "251"}, {"next": "garbage!"}, {"previous": "e30"}, {"page": "0"}])
async def test_search_invalid_parameters_are_400(client: httpx.AsyncClient, params: dict[str, str]) -> None:
    await create_user(client, "alice")
    error_of(await client.get("/addresses", params=params), 400, "InputValidationError")


# Concurrency ---------------------------------------------------------------------------


async def test_concurrent_main_changes_leave_exactly_one_main(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "alice")
    ids = [await add(client, user_id, f"alias{i}@example.com") for i in range(5)]
    responses = await asyncio.gather(*(client.put(f"/users/{user_id}/addresses/{a}", json={"main": True}) for a in ids))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    assert await main_of(client, user_id) in {f"alias{i}@example.com" for i in range(5)}


async def test_concurrent_adds_with_main_leave_exactly_one_main(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "alice")
    responses = await asyncio.gather(
        *(client.post(f"/users/{user_id}/addresses", json={"address": f"new{i}@example.com", "main": True}) for i in range(5))
    )
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    assert await main_of(client, user_id) in {f"new{i}@example.com" for i in range(5)}
    assert len(await addresses_of(client, user_id)) == 6


async def test_concurrent_adds_of_one_address(client: httpx.AsyncClient) -> None:
    users = [await create_user(client, f"user{i}") for i in range(4)]
    responses = await asyncio.gather(*(client.post(f"/users/{u}/addresses", json={"address": "contested@example.org"}) for u in users))
    assert sorted(r.status_code for r in responses) == [200, 409, 409, 409], [r.text for r in responses]
    for response in responses:
        if response.status_code == 409:
            error_of(response, 409, "AddressExistsError")
    assert (await search(client, query="contested"))["total"] == 1


async def test_address_changes_racing_a_user_delete(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "alice")
    second = await add(client, user_id, "second@example.com")
    responses = await asyncio.gather(
        client.post(f"/users/{user_id}/addresses", json={"address": "third@example.com", "main": True}),
        client.put(f"/users/{user_id}/addresses/{second}", json={"main": True}),
        client.delete(f"/users/{user_id}"),
        client.post(f"/users/{user_id}/addresses", json={"address": "fourth@example.com"}),
    )
    assert responses[2].status_code == 200, responses[2].text
    for response in responses:
        assert response.status_code in (200, 404), response.text
    error_of(await client.get(f"/users/{user_id}"), 404, "UserNotFound")
    assert (await search(client))["total"] == 0
