"""/users/{user}/asps: application specific passwords, and logging in with them."""

from __future__ import annotations

import base64
import plistlib
import re
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from postern.config import parse_listen
from postern.serve.runtime import Runtime
from postern.storage.schema import users
from tests.helpers import create_user
from tests.http.admin.test_authenticate import PASSWORD, authenticate, error_of

UNKNOWN = "0123456789abcdef01234567"


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> str:
    return await create_user(client, "alice", address="alice@example.com", name="Alice")


async def create_asp(client: httpx.AsyncClient, user: str, **body: Any) -> dict[str, Any]:
    response = await client.post(f"/users/{user}/asps", json={"description": "Mail app", **body})
    assert response.status_code == 200, response.text
    return response.json()


async def asps(client: httpx.AsyncClient, user: str) -> list[dict[str, Any]]:
    response = await client.get(f"/users/{user}/asps")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    return body["results"]


async def test_create_list_and_delete(client: httpx.AsyncClient, alice: str) -> None:
    assert await asps(client, alice) == []
    created = await create_asp(client, alice, description="Thunderbird", ip="192.0.2.1", sess="s1")
    assert set(created) == {"success", "id", "password"}
    assert re.fullmatch(r"[0-9a-f]{24}", created["id"])
    assert re.fullmatch(r"[a-z]{16}", created["password"])
    listed = await asps(client, alice)
    assert len(listed) == 1
    item = listed[0]
    assert item["id"] == created["id"] and item["description"] == "Thunderbird" and item["scopes"] == ["*"]
    assert item["lastUse"] is False and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", item["created"])
    assert created["password"] not in str(listed)

    response = await client.delete(f"/users/{alice}/asps/{created['id']}", params={"ip": "192.0.2.2", "sess": "s2"})
    assert response.status_code == 200 and response.json() == {"success": True}
    assert await asps(client, alice) == []
    error_of(await authenticate(client, "alice", created["password"], scope="imap"), 403, "AuthFailed")
    # Deleting it again: it is gone.
    error_of(await client.delete(f"/users/{alice}/asps/{created['id']}"), 404, "AspNotFound")

    log = (await client.get(f"/users/{alice}/authlog")).json()["results"]
    by_action = {e["action"]: e for e in log}
    assert by_action["create asp"]["asp"] == created["id"] and by_action["create asp"]["ip"] == "192.0.2.1"
    assert by_action["create asp"]["sess"] == "s1"
    assert by_action["delete asp"]["asp"] == created["id"] and by_action["delete asp"]["ip"] == "192.0.2.2"
    assert created["password"] not in str(log)


@pytest.mark.parametrize("scope", ["imap", "pop3", "smtp"])
async def test_default_scope_opens_every_mail_scope(client: httpx.AsyncClient, alice: str, scope: str) -> None:
    password = (await create_asp(client, alice))["password"]
    response = await authenticate(client, "alice", password, scope=scope)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "success": True, "id": alice, "username": "alice", "address": "alice@example.com",
        "scope": scope, "require2fa": False, "requirePasswordChange": False,
    }


async def test_never_master(client: httpx.AsyncClient, alice: str) -> None:
    password = (await create_asp(client, alice, scopes=["*"]))["password"]
    wrong = await authenticate(client, "alice", "wrong password")
    for scope in ("master", None):
        body = {"scope": scope} if scope else {}
        response = await authenticate(client, "alice", password, **body)
        error_of(response, 403, "AuthFailed")
        assert response.json() == wrong.json()


async def test_scopes_are_enforced(client: httpx.AsyncClient, alice: str) -> None:
    smtp_only = (await create_asp(client, alice, scopes=["smtp"]))["password"]
    mail = (await create_asp(client, alice, scopes="imap, pop3"))["password"]
    assert (await authenticate(client, "alice", smtp_only, scope="smtp")).status_code == 200
    for scope in ("imap", "pop3", "master"):
        error_of(await authenticate(client, "alice", smtp_only, scope=scope), 403, "AuthFailed")
    for scope in ("imap", "pop3"):
        assert (await authenticate(client, "alice", mail, scope=scope)).status_code == 200
    error_of(await authenticate(client, "alice", mail, scope="smtp"), 403, "AuthFailed")
    scopes = {tuple(a["scopes"]) for a in await asps(client, alice)}
    assert scopes == {("smtp",), ("imap", "pop3")}
    # A failed try names the ASP and the scope in the log.
    log = (await client.get(f"/users/{alice}/authlog", params={"action": "authentication"})).json()["results"]
    failed = [e for e in log if e["result"] == "fail"]
    assert failed and all(e.get("asp") and e.get("scope") for e in failed)


