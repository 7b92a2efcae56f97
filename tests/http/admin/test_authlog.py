"""GET /users/{user}/authlog: what is logged, filters, paging, expiry."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from postern.serve.runtime import Runtime
from postern.storage.schema import authlog
from tests.helpers import create_user
from tests.http.admin.test_authenticate import PASSWORD, authenticate, error_of

UNKNOWN = "0123456789abcdef01234567"
ENTRY_FIELDS = {"id", "action", "result", "protocol", "sess", "ip", "created"}


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> str:
    return await create_user(client, "alice", address="alice@example.com")


async def log_of(client: httpx.AsyncClient, user: str, **params: Any) -> dict[str, Any]:
    response = await client.get(f"/users/{user}/authlog", params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def rows_in_table(runtime: Runtime) -> int:
    async with runtime.db.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(authlog)) or 0)


async def test_authentications_are_logged(client: httpx.AsyncClient, alice: str) -> None:
    assert (await log_of(client, alice))["results"] == []
    await authenticate(client, "alice", protocol="IMAP", sess="sess-1", ip="192.0.2.1", scope="imap")
    await authenticate(client, "alice", "wrong password", protocol="POP3", sess="sess-2", ip="192.0.2.2", scope="pop3")
    body = await log_of(client, alice)
    assert {k: body[k] for k in ("success", "total", "page", "previousCursor", "nextCursor")} == {
        "success": True, "total": 2, "page": 1, "previousCursor": False, "nextCursor": False,
    }
    failed, succeeded = body["results"]  # newest first
    assert ENTRY_FIELDS <= set(succeeded)
    assert {k: succeeded[k] for k in ("action", "result", "protocol", "sess", "ip", "scope")} == {
        "action": "authentication", "result": "success", "protocol": "IMAP", "sess": "sess-1", "ip": "192.0.2.1", "scope": "imap",
    }
    assert {k: failed[k] for k in ("action", "result", "protocol", "sess", "ip", "scope")} == {
        "action": "authentication", "result": "fail", "protocol": "POP3", "sess": "sess-2", "ip": "192.0.2.2", "scope": "pop3",
    }
    assert "asp" not in succeeded
    assert succeeded["created"].endswith("Z")
    # No secret, ever.
    text = str(body)
    assert PASSWORD not in text and "wrong password" not in text


async def test_default_protocol_is_api(client: httpx.AsyncClient, alice: str) -> None:
    await authenticate(client, "alice")
    (entry,) = (await log_of(client, alice))["results"]
    assert entry["protocol"] == "API" and entry["sess"] is None and entry["ip"] is None


async def test_unknown_login_writes_nothing(client: httpx.AsyncClient, runtime: Runtime, alice: str) -> None:
    before = await rows_in_table(runtime)
    for login in ("nobody", "nobody@example.com", "alice@example.net"):
        error_of(await authenticate(client, login, "whatever", ip="192.0.2.1"), 403, "AuthFailed")
    assert await rows_in_table(runtime) == before


async def test_password_change_is_logged(client: httpx.AsyncClient, alice: str) -> None:
    response = await client.put(f"/users/{alice}", json={"password": "a new secret", "sess": "web", "ip": "192.0.2.4"})
    assert response.status_code == 200, response.text
    (entry,) = (await log_of(client, alice, action="password change"))["results"]
    assert entry["result"] == "success" and entry["sess"] == "web" and entry["ip"] == "192.0.2.4"
    # A wrong existing password is logged as a failed change, and changes nothing.
    response = await client.put(f"/users/{alice}", json={"password": "third", "existingPassword": "not it"})
    error_of(response, 403, "AuthFailed")
    results = (await log_of(client, alice, action="password change"))["results"]
    assert [e["result"] for e in results] == ["fail", "success"]
    assert "a new secret" not in str(results)
    # Other changes are not password changes.
    assert (await client.put(f"/users/{alice}", json={"name": "Alice"})).status_code == 200
    assert (await log_of(client, alice, action="password change"))["total"] == 2


async def test_filters(client: httpx.AsyncClient, alice: str) -> None:
    await authenticate(client, "alice", sess="a", ip="192.0.2.1")
    await authenticate(client, "alice", sess="b", ip="192.0.2.1")
    await authenticate(client, "alice", "wrong", sess="a", ip="192.0.2.2")
    await client.post(f"/users/{alice}/asps", json={"description": "x", "sess": "a", "ip": "192.0.2.2"})
    assert (await log_of(client, alice))["total"] == 4
    assert [e["action"] for e in (await log_of(client, alice, action="create asp"))["results"]] == ["create asp"]
    assert (await log_of(client, alice, action="authentication"))["total"] == 3
    assert {e["sess"] for e in (await log_of(client, alice, sess="a"))["results"]} == {"a"}
    assert (await log_of(client, alice, sess="a"))["total"] == 3
    assert (await log_of(client, alice, ip="192.0.2.1"))["total"] == 2
    assert (await log_of(client, alice, ip="192.0.2.2", sess="a", action="authentication"))["total"] == 1
    assert (await log_of(client, alice, action="no such action"))["results"] == []


async def test_paging(client: httpx.AsyncClient, alice: str) -> None:
    for n in range(7):
        await authenticate(client, "alice", sess=f"s{n}")
    first = await log_of(client, alice, limit=3)
    assert first["total"] == 7 and first["previousCursor"] is False
    assert [e["sess"] for e in first["results"]] == ["s6", "s5", "s4"]
    second = await log_of(client, alice, limit=3, next=first["nextCursor"], page=2)
    assert second["page"] == 2 and [e["sess"] for e in second["results"]] == ["s3", "s2", "s1"]
    third = await log_of(client, alice, limit=3, next=second["nextCursor"], page=3)
    assert [e["sess"] for e in third["results"]] == ["s0"] and third["nextCursor"] is False
    back = await log_of(client, alice, limit=3, previous=third["previousCursor"], page=2)
    assert [e["sess"] for e in back["results"]] == ["s3", "s2", "s1"]
    back = await log_of(client, alice, limit=3, previous=back["previousCursor"], page=1)
    assert [e["sess"] for e in back["results"]] == ["s6", "s5", "s4"] and back["previousCursor"] is False
    assert len((await log_of(client, alice))["results"]) == 7  # the default limit is 20


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 251}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"next": "not a cursor"}, "next"),
        ({"next": "WzEsMl0", "previous": "WzEsMl0"}, "next"),
        ({"previous": "WyJ4Il0"}, "previous"),
        ({"page": 0}, "page"),
        ({"ip": "1" * 65}, "ip"),
        ({"action": "\x00"}, "action"),
    ],
)
async def test_invalid_input_is_400(client: httpx.AsyncClient, alice: str, params: dict[str, Any], field: str) -> None:
    error = error_of(await client.get(f"/users/{alice}/authlog", params=params), 400, "InputValidationError")
    assert field in error.get("details", {}), error


async def test_users_see_only_their_own(client: httpx.AsyncClient, alice: str) -> None:
    bob = await create_user(client, "bob")
    await authenticate(client, "alice", sess="alice's")
    await authenticate(client, "bob", sess="bob's")
    assert [e["sess"] for e in (await log_of(client, alice))["results"]] == ["alice's"]
    assert [e["sess"] for e in (await log_of(client, bob))["results"]] == ["bob's"]
    # A cursor of Alice's log does not show Bob's entries.
    for n in range(3):
        await authenticate(client, "bob", sess=f"bob {n}")
    await authenticate(client, "alice", sess="alice's 2")
    first = await log_of(client, alice, limit=1)
    rest = await log_of(client, alice, limit=10, next=first["nextCursor"])
    assert [e["sess"] for e in rest["results"]] == ["alice's"]
    error_of(await client.get(f"/users/{UNKNOWN}/authlog"), 404, "UserNotFound")
    error_of(await client.get("/users/nope/authlog"), 400, "InputValidationError")


async def test_entries_expire_after_30_days(client: httpx.AsyncClient, runtime: Runtime, alice: str) -> None:
    await authenticate(client, "alice", sess="old")
    await authenticate(client, "alice", sess="new")
    (new, old) = (await log_of(client, alice))["results"]
    async with runtime.db.read() as conn:
        row = (await conn.execute(select(authlog).where(authlog.c.id == new["id"]))).one()
    assert row.expires_ms - row.created_ms == 30 * 24 * 3600 * 1000
    async with runtime.db.write() as conn:
        await conn.execute(update(authlog).where(authlog.c.id == old["id"]).values(expires_ms=1))
    # Past its time, an entry is no longer listed, and the collector removes it.
    assert [e["sess"] for e in (await log_of(client, alice))["results"]] == ["new"]
    assert await runtime.authlog.expire() == 1
    assert await rows_in_table(runtime) == 1


async def test_deleted_user_takes_its_log(client: httpx.AsyncClient, runtime: Runtime, alice: str) -> None:
    await authenticate(client, "alice")
    assert (await client.delete(f"/users/{alice}")).status_code == 200
    assert await rows_in_table(runtime) == 0
