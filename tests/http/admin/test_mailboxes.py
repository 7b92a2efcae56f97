"""/users/{user}/mailboxes over HTTP: list, get, create, update (rename, retention,
subscribed) and delete, with bad input and other users' ids."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.helpers import create_user, folder_id, make_message, upload

UNKNOWN_ID = "0123456789abcdef01234567"
DEFAULT_PATHS = {"INBOX", "Drafts", "Sent Mail", "Junk", "Trash", "Archive"}
SPECIAL_USE = {"Drafts": "\\Drafts", "Sent Mail": "\\Sent", "Junk": "\\Junk", "Trash": "\\Trash", "Archive": "\\Archive"}


async def mailboxes(client: httpx.AsyncClient, user: str, **params: Any) -> list[dict[str, Any]]:
    response = await client.get(f"/users/{user}/mailboxes", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    return body["results"]


async def paths(client: httpx.AsyncClient, user: str) -> set[str]:
    return {m["path"] for m in await mailboxes(client, user)}


async def create(client: httpx.AsyncClient, user: str, path: str, **fields: Any) -> httpx.Response:
    return await client.post(f"/users/{user}/mailboxes", json={"path": path, **fields})


async def create_ok(client: httpx.AsyncClient, user: str, path: str, **fields: Any) -> str:
    response = await create(client, user, path, **fields)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    assert len(body["id"]) == 24 and all(c in "0123456789abcdef" for c in body["id"])
    return body["id"]


async def get_mailbox(client: httpx.AsyncClient, user: str, mailbox: str) -> dict[str, Any]:
    response = await client.get(f"/users/{user}/mailboxes/{mailbox}")
    assert response.status_code == 200, response.text
    return response.json()


async def quota_used(client: httpx.AsyncClient, user: str) -> int:
    response = await client.get(f"/users/{user}")
    assert response.status_code == 200, response.text
    return response.json()["limits"]["quota"]["used"]


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"]
    assert "success" not in body
    if code is not None:
        assert body.get("code") == code, body
    return body


# Listing -----------------------------------------------------------------------------


async def test_new_user_has_the_default_folders_inbox_first(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    results = await mailboxes(client, user)
    assert {m["path"] for m in results} == DEFAULT_PATHS
    assert results[0]["path"] == "INBOX"
    for item in results:
        assert item["name"] == item["path"]
        assert item["specialUse"] == SPECIAL_USE.get(item["path"])
        assert item["subscribed"] is True
        assert isinstance(item["modifyIndex"], int)
        assert len(item["id"]) == 24
    assert len({m["id"] for m in results}) == len(results)


async def test_list_without_counters_has_no_counts(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    for item in await mailboxes(client, user):
        assert "total" not in item
        assert "unseen" not in item
    for item in await mailboxes(client, user, counters="false"):
        assert "total" not in item
        assert "unseen" not in item


async def test_list_with_counters(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    await upload(client, user, inbox, make_message("one"), unseen="true")
    await upload(client, user, inbox, make_message("two"), unseen="true")
    await upload(client, user, inbox, make_message("three"))  # seen (the default)
    results = await mailboxes(client, user, counters="true")
    by_path = {m["path"]: m for m in results}
    assert by_path["INBOX"]["total"] == 3
    assert by_path["INBOX"]["unseen"] == 2
    for path in DEFAULT_PATHS - {"INBOX"}:
        assert by_path[path]["total"] == 0
        assert by_path[path]["unseen"] == 0


async def test_list_of_unknown_user(client: httpx.AsyncClient) -> None:
    assert_error(await client.get(f"/users/{UNKNOWN_ID}/mailboxes"), 404, "UserNotFound")


async def test_list_with_malformed_user_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/users/not-an-id/mailboxes")
    assert response.status_code in (400, 404), response.text
    assert "error" in response.json()


async def test_listing_shows_only_own_folders(client: httpx.AsyncClient) -> None:
    alice = await create_user(client, "alice")
    bob = await create_user(client, "bob")
    await create_ok(client, alice, "Private")
    assert "Private" not in await paths(client, bob)
    alice_ids = {m["id"] for m in await mailboxes(client, alice)}
    bob_ids = {m["id"] for m in await mailboxes(client, bob)}
    assert not alice_ids & bob_ids


# Get one -----------------------------------------------------------------------------


async def test_get_mailbox_fields(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    body = await get_mailbox(client, user, inbox)
    assert body["success"] is True
    assert body["id"] == inbox
    assert body["name"] == "INBOX" and body["path"] == "INBOX"
    assert body["specialUse"] is None
    assert body["total"] == 0 and body["unseen"] == 0
    assert body["uidNext"] == 1
    assert isinstance(body["uidValidity"], int) and body["uidValidity"] > 0
    assert isinstance(body["modifyIndex"], int)
    assert body["subscribed"] is True


async def test_get_mailbox_counters_follow_uploads(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    before = await get_mailbox(client, user, inbox)
    await upload(client, user, inbox, make_message("a"), unseen="true")
    await upload(client, user, inbox, make_message("b"))
    after = await get_mailbox(client, user, inbox)
    assert after["total"] == 2
    assert after["unseen"] == 1
    assert after["uidNext"] == 3
    assert after["uidValidity"] == before["uidValidity"]
    assert after["modifyIndex"] > before["modifyIndex"]


async def test_get_special_use_folder(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    trash = await folder_id(client, user, "Trash")
    body = await get_mailbox(client, user, trash)
    assert body["path"] == "Trash"
    assert body["specialUse"] == "\\Trash"


async def test_get_unknown_mailbox(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    assert_error(await client.get(f"/users/{user}/mailboxes/{UNKNOWN_ID}"), 404, "NoSuchMailbox")


async def test_get_mailbox_of_unknown_user(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    assert_error(await client.get(f"/users/{UNKNOWN_ID}/mailboxes/{inbox}"), 404, "UserNotFound")


async def test_get_malformed_mailbox_id(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    response = await client.get(f"/users/{user}/mailboxes/INBOX")
    assert response.status_code in (400, 404), response.text
    assert "error" in response.json()


async def test_another_users_mailbox_is_not_found(client: httpx.AsyncClient) -> None:
    alice = await create_user(client, "alice")
    bob = await create_user(client, "bob")
    bobs_inbox = await folder_id(client, bob)
    bobs_folder = await create_ok(client, bob, "Secret")
    await upload(client, bob, bobs_inbox, make_message("bob's"))
    for mailbox in (bobs_inbox, bobs_folder):
        body = assert_error(await client.get(f"/users/{alice}/mailboxes/{mailbox}"), 404, "NoSuchMailbox")
        assert "Secret" not in str(body)
        assert_error(await client.put(f"/users/{alice}/mailboxes/{mailbox}", json={"path": "Mine"}), 404, "NoSuchMailbox")
        assert_error(await client.put(f"/users/{alice}/mailboxes/{mailbox}", json={"subscribed": False}), 404, "NoSuchMailbox")
        assert_error(await client.delete(f"/users/{alice}/mailboxes/{mailbox}"), 404, "NoSuchMailbox")
    # Bob's folders are untouched.
    assert await paths(client, bob) == DEFAULT_PATHS | {"Secret"}
    assert (await get_mailbox(client, bob, bobs_inbox))["total"] == 1
    assert all(m["subscribed"] for m in await mailboxes(client, bob))
    assert "Mine" not in await paths(client, alice)


# Create ------------------------------------------------------------------------------


async def test_create_top_level(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    new = await create_ok(client, user, "Projects")
    body = await get_mailbox(client, user, new)
    assert body["path"] == "Projects" and body["name"] == "Projects"
    assert body["specialUse"] is None
    assert body["total"] == 0 and body["unseen"] == 0
    assert body["uidNext"] == 1
    assert body["subscribed"] is True
    assert body["retention"] is False
    assert await folder_id(client, user, "Projects") == new


async def test_create_nested_creates_missing_parents(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    leaf = await create_ok(client, user, "Some parent/Subfolder/My New mailbox")
    all_paths = await paths(client, user)
    assert {"Some parent", "Some parent/Subfolder", "Some parent/Subfolder/My New mailbox"} <= all_paths
    body = await get_mailbox(client, user, leaf)
    assert body["path"] == "Some parent/Subfolder/My New mailbox"
    assert body["name"] == "My New mailbox"
    parent = await folder_id(client, user, "Some parent/Subfolder")
    assert (await get_mailbox(client, user, parent))["name"] == "Subfolder"


async def test_create_under_existing_parent(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    parent = await create_ok(client, user, "Work")
    await create_ok(client, user, "Work/Reports")
    assert await folder_id(client, user, "Work") == parent  # the parent is not recreated
    assert {"Work", "Work/Reports"} <= await paths(client, user)


async def test_create_unicode_names(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    for path in ("Доклады", "報告/二〇二四", "Café ☕/Reçus", "emoji 📬"):
        new = await create_ok(client, user, path)
        body = await get_mailbox(client, user, new)
        assert body["path"] == path
        assert body["name"] == path.rsplit("/", 1)[-1]
    assert {"報告", "報告/二〇二四", "Café ☕", "Café ☕/Reçus"} <= await paths(client, user)


async def test_create_unicode_name_is_normalised_nfc(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    decomposed = "Cafe\u0301"  # e + combining acute
    new = await create_ok(client, user, decomposed)
    assert (await get_mailbox(client, user, new))["path"] == "Caf\u00e9"
    # The composed form is the same folder.
    assert_error(await create(client, user, "Caf\u00e9"), 409)


async def test_create_under_inbox_in_any_case(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    new = await create_ok(client, user, "inbox/x")
    body = await get_mailbox(client, user, new)
    assert body["path"] == "INBOX/x"
    assert body["name"] == "x"
    all_paths = await paths(client, user)
    assert "INBOX/x" in all_paths
    assert not any(p.startswith("inbox") for p in all_paths)
    assert_error(await create(client, user, "Inbox/x"), 409)


async def test_create_duplicate_is_conflict(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    first = await create_ok(client, user, "Dup")
    assert_error(await create(client, user, "Dup"), 409)
    assert_error(await create(client, user, "INBOX"), 409)
    assert_error(await create(client, user, "inbox"), 409)
    assert_error(await create(client, user, "Trash"), 409)
    assert sorted(p for p in await paths(client, user) if p == "Dup") == ["Dup"]
    assert await folder_id(client, user, "Dup") == first


async def test_create_existing_parent_path_is_conflict(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    await create_ok(client, user, "a/b/c")
    assert_error(await create(client, user, "a/b"), 409)
    assert_error(await create(client, user, "a"), 409)


async def test_same_path_for_two_users(client: httpx.AsyncClient) -> None:
    alice = await create_user(client, "alice")
    bob = await create_user(client, "bob")
    a = await create_ok(client, alice, "Shared name")
    b = await create_ok(client, bob, "Shared name")
    assert a != b


@pytest.mark.parametrize(
    "path",
    [
        "a//b",
        "a/",
        "/",
        "//",
        "",
        " ",
        "a/ /b",
        "bad\x00name",
        "bad\x07name",
        "line\nbreak",
        "tab\there",
        "del\x7fete",
        "x" * 1025,
        "a/" * 600 + "a",
        "a/" * 40 + "a",
        "y" * 256,
    ],
)
async def test_create_invalid_paths(client: httpx.AsyncClient, path: str) -> None:
    user = await create_user(client)
    before = await paths(client, user)
    body = assert_error(await create(client, user, path), 400, "InputValidationError")
    assert "path" in (body.get("details") or {}), body
    assert await paths(client, user) == before


async def test_create_longest_path_is_accepted(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    path = "/".join(["p" * 200] * 5)[:1024]
    path = path.rstrip("/")
    assert len(path) <= 1024
    new = await create_ok(client, user, path)
    assert (await get_mailbox(client, user, new))["path"] == path


@pytest.mark.parametrize("body", [{}, {"path": None}, {"path": 5}, {"path": ["a"]}, {"path": "ok", "retention": -1}, {"path": "ok", "retention": "soon"}])
async def test_create_bad_bodies(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    user = await create_user(client)
    before = await paths(client, user)
    assert_error(await client.post(f"/users/{user}/mailboxes", json=body), 400, "InputValidationError")
    assert await paths(client, user) == before


async def test_create_not_json(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    response = await client.post(f"/users/{user}/mailboxes", content=b"{not json", headers={"Content-Type": "application/json"})
    assert_error(response, 400)


async def test_create_for_unknown_user(client: httpx.AsyncClient) -> None:
    assert_error(await create(client, UNKNOWN_ID, "Anything"), 404, "UserNotFound")


# Retention ---------------------------------------------------------------------------

DAY_MS = 24 * 3600 * 1000


async def message_details(client: httpx.AsyncClient, user: str, mailbox: str, uid: int) -> dict[str, Any]:
    response = await client.get(f"/users/{user}/mailboxes/{mailbox}/messages/{uid}")
    assert response.status_code == 200, response.text
    return response.json()


def parse_iso_ms(value: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


async def test_retention_on_create(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    new = await create_ok(client, user, "Short lived", retention=DAY_MS)
    body = await get_mailbox(client, user, new)
    assert body["retention"] == DAY_MS
    assert (await mailboxes(client, user))[0]["path"] == "INBOX"
    listed = {m["path"]: m for m in await mailboxes(client, user)}
    assert listed["Short lived"]["retention"] == DAY_MS
    uid = await upload(client, user, new, make_message("expiring"))
    details = await message_details(client, user, new, uid)
    assert details["expires"] is not False
    expires = parse_iso_ms(details["expires"])
    idate = parse_iso_ms(details["idate"])
    assert expires - idate == DAY_MS


async def test_no_retention_means_no_expiry(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    new = await create_ok(client, user, "Forever")
    uid = await upload(client, user, new, make_message("kept"))
    assert (await message_details(client, user, new, uid))["expires"] is False


async def test_retention_on_update_applies_to_new_messages(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    new = await create_ok(client, user, "Later")
    old_uid = await upload(client, user, new, make_message("before"))
    response = await client.put(f"/users/{user}/mailboxes/{new}", json={"retention": 2 * DAY_MS})
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    assert (await get_mailbox(client, user, new))["retention"] == 2 * DAY_MS
    new_uid = await upload(client, user, new, make_message("after"))
    assert (await message_details(client, user, new, old_uid))["expires"] is False
    details = await message_details(client, user, new, new_uid)
    assert parse_iso_ms(details["expires"]) - parse_iso_ms(details["idate"]) == 2 * DAY_MS
    # Turned off again: later messages do not expire.
    for off in (False, 0):
        response = await client.put(f"/users/{user}/mailboxes/{new}", json={"retention": off})
        assert response.status_code == 200, response.text
        assert (await get_mailbox(client, user, new))["retention"] is False
    last = await upload(client, user, new, make_message("last"))
    assert (await message_details(client, user, new, last))["expires"] is False


async def test_user_retention_is_the_default_for_new_folders(client: httpx.AsyncClient) -> None:
    user = await create_user(client, retention=3 * DAY_MS)
    new = await create_ok(client, user, "Inherits")
    assert (await get_mailbox(client, user, new))["retention"] == 3 * DAY_MS
    own = await create_ok(client, user, "Own", retention=DAY_MS)
    assert (await get_mailbox(client, user, own))["retention"] == DAY_MS


@pytest.mark.parametrize("retention", [-1, "a day", 2**60])
async def test_invalid_retention_on_update(client: httpx.AsyncClient, retention: Any) -> None:
    user = await create_user(client)
    new = await create_ok(client, user, "R")
    assert_error(await client.put(f"/users/{user}/mailboxes/{new}", json={"retention": retention}), 400, "InputValidationError")
    assert (await get_mailbox(client, user, new))["retention"] is False


# Update: rename and subscribed --------------------------------------------------------


async def rename(client: httpx.AsyncClient, user: str, mailbox: str, path: str) -> httpx.Response:
    return await client.put(f"/users/{user}/mailboxes/{mailbox}", json={"path": path})


async def test_rename_keeps_id_and_messages(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    old = await create_ok(client, user, "Old name")
    uid = await upload(client, user, old, make_message("inside"))
    before = await get_mailbox(client, user, old)
    response = await rename(client, user, old, "New name")
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    after = await get_mailbox(client, user, old)
    assert after["path"] == "New name" and after["name"] == "New name"
    assert after["uidValidity"] == before["uidValidity"]
    assert after["total"] == 1
    assert "Old name" not in await paths(client, user)
    assert (await message_details(client, user, old, uid))["subject"] == "inside"


async def test_rename_moves_children(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    parent = await create_ok(client, user, "Work")
    child = await create_ok(client, user, "Work/Reports")
    grandchild = await create_ok(client, user, "Work/Reports/2024")
    sibling = await create_ok(client, user, "Workshop")  # shares a prefix, not a child
    response = await rename(client, user, parent, "Job")
    assert response.status_code == 200, response.text
    assert (await get_mailbox(client, user, parent))["path"] == "Job"
    assert (await get_mailbox(client, user, child))["path"] == "Job/Reports"
    assert (await get_mailbox(client, user, grandchild))["path"] == "Job/Reports/2024"
    assert (await get_mailbox(client, user, sibling))["path"] == "Workshop"
    all_paths = await paths(client, user)
    assert not {"Work", "Work/Reports", "Work/Reports/2024"} & all_paths


async def test_rename_moves_only_the_exact_case_subtree(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    lower = await create_ok(client, user, "work")
    other = await create_ok(client, user, "Work/Child")
    response = await rename(client, user, lower, "play")
    assert response.status_code == 200, response.text
    assert (await get_mailbox(client, user, lower))["path"] == "play"
    assert (await get_mailbox(client, user, other))["path"] == "Work/Child"


async def test_rename_with_like_wildcards_in_path(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    target = await create_ok(client, user, "a_b")
    child = await create_ok(client, user, "a_b/c")
    lookalike = await create_ok(client, user, "axb/c")
    percent = await create_ok(client, user, "100%")
    response = await rename(client, user, target, "renamed")
    assert response.status_code == 200, response.text
    assert (await get_mailbox(client, user, child))["path"] == "renamed/c"
    assert (await get_mailbox(client, user, lookalike))["path"] == "axb/c"
    assert (await get_mailbox(client, user, percent))["path"] == "100%"


async def test_rename_child_into_another_parent_creates_parents(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    child = await create_ok(client, user, "A/B")
    response = await rename(client, user, child, "X/Y/B")
    assert response.status_code == 200, response.text
    all_paths = await paths(client, user)
    assert {"A", "X", "X/Y", "X/Y/B"} <= all_paths
    assert "A/B" not in all_paths
    assert (await get_mailbox(client, user, child))["path"] == "X/Y/B"


async def test_rename_normalises_inbox_prefix(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    new = await create_ok(client, user, "Loose")
    response = await rename(client, user, new, "inbox/Loose")
    assert response.status_code == 200, response.text
    assert (await get_mailbox(client, user, new))["path"] == "INBOX/Loose"


async def test_rename_inbox_is_forbidden(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    assert_error(await rename(client, user, inbox, "Not inbox"), 400, "NotPermitted")
    assert (await get_mailbox(client, user, inbox))["path"] == "INBOX"
    assert "Not inbox" not in await paths(client, user)


async def test_rename_to_same_path_is_a_no_op(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    new = await create_ok(client, user, "Same")
    response = await rename(client, user, new, "Same")
    assert response.status_code == 200, response.text
    assert (await get_mailbox(client, user, new))["path"] == "Same"


async def test_rename_onto_existing_path_is_conflict(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    first = await create_ok(client, user, "First")
    await create_ok(client, user, "First/Kid")
    await create_ok(client, user, "Second")
    assert_error(await rename(client, user, first, "Second"), 409)
    assert_error(await rename(client, user, first, "Trash"), 409)
    assert_error(await rename(client, user, first, "INBOX"), 400)
    # Nothing moved, not even the children.
    assert {"First", "First/Kid", "Second"} <= await paths(client, user)
    assert (await get_mailbox(client, user, first))["path"] == "First"


async def test_rename_into_own_subtree_is_invalid(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    parent = await create_ok(client, user, "Tree")
    await create_ok(client, user, "Tree/Branch")
    for path in ("Tree/Branch/Leaf", "Tree/New"):
        body = assert_error(await rename(client, user, parent, path), 400)
        assert body.get("details", {}).get("path"), body
    assert {"Tree", "Tree/Branch"} <= await paths(client, user)
    assert not any(p.startswith("Tree/Branch/") or p == "Tree/New" for p in await paths(client, user))


@pytest.mark.parametrize("path", ["a//b", "trail/", "", "ctl\x01", "x" * 1025])
async def test_rename_invalid_path(client: httpx.AsyncClient, path: str) -> None:
    user = await create_user(client)
    new = await create_ok(client, user, "Valid")
    assert_error(await rename(client, user, new, path), 400, "InputValidationError")
    assert (await get_mailbox(client, user, new))["path"] == "Valid"


async def test_rename_special_use_folder_keeps_its_role(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    archive = await folder_id(client, user, "Archive")
    response = await rename(client, user, archive, "Old mail")
    assert response.status_code == 200, response.text
    body = await get_mailbox(client, user, archive)
    assert body["path"] == "Old mail"
    assert body["specialUse"] == "\\Archive"


async def test_subscribed_update(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    new = await create_ok(client, user, "Sub")
    response = await client.put(f"/users/{user}/mailboxes/{new}", json={"subscribed": False})
    assert response.status_code == 200, response.text
    assert (await get_mailbox(client, user, new))["subscribed"] is False
    listed = {m["path"]: m for m in await mailboxes(client, user)}
    assert listed["Sub"]["subscribed"] is False
    assert listed["INBOX"]["subscribed"] is True
    response = await client.put(f"/users/{user}/mailboxes/{new}", json={"subscribed": True})
    assert response.status_code == 200, response.text
    assert (await get_mailbox(client, user, new))["subscribed"] is True


async def test_update_several_fields_at_once(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    new = await create_ok(client, user, "Multi")
    response = await client.put(f"/users/{user}/mailboxes/{new}", json={"path": "Multi2", "subscribed": False, "retention": DAY_MS})
    assert response.status_code == 200, response.text
    body = await get_mailbox(client, user, new)
    assert (body["path"], body["subscribed"], body["retention"]) == ("Multi2", False, DAY_MS)


async def test_failed_rename_changes_nothing_else(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    new = await create_ok(client, user, "Keep")
    await create_ok(client, user, "Taken")
    response = await client.put(f"/users/{user}/mailboxes/{new}", json={"path": "Taken", "subscribed": False, "retention": DAY_MS})
    assert_error(response, 409)
    body = await get_mailbox(client, user, new)
    assert (body["path"], body["subscribed"], body["retention"]) == ("Keep", True, False)


@pytest.mark.parametrize("body", [{"subscribed": "maybe"}, {"path": 7}, {"path": ""}])
async def test_update_bad_bodies(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    user = await create_user(client)
    new = await create_ok(client, user, "Bad")
    assert_error(await client.put(f"/users/{user}/mailboxes/{new}", json=body), 400, "InputValidationError")
    after = await get_mailbox(client, user, new)
    assert (after["path"], after["subscribed"]) == ("Bad", True)


async def test_update_unknown_mailbox_and_user(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    assert_error(await client.put(f"/users/{user}/mailboxes/{UNKNOWN_ID}", json={"subscribed": False}), 404, "NoSuchMailbox")
    assert_error(await client.put(f"/users/{UNKNOWN_ID}/mailboxes/{inbox}", json={"subscribed": False}), 404, "UserNotFound")


# Delete ------------------------------------------------------------------------------


async def test_delete_user_folder(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    new = await create_ok(client, user, "Temporary")
    response = await client.delete(f"/users/{user}/mailboxes/{new}")
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    assert "Temporary" not in await paths(client, user)
    assert_error(await client.get(f"/users/{user}/mailboxes/{new}"), 404, "NoSuchMailbox")
    assert_error(await client.delete(f"/users/{user}/mailboxes/{new}"), 404, "NoSuchMailbox")
    # The path can be created again, as a new folder.
    again = await create_ok(client, user, "Temporary")
    assert again != new


@pytest.mark.parametrize("path", sorted(DEFAULT_PATHS))
async def test_delete_protected_folders_is_forbidden(client: httpx.AsyncClient, path: str) -> None:
    user = await create_user(client)
    mailbox = await folder_id(client, user, path)
    await upload(client, user, mailbox, make_message("stays"))
    assert_error(await client.delete(f"/users/{user}/mailboxes/{mailbox}"), 400, "NotPermitted")
    assert path in await paths(client, user)
    assert (await get_mailbox(client, user, mailbox))["total"] == 1


async def test_delete_renamed_special_folder_is_still_forbidden(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    junk = await folder_id(client, user, "Junk")
    assert (await rename(client, user, junk, "Spam")).status_code == 200
    assert_error(await client.delete(f"/users/{user}/mailboxes/{junk}"), 400, "NotPermitted")


async def test_delete_folder_with_messages_releases_quota(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    doomed = await create_ok(client, user, "Doomed")
    kept_raw = make_message("kept", "k" * 100 + "\r\n")
    await upload(client, user, inbox, kept_raw)
    raws = [make_message(f"gone {i}", "x" * (200 + i) + "\r\n") for i in range(3)]
    for raw in raws:
        await upload(client, user, doomed, raw)
    assert await quota_used(client, user) == len(kept_raw) + sum(len(r) for r in raws)
    response = await client.delete(f"/users/{user}/mailboxes/{doomed}")
    assert response.status_code == 200, response.text
    assert await quota_used(client, user) == len(kept_raw)
    assert_error(await client.get(f"/users/{user}/mailboxes/{doomed}/messages"), 404, "NoSuchMailbox")
    assert (await get_mailbox(client, user, inbox))["total"] == 1


async def test_delete_folder_releases_its_blobs(client: httpx.AsyncClient, runtime: Any) -> None:
    from postern.storage.blobs import blob_key
    from postern.storage.schema import blobs

    user = await create_user(client)
    inbox = await folder_id(client, user)
    doomed = await create_ok(client, user, "Doomed")
    shared = make_message("shared")
    only = make_message("only here")
    await upload(client, user, inbox, shared)
    await upload(client, user, doomed, shared)
    await upload(client, user, doomed, only)

    async def refcount(key: str) -> int | None:
        async with runtime.db.read() as conn:
            return (await conn.execute(blobs.select().where(blobs.c.key == key))).first().refcount

    assert await refcount(blob_key(shared)) == 2
    assert await refcount(blob_key(only)) == 1
    assert (await client.delete(f"/users/{user}/mailboxes/{doomed}")).status_code == 200
    assert await refcount(blob_key(shared)) == 1
    assert await refcount(blob_key(only)) == 0
    await runtime.mailstore.collect_garbage()
    assert not await runtime.blobs.exists(blob_key(only))
    assert await runtime.blobs.exists(blob_key(shared))


async def test_delete_parent_keeps_children(client: httpx.AsyncClient) -> None:
    """As with IMAP DELETE, only the named folder goes; its children stay reachable."""
    user = await create_user(client)
    parent = await create_ok(client, user, "Parent")
    child = await create_ok(client, user, "Parent/Child")
    await upload(client, user, child, make_message("in the child"))
    assert (await client.delete(f"/users/{user}/mailboxes/{parent}")).status_code == 200
    listed = await paths(client, user)
    assert "Parent" not in listed and "Parent/Child" in listed
    body = await get_mailbox(client, user, child)
    assert (body["path"], body["total"]) == ("Parent/Child", 1)
    # The parent can be created again, and the child keeps its id.
    again = await create_ok(client, user, "Parent")
    assert again != parent
    assert await folder_id(client, user, "Parent/Child") == child


async def test_delete_unknown_user(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    new = await create_ok(client, user, "X")
    assert_error(await client.delete(f"/users/{UNKNOWN_ID}/mailboxes/{new}"), 404, "UserNotFound")
    assert "X" in await paths(client, user)


async def test_requires_token(anonymous: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    response = await anonymous.get(f"/users/{user}/mailboxes")
    assert response.status_code == 401
    response = await anonymous.post(f"/users/{user}/mailboxes", json={"path": "Nope"})
    assert response.status_code == 401
    assert "Nope" not in await paths(client, user)


async def test_recreated_folder_gets_new_uid_validity(client: httpx.AsyncClient) -> None:
    """RFC 3501: a mailbox deleted and created again with the same name must not
    reuse the UIDVALIDITY, or clients would show their cache of the old one."""
    user = await create_user(client)
    first = await create_ok(client, user, "Again")
    old = await get_mailbox(client, user, first)
    await upload(client, user, first, make_message("old"))
    assert (await client.delete(f"/users/{user}/mailboxes/{first}")).status_code == 200
    second = await create_ok(client, user, "Again")
    new = await get_mailbox(client, user, second)
    assert new["uidNext"] == 1
    assert new["uidValidity"] != old["uidValidity"]
    # Likewise for a name freed by a rename.
    assert (await rename(client, user, second, "Moved away")).status_code == 200
    third = await create_ok(client, user, "Again")
    assert (await get_mailbox(client, user, third))["uidValidity"] not in (old["uidValidity"], new["uidValidity"])


async def test_leading_slash_is_stripped(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    new = await create_ok(client, user, "/Lead/Child")
    assert (await get_mailbox(client, user, new))["path"] == "Lead/Child"
    assert (await rename(client, user, new, "//Moved")).status_code == 200
    assert (await get_mailbox(client, user, new))["path"] == "Moved"


async def test_resolve_path(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    new = await create_ok(client, user, "Deep/Nested folder")
    for path in ("Deep/Nested%20folder", "/Deep/Nested folder"):
        response = await client.get(f"/users/{user}/mailboxes/resolve/{path}")
        assert response.status_code == 200, response.text
        assert response.json() == {"success": True, "id": new}
    inbox = await folder_id(client, user)
    assert (await client.get(f"/users/{user}/mailboxes/resolve/inbox")).json() == {"success": True, "id": inbox}
    assert_error(await client.get(f"/users/{user}/mailboxes/resolve/Missing"), 404, "NoSuchMailbox")
    assert_error(await client.get(f"/users/{user}/mailboxes/resolve/Deep/messages"), 404, "NoSuchMailbox")
    assert_error(await client.get(f"/users/{UNKNOWN_ID}/mailboxes/resolve/INBOX"), 404, "UserNotFound")
    assert (await client.get("/users/not-an-id/mailboxes/resolve/INBOX")).status_code == 400


async def test_special_use_filter(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    await create_ok(client, user, "Plain")
    response = await client.get(f"/users/{user}/mailboxes", params={"specialUse": "true"})
    assert response.status_code == 200, response.text
    assert {m["path"]: m["specialUse"] for m in response.json()["results"]} == SPECIAL_USE