async def test_star_wins_and_duplicates_collapse(client: httpx.AsyncClient, alice: str) -> None:
    await create_asp(client, alice, scopes=["imap", "*"])
    await create_asp(client, alice, scopes=["smtp", "imap", "smtp"])
    await create_asp(client, alice, scopes="*")
    assert [a["scopes"] for a in await asps(client, alice)] == [["*"], ["imap", "smtp"], ["*"]]


async def test_spaces_and_case_are_ignored(client: httpx.AsyncClient, alice: str) -> None:
    password = (await create_asp(client, alice))["password"]
    spaced = " ".join(password[i : i + 4] for i in range(0, 16, 4))
    for typed in (spaced, password.upper(), f"  {password} ", spaced.upper()):
        response = await authenticate(client, "alice", typed, scope="imap")
        assert response.status_code == 200, (typed, response.text)
    error_of(await authenticate(client, "alice", password[:-1] + ("a" if password[-1] != "a" else "b"), scope="imap"), 403, "AuthFailed")


async def test_master_password_still_works(client: httpx.AsyncClient, alice: str) -> None:
    await create_asp(client, alice)
    for scope in ("master", "imap", "smtp"):
        assert (await authenticate(client, "alice", PASSWORD, scope=scope)).status_code == 200


async def test_last_use_is_recorded(client: httpx.AsyncClient, alice: str) -> None:
    created = await create_asp(client, alice)
    assert (await authenticate(client, "alice", created["password"], scope="imap", ip="198.51.100.7", protocol="IMAP")).status_code == 200
    (item,) = await asps(client, alice)
    assert isinstance(item["lastUse"], str)
    log = (await client.get(f"/users/{alice}/authlog", params={"action": "authentication"})).json()["results"]
    assert log[0]["result"] == "success" and log[0]["asp"] == created["id"] and log[0]["scope"] == "imap"
    assert log[0]["protocol"] == "IMAP" and log[0]["ip"] == "198.51.100.7"


async def test_users_do_not_share_passwords(client: httpx.AsyncClient, alice: str) -> None:
    bob = await create_user(client, "bob")
    bobs = await create_asp(client, bob)
    alices = await create_asp(client, alice)
    error_of(await authenticate(client, "alice", bobs["password"], scope="imap"), 403, "AuthFailed")
    error_of(await authenticate(client, "bob", alices["password"], scope="imap"), 403, "AuthFailed")
    # Bob's ids are not Alice's: 404, and Bob's password stays.
    error_of(await client.delete(f"/users/{alice}/asps/{bobs['id']}"), 404, "AspNotFound")
    assert [a["id"] for a in await asps(client, bob)] == [bobs["id"]]
    assert [a["id"] for a in await asps(client, alice)] == [alices["id"]]
    assert bobs["id"] not in (await client.get(f"/users/{alice}/authlog")).text


async def test_unknown_user_is_404(client: httpx.AsyncClient, alice: str) -> None:
    asp = await create_asp(client, alice)
    error_of(await client.get(f"/users/{UNKNOWN}/asps"), 404, "UserNotFound")
    error_of(await client.post(f"/users/{UNKNOWN}/asps", json={"description": "x"}), 404, "UserNotFound")
    error_of(await client.delete(f"/users/{UNKNOWN}/asps/{asp['id']}"), 404, "UserNotFound")
    error_of(await client.delete(f"/users/{alice}/asps/not-an-id"), 400, "InputValidationError")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "description"),
        ({"description": ""}, "description"),
        ({"description": "   "}, "description"),
        ({"description": None}, "description"),
        ({"description": "x" * 256}, "description"),
        ({"description": "nul\x00"}, "description"),
        ({"description": "x", "scopes": ["master"]}, "scopes"),
        ({"description": "x", "scopes": ["imap", "lmtp"]}, "scopes"),
        ({"description": "x", "scopes": "imap,master"}, "scopes"),
        ({"description": "x", "scopes": 5}, "scopes"),
        ({"description": "x", "generateMobileconfig": "maybe"}, "generateMobileconfig"),
        ({"description": "x", "ip": "1" * 65}, "ip"),
    ],
)
async def test_invalid_input_is_400(client: httpx.AsyncClient, alice: str, body: dict[str, Any], field: str) -> None:
    response = await client.post(f"/users/{alice}/asps", json=body)
    error = error_of(response, 400, "InputValidationError")
    assert field in error.get("details", {}), error
    assert await asps(client, alice) == []


