"""The fast folder listing answers exactly as the FastAPI route does, and leaves
every unusual request (and every error) to that route."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from postern.serve.runtime import Runtime
from tests.helpers import create_user, folder_id, make_message, upload


@pytest.fixture
async def folder(client: httpx.AsyncClient) -> tuple[str, str]:
    user = await create_user(client, "alice", address="alice@example.com")
    inbox = await folder_id(client, user, "INBOX")
    for n in range(30):
        await upload(client, user, inbox, make_message(subject=f"message {n}"), **({"unseen": "true"} if n % 3 else {}))
    return user, inbox


def count_fast_answers(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = runtime.mailstore.message_page

    async def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return await original(*args, **kwargs)

    monkeypatch.setattr(runtime.mailstore, "message_page", counting)
    return calls


async def slow_answer(client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch, url: str, **kw: Any) -> httpx.Response:
    """The same request answered by the FastAPI route alone."""
    async def decline(*args: Any, **kwargs: Any) -> None:
        return None

    with monkeypatch.context() as patch:
        patch.setattr(runtime.mailstore, "message_page", decline)
        return await client.get(url, **kw)


@pytest.mark.parametrize(
    "params",
    [{}, {"order": "asc"}, {"limit": "7"}, {"limit": "250"}, {"order": "asc", "limit": "4", "page": "3"}, {"limit": "1", "order": "desc"}],
)
async def test_same_answer_as_the_route(
    client: httpx.AsyncClient, runtime: Runtime, folder: tuple[str, str], monkeypatch: pytest.MonkeyPatch, params: dict[str, str]
) -> None:
    user, inbox = folder
    url = f"/users/{user}/mailboxes/{inbox}/messages"
    calls = count_fast_answers(runtime, monkeypatch)
    fast = await client.get(url, params=params)
    assert calls, "the fast path did not answer"
    slow = await slow_answer(client, runtime, monkeypatch, url, params=params)
    assert fast.status_code == slow.status_code == 200
    assert fast.json() == slow.json()
    assert fast.headers["content-type"] == "application/json"


async def test_same_answer_when_walking_cursors(
    client: httpx.AsyncClient, runtime: Runtime, folder: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    user, inbox = folder
    url = f"/users/{user}/mailboxes/{inbox}/messages"
    calls = count_fast_answers(runtime, monkeypatch)
    seen: list[int] = []
    params: dict[str, str] = {"limit": "8"}
    while True:
        fast = await client.get(url, params=params)
        slow = await slow_answer(client, runtime, monkeypatch, url, params=params)
        assert fast.json() == slow.json()
        body = fast.json()
        seen += [m["id"] for m in body["results"]]
        if body["nextCursor"] is False:
            break
        params = {"limit": "8", "next": body["nextCursor"]}
    assert seen == list(range(30, 0, -1))
    back = await client.get(url, params={"limit": "8", "previous": body["previousCursor"]})
    assert back.json() == (await slow_answer(client, runtime, monkeypatch, url, params={"limit": "8", "previous": body["previousCursor"]})).json()
    assert [m["id"] for m in back.json()["results"]] == list(range(14, 6, -1))
    assert len(calls) >= 5


async def test_query_token_and_legacy_path(
    anonymous: httpx.AsyncClient, runtime: Runtime, client: httpx.AsyncClient, folder: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    user, inbox = folder
    calls = count_fast_answers(runtime, monkeypatch)
    from tests.conftest import ADMIN_TOKEN

    response = await anonymous.get(f"/user/{user}/mailboxes/{inbox}/messages", params={"accessToken": ADMIN_TOKEN, "limit": "3"})
    assert response.status_code == 200
    assert [m["id"] for m in response.json()["results"]] == [30, 29, 28]
    assert calls


@pytest.mark.parametrize(
    "query, status",
    [
        ("limit=0", 400),
        ("limit=251", 400),
        ("limit=abc", 400),
        ("order=sideways", 400),
        ("page=0", 400),
        ("next=%00", 400),
        ("next=garbage!", 400),
        ("limit=5&limit=6", 200),
        ("other=%00", 400),
        ("next=WzFd&previous=WzFd", 400),
    ],
)
async def test_unusual_requests_go_to_the_route(
    client: httpx.AsyncClient, runtime: Runtime, folder: tuple[str, str], monkeypatch: pytest.MonkeyPatch, query: str, status: int
) -> None:
    user, inbox = folder
    url = f"/users/{user}/mailboxes/{inbox}/messages?{query}"
    fast = await client.get(url)
    slow = await slow_answer(client, runtime, monkeypatch, url)
    assert fast.status_code == slow.status_code == status
    assert fast.json() == slow.json()


async def test_errors_are_the_routes(anonymous: httpx.AsyncClient, client: httpx.AsyncClient, folder: tuple[str, str]) -> None:
    user, inbox = folder
    other = await create_user(client, "bob", address="bob@example.com")
    assert (await anonymous.get(f"/users/{user}/mailboxes/{inbox}/messages")).status_code == 401
    assert (await anonymous.get(f"/users/{user}/mailboxes/{inbox}/messages", headers={"X-Access-Token": "wrong"})).status_code == 403
    foreign = await client.get(f"/users/{other}/mailboxes/{inbox}/messages")
    assert foreign.status_code == 404 and foreign.json()["code"] == "NoSuchMailbox"
    missing = await client.get(f"/users/{'0' * 24}/mailboxes/{inbox}/messages")
    assert missing.status_code == 404 and missing.json()["code"] == "UserNotFound"


async def test_empty_folder(client: httpx.AsyncClient, folder: tuple[str, str]) -> None:
    user, _ = folder
    trash = await folder_id(client, user, "Trash")
    body = (await client.get(f"/users/{user}/mailboxes/{trash}/messages")).json()
    assert body == {"success": True, "specialUse": "\\Trash", "total": 0, "page": 1, "previousCursor": False, "nextCursor": False, "results": []}
