"""/users/{user}/filters and /filters over HTTP: create, list (descriptions, limits,
broken folders), get, update, delete, the limit, bad input and other users' ids."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from postern.serve.runtime import Runtime
from tests.helpers import create_user, folder_id

UNKNOWN_ID = "0123456789abcdef01234567"


def assert_error(
    response: httpx.Response, status: int, code: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"]
    assert "success" not in body
    if code is not None:
        assert body.get("code") == code, body
    return body


async def create_filter(client: httpx.AsyncClient, user: str, **body: Any) -> str:
    response = await client.post(f"/users/{user}/filters", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["success"] is True and len(data["id"]) == 24
    return data["id"]


async def test_create_list_get_update_delete(client: httpx.AsyncClient) -> None:
    alice = await create_user(client, "alice", address="alice@example.com")
    work = (
        await client.post(f"/users/{alice}/mailboxes", json={"path": "Work"})
    ).json()["id"]
    first = await create_filter(
        client,
        alice,
        name="From abc",
        query={
            "from": "  abc   corp ",
            "ha": True,
            "size": -1000,
            "listId": "<list.example.org>",
        },
        action={
            "seen": True,
            "mailbox": work,
            "targets": [
                "bob@example.org",
                "https://hooks.example.net/in?x=1",
                "smtp://mx.example.net:2525",
            ],
        },
    )
    second = await create_filter(
        client,
        alice,
        query={"text": "invoice"},
        action={"flag": True, "spam": False},
        disabled=True,
    )

    listing = (await client.get(f"/users/{alice}/filters")).json()
    assert listing["success"] is True
    assert listing["limits"] == {"allowed": 400, "used": 2}
    one, two = listing["results"]
    assert [one["id"], two["id"]] == [first, second]
    assert one["name"] == "From abc"
    assert one["query"] == [
        ["from", "(abc corp)"],
        ["listId", "(<list.example.org>)"],
        ["has attachment"],
        ["smaller", 1000],
    ]
    assert one["action"] == [
        ["mark as read"],
        ["move to folder", '"Work"'],
        [
            "forward to",
            "bob@example.org, hooks.example.net, smtp://mx.example.net:2525",
        ],
    ]
    assert one["disabled"] is False and one["broken"] is False
    assert one["created"].endswith("Z")
    assert two["query"] == [[False, '"invoice"']]
    assert two["action"] == [["do not mark it as spam"], ["flag it"]] or two[
        "action"
    ] == [["flag it"], ["do not mark it as spam"]]
    assert two["disabled"] is True

    details = (await client.get(f"/users/{alice}/filters/{first}")).json()
    assert details["success"] is True and details["id"] == first
    assert details["query"] == {
        "from": "abc corp",
        "listId": "<list.example.org>",
        "ha": True,
        "size": -1000,
    }
    assert details["action"]["mailbox"] == work and details["action"]["seen"] is True
    assert details["action"]["targets"] == [
        "bob@example.org",
        "https://hooks.example.net/in?x=1",
        "smtp://mx.example.net:2525",
    ]

    # An empty value removes a key; keys not given stay.
    response = await client.put(
        f"/users/{alice}/filters/{first}",
        json={
            "query": {"from": "", "subject": "hello"},
            "action": {"targets": []},
            "disabled": True,
        },
    )
    assert response.status_code == 200 and response.json() == {"success": True}
    details = (await client.get(f"/users/{alice}/filters/{first}")).json()
    assert details["query"] == {
        "subject": "hello",
        "listId": "<list.example.org>",
        "ha": True,
        "size": -1000,
    }
    assert "targets" not in details["action"] and details["action"]["seen"] is True
    assert details["disabled"] is True

    response = await client.delete(f"/users/{alice}/filters/{first}")
    assert response.status_code == 200 and response.json() == {"success": True}
    assert_error(
        await client.get(f"/users/{alice}/filters/{first}"), 404, "FilterNotFound"
    )
    assert_error(
        await client.delete(f"/users/{alice}/filters/{first}"), 404, "FilterNotFound"
    )
    assert (await client.get(f"/users/{alice}/filters")).json()["limits"]["used"] == 1


async def test_legacy_flat_fields(client: httpx.AsyncClient) -> None:
    alice = await create_user(client, "alice", address="alice@example.com")
    made = await create_filter(
        client,
        alice,
        query_from="abc",
        action_flag=True,
        action_forward="bob@example.org",
        query_size=100,
    )
    details = (await client.get(f"/users/{alice}/filters/{made}")).json()
    assert details["query"] == {"from": "abc", "size": 100}
    assert details["action"] == {"flag": True, "targets": ["bob@example.org"]}


async def test_deleted_folder_is_reported_broken(client: httpx.AsyncClient) -> None:
    alice = await create_user(client, "alice", address="alice@example.com")
    work = (
        await client.post(f"/users/{alice}/mailboxes", json={"path": "Work"})
    ).json()["id"]
    await create_filter(client, alice, query={"from": "x"}, action={"mailbox": work})
    assert (await client.delete(f"/users/{alice}/mailboxes/{work}")).status_code == 200
    [item] = (await client.get(f"/users/{alice}/filters")).json()["results"]
    assert item["broken"] is True
    assert item["action"] == [["move to folder", work]]


async def test_bad_input(client: httpx.AsyncClient) -> None:
    alice = await create_user(client, "alice", address="alice@example.com")
    url = f"/users/{alice}/filters"
    for body, field in [
        ({"query": {"from": "x" * 256}, "action": {"seen": True}}, "query.from"),
        ({"query": {"ha": "maybe"}, "action": {}}, "query.ha"),
        ({"query": {"size": "big"}, "action": {}}, "query.size"),
        ({"query": {"size": True}, "action": {}}, "query.size"),
        ({"query": {"colour": "red"}, "action": {}}, "query.colour"),
        ({"query": {}, "action": {"seen": "yes"}}, "action.seen"),
        ({"query": {}, "action": {"mailbox": "not-an-id"}}, "action.mailbox"),
        ({"query": {}, "action": {"targets": ["ftp://example.org/"]}}, "targets"),
        ({"query": {}, "action": {"targets": ["just words"]}}, "targets"),
        ({"query": {}, "action": {"targets": "bob@example.org"}}, "action.targets"),
        ({"query": {"from": "a\x00b"}, "action": {}}, "query.from"),
    ]:
        body_ = assert_error(
            await client.post(url, json=body), 400, "InputValidationError"
        )
        assert field in (body_.get("details") or {}), (body, body_)
    assert_error(
        await client.post(url, json={"name": "x" * 256}), 400, "InputValidationError"
    )
    assert_error(
        await client.post(
            url, content=b"{not json", headers={"Content-Type": "application/json"}
        ),
        400,
    )
    assert_error(
        await client.post(url, json={"action": {"mailbox": UNKNOWN_ID}}),
        404,
        "NoSuchMailbox",
    )
    assert_error(await client.get("/users/nothex/filters"), 400)
    assert_error(await client.get(f"/users/{alice}/filters/nothex"), 400)
    assert (await client.get(url)).json()["results"] == []


async def test_other_users_ids_are_not_found(client: httpx.AsyncClient) -> None:
    alice = await create_user(client, "alice", address="alice@example.com")
    bob = await create_user(client, "bob", address="bob@example.com")
    bobs_folder = await folder_id(client, bob, "Junk")
    mine = await create_filter(
        client, alice, query={"from": "secret-sender"}, action={"seen": True}
    )
    # Bob cannot see, change or delete Alice's filter; nothing about it shows.
    for response in (
        await client.get(f"/users/{bob}/filters/{mine}"),
        await client.put(f"/users/{bob}/filters/{mine}", json={"name": "mine now"}),
        await client.delete(f"/users/{bob}/filters/{mine}"),
    ):
        body = assert_error(response, 404, "FilterNotFound")
        assert "secret-sender" not in response.text and alice not in response.text, body
    assert (await client.get(f"/users/{bob}/filters")).json()["results"] == []
    # Alice cannot file into Bob's folder.
    assert_error(
        await client.post(
            f"/users/{alice}/filters", json={"action": {"mailbox": bobs_folder}}
        ),
        404,
        "NoSuchMailbox",
    )
    assert_error(
        await client.put(
            f"/users/{alice}/filters/{mine}", json={"action": {"mailbox": bobs_folder}}
        ),
        404,
        "NoSuchMailbox",
    )
    assert (await client.get(f"/users/{alice}/filters/{mine}")).json()["name"] == ""
    # An unknown user.
    assert_error(await client.get(f"/users/{UNKNOWN_ID}/filters"), 404, "UserNotFound")
    assert_error(
        await client.post(
            f"/users/{UNKNOWN_ID}/filters", json={"action": {"seen": True}}
        ),
        404,
        "UserNotFound",
    )
    assert_error(
        await client.get(f"/users/{UNKNOWN_ID}/filters/{mine}"), 404, "UserNotFound"
    )


async def test_limit_of_filters(client: httpx.AsyncClient, runtime: Runtime) -> None:
    runtime.rules.max_filters = 3
    alice = await create_user(client, "alice", address="alice@example.com")
    for n in range(3):
        await create_filter(
            client, alice, query={"subject": f"s{n}"}, action={"seen": True}
        )
    body = assert_error(
        await client.post(f"/users/{alice}/filters", json={"action": {"seen": True}}),
        403,
        "TooMany",
    )
    assert "limit" in body["error"].lower()
    assert (await client.get(f"/users/{alice}/filters")).json()["limits"] == {
        "allowed": 3,
        "used": 3,
    }


async def test_all_filters_paged(client: httpx.AsyncClient) -> None:
    alice = await create_user(client, "alice", address="alice@example.com")
    bob = await create_user(client, "bob", address="bob@example.com")
    made = [
        await create_filter(
            client, alice, query={"subject": f"a{n}"}, action={"seen": True}
        )
        for n in range(3)
    ]
    made.append(
        await create_filter(
            client,
            bob,
            query={"subject": "b"},
            action={"targets": ["carol@example.org"]},
        )
    )
    first = (await client.get("/filters", params={"limit": 2})).json()
    assert first["success"] is True and first["total"] == 4 and first["page"] == 1
    assert first["previousCursor"] is False and first["nextCursor"]
    second = (
        await client.get(
            "/filters", params={"limit": 2, "next": first["nextCursor"], "page": 2}
        )
    ).json()
    assert second["nextCursor"] is False and second["page"] == 2
    ids = [r["id"] for r in first["results"] + second["results"]]
    assert sorted(ids) == sorted(made)
    users = {r["id"]: r["user"] for r in first["results"] + second["results"]}
    assert users[made[3]] == bob and users[made[0]] == alice
    forwarding = (await client.get("/filters", params={"forward": "carol@"})).json()
    assert forwarding["total"] == 1 and forwarding["results"][0]["targets"] == [
        "carol@example.org"
    ]
    assert_error(await client.get("/filters", params={"limit": 0}), 400)
    assert_error(await client.get("/filters", params={"next": "!!"}), 400)


@pytest.mark.parametrize("method", ["get", "post"])
async def test_access_token_required(anonymous: httpx.AsyncClient, method: str) -> None:
    response = await getattr(anonymous, method)(f"/users/{UNKNOWN_ID}/filters")
    assert response.status_code == 401
