"""/users/{user}/autoreply over HTTP: set, partial update, get, delete, the size
limits, bad dates and unknown users."""

from __future__ import annotations

import httpx

from tests.helpers import create_user

UNKNOWN_ID = "0123456789abcdef01234567"


async def test_set_get_update_delete(client: httpx.AsyncClient) -> None:
    alice = await create_user(client, "alice", address="alice@example.com")
    url = f"/users/{alice}/autoreply"
    empty = (await client.get(url)).json()
    assert empty == {
        "success": True,
        "status": False,
        "name": "",
        "subject": "",
        "text": "",
        "html": "",
        "start": False,
        "end": False,
        "created": False,
    }

    body = {
        "status": True,
        "name": "Alice Away",
        "subject": "Out of office",
        "text": "Back on Monday.",
        "start": "2017-11-15T00:00:00.000Z",
        "end": "2017-11-19T00:00:00Z",
    }
    response = await client.put(url, json=body)
    assert response.status_code == 200, response.text
    assert response.json()["success"] is True
    got = (await client.get(url)).json()
    assert (
        got["status"] is True
        and got["name"] == "Alice Away"
        and got["subject"] == "Out of office"
        and got["text"] == "Back on Monday."
    )
    assert (
        got["start"] == "2017-11-15T00:00:00.000Z"
        and got["end"] == "2017-11-19T00:00:00.000Z"
    )
    assert got["created"].endswith("Z")

    # Partial: only the status; false clears a date.
    assert (
        await client.put(url, json={"status": False, "end": False})
    ).status_code == 200
    got = (await client.get(url)).json()
    assert (
        got["status"] is False
        and got["subject"] == "Out of office"
        and got["end"] is False
        and got["start"] == "2017-11-15T00:00:00.000Z"
    )

    assert (await client.delete(url)).json() == {"success": True}
    assert (await client.get(url)).json()["status"] is False
    assert (await client.get(url)).json()["subject"] == ""


async def test_bad_input(client: httpx.AsyncClient) -> None:
    alice = await create_user(client, "alice", address="alice@example.com")
    url = f"/users/{alice}/autoreply"
    for body in (
        {"subject": "s" * 2049},
        {"name": "n" * 129},
        {"text": "t" * (128 * 1024 + 1)},
        {"html": "h" * (128 * 1024 + 1)},
        {"start": "not a date"},
        {"end": "2017-13-45"},
        {"start": True},
        {"start": "2017-11-19T00:00:00Z", "end": "2017-11-15T00:00:00Z"},
        {"status": "sometimes"},
        {"subject": "a\x00b"},
    ):
        response = await client.put(url, json=body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["code"] == "InputValidationError"
    assert (await client.get(url)).json()["status"] is False  # nothing half written


async def test_unknown_user(client: httpx.AsyncClient) -> None:
    for method in ("get", "delete"):
        response = await getattr(client, method)(f"/users/{UNKNOWN_ID}/autoreply")
        assert response.status_code == 404 and response.json()["code"] == "UserNotFound"
    response = await client.put(f"/users/{UNKNOWN_ID}/autoreply", json={"status": True})
    assert response.status_code == 404 and response.json()["code"] == "UserNotFound"
    assert (await client.get("/users/xyz/autoreply")).status_code == 400