async def test_mobileconfig(client: httpx.AsyncClient, alice: str, runtime: Any) -> None:
    created = await create_asp(client, alice, description="iPhone", scopes=["imap", "smtp"], generateMobileconfig=True)
    assert set(created) == {"success", "id", "password", "mobileconfig"}
    profile = plistlib.loads(base64.b64decode(created["mobileconfig"]))
    assert profile["PayloadType"] == "Configuration" and profile["PayloadVersion"] == 1
    (account,) = profile["PayloadContent"]
    assert account["PayloadType"] == "com.apple.mail.managed"
    assert account["EmailAccountType"] == "EmailTypeIMAP"
    assert account["EmailAddress"] == "alice@example.com"
    assert account["EmailAccountName"] == "Alice"
    assert account["IncomingMailServerHostName"] == account["OutgoingMailServerHostName"] == "mx.example.com"
    assert account["IncomingMailServerUsername"] == account["OutgoingMailServerUsername"] == "alice"
    assert account["IncomingPassword"] == account["OutgoingPassword"] == created["password"]
    # The listening ports (the production ports where a door has no setting).
    imap_listen = getattr(runtime.settings, "imaps_listen", None) or getattr(runtime.settings, "imap_listen", None)
    assert account["IncomingMailServerPortNumber"] == ((parse_listen(imap_listen).port if imap_listen else 0) or 993)
    assert account["OutgoingMailServerPortNumber"] == (parse_listen(runtime.settings.submission_listen).port or 587)
    assert account["IncomingMailServerUseSSL"] is True and account["OutgoingMailServerUseSSL"] is True
    # The password in the profile logs in.
    assert (await authenticate(client, "alice", account["IncomingPassword"], scope="imap")).status_code == 200


async def test_mobileconfig_uses_public_ports(client: httpx.AsyncClient, alice: str, runtime: Any) -> None:
    runtime.settings.submission_listen = "0.0.0.0:587"
    created = await create_asp(client, alice, generateMobileconfig=True)
    (account,) = plistlib.loads(base64.b64decode(created["mobileconfig"]))["PayloadContent"]
    assert account["OutgoingMailServerPortNumber"] == 587
    runtime.settings.submission_public_port = 465
    runtime.settings.imap_public_port = 143
    created = await create_asp(client, alice, generateMobileconfig=True)
    (account,) = plistlib.loads(base64.b64decode(created["mobileconfig"]))["PayloadContent"]
    assert account["OutgoingMailServerPortNumber"] == 465 and account["IncomingMailServerPortNumber"] == 143


async def test_deleted_user_takes_its_passwords(client: httpx.AsyncClient, alice: str) -> None:
    password = (await create_asp(client, alice))["password"]
    assert (await client.delete(f"/users/{alice}")).status_code == 200
    error_of(await authenticate(client, "alice", password, scope="imap"), 403, "AuthFailed")


async def test_mobileconfig_with_control_characters(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """Found by the conformance test: XML can not hold most control characters. (The
    API refuses such a name now; one stored before that still makes a valid file.)"""
    user = await create_user(client, "ctl")
    async with runtime.db.write() as conn:
        await conn.execute(update(users).where(users.c.id == user).values(name="Bell\x07 Name"))
    created = await create_asp(client, user, description="tab\there\x01\x1f\x7f", generateMobileconfig=True)
    (account,) = plistlib.loads(base64.b64decode(created["mobileconfig"]))["PayloadContent"]
    assert account["EmailAccountDescription"] == "tab\there" and account["EmailAccountName"] == "Bell Name"
    # The description itself is kept as given.
    assert [a["description"] for a in await asps(client, user)] == ["tab\there\x01\x1f\x7f"]
