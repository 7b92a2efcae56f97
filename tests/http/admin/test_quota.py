"""/users/{user}/quota/reset and /quota/reset over HTTP: a stored size that went wrong
is recomputed from the messages."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import select, update

from postern.serve.runtime import Runtime
from postern.storage.schema import users
from tests.helpers import create_user, folder_id, make_message, upload

UNKNOWN_ID = "0123456789abcdef01234567"


async def used(client: httpx.AsyncClient, user: str) -> int:
    response = await client.get(f"/users/{user}")
    assert response.status_code == 200, response.text
    return response.json()["limits"]["quota"]["used"]


async def corrupt(runtime: Runtime, user: str, value: int) -> None:
    async with runtime.db.write() as conn:
        await conn.execute(update(users).where(users.c.id == user).values(storage_used=value))


async def stored(runtime: Runtime, user: str) -> int:
    async with runtime.db.read() as conn:
        return int(await conn.scalar(select(users.c.storage_used).where(users.c.id == user)))


async def user_with_mail(client: httpx.AsyncClient, name: str, count: int) -> tuple[str, int]:
    user = await create_user(client, name)
    inbox = await folder_id(client, user)
    for i in range(count):
        await upload(client, user, inbox, make_message(f"message {i}", "body " * (i + 1) + "\r\n"))
    return user, await used(client, user)


async def test_reset_restores_corrupted_size(client: httpx.AsyncClient, runtime: Runtime) -> None:
    user, right = await user_with_mail(client, "alice", 3)
    assert right > 0
    await corrupt(runtime, user, right + 12345)
    response = await client.post(f"/users/{user}/quota/reset", json={})
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "storageUsed": right, "previousStorageUsed": right + 12345}
    assert await used(client, user) == right
    # Too low is corrected as well; a second reset changes nothing.
    await corrupt(runtime, user, 0)
    assert (await client.post(f"/users/{user}/quota/reset")).json() == {"success": True, "storageUsed": right, "previousStorageUsed": 0}
    assert (await client.post(f"/users/{user}/quota/reset")).json() == {"success": True, "storageUsed": right, "previousStorageUsed": right}


async def test_reset_after_delete_counts_what_is_left(client: httpx.AsyncClient, runtime: Runtime) -> None:
    user = await create_user(client, "alice")
    inbox = await folder_id(client, user)
    first = await upload(client, user, inbox, make_message("one", "x" * 500 + "\r\n"))
    await upload(client, user, inbox, make_message("two"))
    response = await client.delete(f"/users/{user}/mailboxes/{inbox}/messages/{first}")
    assert response.status_code == 200, response.text
    left = await used(client, user)
    await corrupt(runtime, user, 10**9)
    assert (await client.post(f"/users/{user}/quota/reset")).json()["storageUsed"] == left


async def test_reset_of_empty_user_is_zero(client: httpx.AsyncClient, runtime: Runtime) -> None:
    user = await create_user(client, "alice")
    await corrupt(runtime, user, 777)
    assert (await client.post(f"/users/{user}/quota/reset")).json() == {"success": True, "storageUsed": 0, "previousStorageUsed": 777}


async def test_reset_unknown_and_bad_ids(client: httpx.AsyncClient, runtime: Runtime) -> None:
    user, _ = await user_with_mail(client, "alice", 1)
    await corrupt(runtime, user, 5)
    response = await client.post(f"/users/{UNKNOWN_ID}/quota/reset")
    assert response.status_code == 404, response.text
    assert response.json()["code"] == "UserNotFound"
    for bad in ("nope", "0123456789ABCDEF01234567", UNKNOWN_ID + "0"):
        response = await client.post(f"/users/{bad}/quota/reset")
        assert response.status_code == 400, response.text
        assert isinstance(response.json()["error"], str)
    # Nobody else's counter was touched.
    assert await stored(runtime, user) == 5


async def test_reset_needs_the_admin_token(anonymous: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    user = await create_user(client, "alice")
    assert (await anonymous.post(f"/users/{user}/quota/reset")).status_code in (401, 403)
    assert (await anonymous.post("/quota/reset")).status_code in (401, 403)


async def test_reset_every_user_in_background(client: httpx.AsyncClient, runtime: Runtime) -> None:
    runtime.quota.batch = 2  # several batches with a handful of users
    expected = {}
    for i, name in enumerate(("alice", "bob", "carol", "dave", "erin")):
        user, right = await user_with_mail(client, name, i % 3)
        expected[user] = right
        await corrupt(runtime, user, right + 1000 * (i + 1))
    response = await client.post("/quota/reset", json={})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True and isinstance(body["task"], str) and body["task"]
    task = runtime.quota.tasks[body["task"]]
    while not task.finished:
        await asyncio.sleep(0.01)
    assert task.done == 5 and task.changed == 5 and task.failed == 0
    for user, right in expected.items():
        assert await used(client, user) == right
