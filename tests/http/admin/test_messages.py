"""/users/{user}/mailboxes/{mailbox}/messages over HTTP: upload, list with cursors,
the summary parsed at append, threads, update (flags, expiry, move) and delete."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest

from postern.config import Settings
from postern.serve.runtime import Runtime
from postern.storage.schema import blobs
from tests.apps import app_for
from tests.conftest import ADMIN_TOKEN, FAST_PASSWORDS
from tests.helpers import create_user, folder_id, make_message, upload

UNKNOWN_ID = "0123456789abcdef01234567"
LIST_FIELDS = {"id", "mailbox", "thread", "from", "subject", "date", "intro", "attachments", "seen", "deleted", "flagged", "draft"}


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"]
    assert "success" not in body
    if code is not None:
        assert body.get("code") == code, body
    return body


def url(user: str, mailbox: str, message: int | str | None = None) -> str:
    base = f"/users/{user}/mailboxes/{mailbox}/messages"
    return base if message is None else f"{base}/{message}"


async def listing(client: httpx.AsyncClient, user: str, mailbox: str, **params: Any) -> dict[str, Any]:
    response = await client.get(url(user, mailbox), params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    return body


async def uids(client: httpx.AsyncClient, user: str, mailbox: str) -> list[int]:
    return [m["id"] for m in (await listing(client, user, mailbox, order="asc", limit=250))["results"]]


async def details(client: httpx.AsyncClient, user: str, mailbox: str, uid: int) -> dict[str, Any]:
    response = await client.get(url(user, mailbox, uid))
    assert response.status_code == 200, response.text
    return response.json()


async def mailbox(client: httpx.AsyncClient, user: str, folder: str) -> dict[str, Any]:
    response = await client.get(f"/users/{user}/mailboxes/{folder}")
    assert response.status_code == 200, response.text
    return response.json()


async def quota_used(client: httpx.AsyncClient, user: str) -> int:
    response = await client.get(f"/users/{user}")
    assert response.status_code == 200, response.text
    return response.json()["limits"]["quota"]["used"]


async def new_folder(client: httpx.AsyncClient, user: str, path: str, **fields: Any) -> str:
    response = await client.post(f"/users/{user}/mailboxes", json={"path": path, **fields})
    assert response.status_code == 200, response.text
    return response.json()["id"]


async def update(client: httpx.AsyncClient, user: str, folder: str, message: int | str, **body: Any) -> httpx.Response:
    return await client.put(url(user, folder, message), json=body)


async def refcount(runtime: Runtime, key: str) -> int | None:
    async with runtime.db.read() as conn:
        row = (await conn.execute(blobs.select().where(blobs.c.key == key))).first()
    return None if row is None else int(row.refcount)


async def blob_keys(runtime: Runtime) -> list[str]:
    return [key async for key in runtime.blobs.keys()]


def iso_ms(value: str) -> int:
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


# Upload ------------------------------------------------------------------------------


async def test_upload_raw_rfc822(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    raw = make_message("Hello there")
    response = await client.post(url(user, inbox), content=raw, headers={"Content-Type": "message/rfc822"})
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "message": {"id": 1, "mailbox": inbox, "size": len(raw)}}
    body = await details(client, user, inbox, 1)
    assert body["subject"] == "Hello there"
    assert body["size"] == len(raw)
    # The default of WildDuck's upload: seen, not flagged, not a draft.
    assert (body["seen"], body["flagged"], body["draft"], body["deleted"]) == (True, False, False, False)


async def test_upload_raw_with_flags_in_query(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    uid = await upload(client, user, inbox, make_message("flags"), unseen="true", flagged="true", draft="true")
    body = await details(client, user, inbox, uid)
    assert (body["seen"], body["flagged"], body["draft"]) == (False, True, True)
    assert (await mailbox(client, user, inbox))["unseen"] == 1


async def test_upload_json(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    raw = make_message("Über JSON", "Grüße\r\n")
    response = await client.post(
        url(user, inbox),
        json={"raw": raw.decode("utf-8"), "unseen": True, "flagged": True, "draft": False, "date": "2020-01-02T03:04:05.678Z"},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "message": {"id": 1, "mailbox": inbox, "size": len(raw)}}
    body = await details(client, user, inbox, 1)
    assert (body["seen"], body["flagged"], body["draft"]) == (False, True, False)
    assert body["idate"] == "2020-01-02T03:04:05.678Z"
    assert body["subject"] == "Über JSON"
    eml = await client.get(url(user, inbox, 1) + "/message.eml")
    assert eml.content == raw


async def test_upload_json_defaults(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    before = datetime.now(UTC).timestamp() * 1000
    response = await client.post(url(user, inbox), json={"raw": make_message("defaults").decode()})
    assert response.status_code == 200, response.text
    after = datetime.now(UTC).timestamp() * 1000
    body = await details(client, user, inbox, 1)
    assert (body["seen"], body["flagged"], body["draft"]) == (True, False, False)
    assert before - 1000 <= iso_ms(body["idate"]) <= after + 1000


async def test_upload_json_date_without_zone_is_utc(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    response = await client.post(url(user, inbox), json={"raw": make_message().decode(), "date": "2019-05-06T07:08:09"})
    assert response.status_code == 200, response.text
    assert (await details(client, user, inbox, 1))["idate"] == "2019-05-06T07:08:09.000Z"


@pytest.mark.parametrize("date", ["9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00"])
async def test_upload_json_date_beyond_the_writable_years(client: httpx.AsyncClient, date: str) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    body = assert_error(await client.post(url(user, inbox), json={"raw": make_message().decode(), "date": date}), 400, "InputValidationError")
    assert "date" in body["details"]
    assert (await mailbox(client, user, inbox))["total"] == 0
    assert (await listing(client, user, inbox))["results"] == []


@pytest.mark.parametrize(
    ("date", "idate"),
    [
        ("0500-06-07T08:09:10Z", "0500-06-07T08:09:10.000Z"),
        ("1969-12-31T23:59:58.5Z", "1969-12-31T23:59:58.500Z"),
        ("9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59.999Z"),
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000Z"),
    ],
)
async def test_upload_json_unusual_dates(client: httpx.AsyncClient, date: str, idate: str) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    response = await client.post(url(user, inbox), json={"raw": make_message().decode(), "date": date})
    assert response.status_code == 200, response.text
    assert (await details(client, user, inbox, 1))["idate"] == idate
    assert (await listing(client, user, inbox))["results"][0]["idate"] == idate


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"raw": ""},
        {"raw": 5},
        {"raw": None},
        {"raw": "From: a@b\r\n\r\nx", "unseen": "perhaps"},
        {"raw": "From: a@b\r\n\r\nx", "date": "yesterday"},
    ],
)
async def test_upload_json_invalid(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    assert_error(await client.post(url(user, inbox), json=body), 400, "InputValidationError")
    assert (await mailbox(client, user, inbox))["total"] == 0


async def test_upload_json_malformed(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    response = await client.post(url(user, inbox), content=b'{"raw": ', headers={"Content-Type": "application/json"})
    assert_error(response, 400)
    assert (await mailbox(client, user, inbox))["total"] == 0


async def test_uids_ascend_per_folder_from_one(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    other = await new_folder(client, user, "Other")
    got_inbox = [await upload(client, user, inbox, make_message(f"i{i}")) for i in range(4)]
    got_other = [await upload(client, user, other, make_message(f"o{i}")) for i in range(3)]
    got_inbox.append(await upload(client, user, inbox, make_message("i4")))
    assert got_inbox == [1, 2, 3, 4, 5]
    assert got_other == [1, 2, 3]
    assert (await mailbox(client, user, inbox))["uidNext"] == 6
    assert (await mailbox(client, user, other))["uidNext"] == 4


async def test_uids_are_not_reused_after_delete(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    for i in range(3):
        await upload(client, user, inbox, make_message(f"m{i}"))
    assert (await client.delete(url(user, inbox, 3))).status_code == 200
    assert await upload(client, user, inbox, make_message("next")) == 4


async def test_counters_and_quota_follow_uploads(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    assert await quota_used(client, user) == 0
    before = await mailbox(client, user, inbox)
    sizes = 0
    for i in range(3):
        raw = make_message(f"n{i}", "body " * (i + 1) + "\r\n")
        await upload(client, user, inbox, raw, unseen="true" if i != 1 else "false")
        sizes += len(raw)
        now = await mailbox(client, user, inbox)
        assert now["total"] == i + 1
        assert await quota_used(client, user) == sizes
    after = await mailbox(client, user, inbox)
    assert after["unseen"] == 2
    assert after["size"] == sizes
    assert after["modifyIndex"] >= before["modifyIndex"] + 3


async def test_same_bytes_twice_share_one_blob(client: httpx.AsyncClient, runtime: Runtime) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    other = await new_folder(client, user, "Copy")
    raw = make_message("twice")
    key = hashlib.sha256(raw).hexdigest()
    first = await upload(client, user, inbox, raw)
    second = await upload(client, user, inbox, raw)
    third = await upload(client, user, other, raw)
    assert (first, second, third) == (1, 2, 1)
    assert await blob_keys(runtime) == [key]
    assert await runtime.blobs.get(key) == raw
    assert await refcount(runtime, key) == 3
    assert (await mailbox(client, user, inbox))["total"] == 2
    assert await quota_used(client, user) == 3 * len(raw)
    # Deleting one keeps the bytes for the others.
    assert (await client.delete(url(user, inbox, first))).status_code == 200
    assert await refcount(runtime, key) == 2
    assert (await client.get(url(user, inbox, second) + "/message.eml")).content == raw


async def test_same_bytes_for_two_users_share_one_blob(client: httpx.AsyncClient, runtime: Runtime) -> None:
    alice = await create_user(client, "alice")
    bob = await create_user(client, "bob")
    raw = make_message("to both")
    await upload(client, alice, await folder_id(client, alice), raw)
    await upload(client, bob, await folder_id(client, bob), raw)
    key = hashlib.sha256(raw).hexdigest()
    assert await refcount(runtime, key) == 2
    assert await blob_keys(runtime) == [key]


async def test_quota_exceeded_stores_nothing(client: httpx.AsyncClient, runtime: Runtime) -> None:
    first = make_message("fits", "a" * 100 + "\r\n")
    second = make_message("too much", "b" * 100 + "\r\n")
    user = await create_user(client, quota=len(first) + len(second) - 1)
    inbox = await folder_id(client, user)
    await upload(client, user, inbox, first)
    before = await mailbox(client, user, inbox)
    response = await client.post(url(user, inbox), content=second, headers={"Content-Type": "message/rfc822"})
    assert_error(response, 403, "OverQuotaError")
    after = await mailbox(client, user, inbox)
    assert after == before
    assert (after["total"], after["uidNext"], after["size"]) == (1, 2, len(first))
    assert await quota_used(client, user) == len(first)
    assert await uids(client, user, inbox) == [1]
    assert await refcount(runtime, hashlib.sha256(second).hexdigest()) is None
    # JSON uploads are refused alike.
    assert_error(await client.post(url(user, inbox), json={"raw": second.decode()}), 403, "OverQuotaError")
    assert await uids(client, user, inbox) == [1]


async def test_quota_exactly_reached_is_accepted(client: httpx.AsyncClient) -> None:
    raw = make_message("exact")
    user = await create_user(client, quota=len(raw))
    inbox = await folder_id(client, user)
    await upload(client, user, inbox, raw)
    assert await quota_used(client, user) == len(raw)
    assert_error(
        await client.post(url(user, inbox), content=b"X: y\r\n\r\nz", headers={"Content-Type": "message/rfc822"}),
        403,
        "OverQuotaError",
    )


async def test_quota_is_freed_by_delete(client: httpx.AsyncClient) -> None:
    raw = make_message("only one fits", "x" * 50 + "\r\n")
    user = await create_user(client, quota=len(raw) + 10)
    inbox = await folder_id(client, user)
    await upload(client, user, inbox, raw)
    assert_error(await client.post(url(user, inbox), content=raw, headers={"Content-Type": "message/rfc822"}), 403, "OverQuotaError")
    assert (await client.delete(url(user, inbox, 1))).status_code == 200
    assert await quota_used(client, user) == 0
    assert await upload(client, user, inbox, raw) == 2


SMALL_LIMIT = 2000


@pytest.fixture
async def small_client(settings: Settings, runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """A second server on the same data with max_message_size lowered."""
    small = Runtime.build(settings.model_copy(update={"max_message_size": SMALL_LIMIT}), passwords=FAST_PASSWORDS)
    await small.start()
    try:
        transport = httpx.ASGITransport(app=app_for(small))
        async with httpx.AsyncClient(transport=transport, base_url="http://postern.test", headers={"X-Access-Token": ADMIN_TOKEN}) as c:
            yield c
    finally:
        await small.close()


def sized(size: int) -> bytes:
    head = make_message("sized", "")
    return head + b"x" * (size - len(head))


@pytest.mark.parametrize("size", [SMALL_LIMIT + 1, SMALL_LIMIT * 2, SMALL_LIMIT + 70_000, 10 * SMALL_LIMIT + 200_000])
async def test_too_large_raw(small_client: httpx.AsyncClient, size: int) -> None:
    user = await create_user(small_client)
    inbox = await folder_id(small_client, user)
    raw = sized(size)
    assert len(raw) == size
    response = await small_client.post(url(user, inbox), content=raw, headers={"Content-Type": "message/rfc822"})
    assert_error(response, 413)
    assert (await mailbox(small_client, user, inbox))["total"] == 0
    assert await quota_used(small_client, user) == 0


async def test_too_large_json(small_client: httpx.AsyncClient) -> None:
    user = await create_user(small_client)
    inbox = await folder_id(small_client, user)
    response = await small_client.post(url(user, inbox), json={"raw": sized(SMALL_LIMIT + 1).decode()})
    assert_error(response, 413)
    assert (await mailbox(small_client, user, inbox))["total"] == 0


async def test_too_large_streamed_without_length(small_client: httpx.AsyncClient) -> None:
    user = await create_user(small_client)
    inbox = await folder_id(small_client, user)
    raw = sized(SMALL_LIMIT + 100_000)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(raw), 4096):
            yield raw[start : start + 4096]

    response = await small_client.post(url(user, inbox), content=chunks(), headers={"Content-Type": "message/rfc822"})
    assert_error(response, 413)
    assert (await mailbox(small_client, user, inbox))["total"] == 0


async def test_largest_allowed_size_is_accepted(small_client: httpx.AsyncClient) -> None:
    user = await create_user(small_client)
    inbox = await folder_id(small_client, user)
    raw = sized(SMALL_LIMIT)
    uid = await upload(small_client, user, inbox, raw)
    assert (await details(small_client, user, inbox, uid))["size"] == SMALL_LIMIT


@pytest.mark.parametrize("content_type", ["text/html", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "image/png"])
async def test_unsupported_content_type(client: httpx.AsyncClient, content_type: str) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    response = await client.post(url(user, inbox), content=make_message(), headers={"Content-Type": content_type})
    assert_error(response, 415)
    assert (await mailbox(client, user, inbox))["total"] == 0


async def test_missing_content_type(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    request = client.build_request("POST", url(user, inbox), content=make_message())
    assert "content-type" not in request.headers
    response = await client.send(request)
    assert response.status_code in (400, 415), response.text
    assert (await mailbox(client, user, inbox))["total"] == 0


@pytest.mark.parametrize("raw", [b"", b"   ", b"\r\n\r\n"])
async def test_empty_body(client: httpx.AsyncClient, raw: bytes) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    assert_error(await client.post(url(user, inbox), content=raw, headers={"Content-Type": "message/rfc822"}), 400, "InputValidationError")
    assert (await mailbox(client, user, inbox))["total"] == 0
    assert await quota_used(client, user) == 0


async def test_upload_to_unknown_or_foreign_folder(client: httpx.AsyncClient) -> None:
    alice = await create_user(client, "alice")
    bob = await create_user(client, "bob")
    bobs_inbox = await folder_id(client, bob)
    raw = make_message()
    headers = {"Content-Type": "message/rfc822"}
    assert_error(await client.post(url(alice, UNKNOWN_ID), content=raw, headers=headers), 404, "NoSuchMailbox")
    assert_error(await client.post(url(alice, bobs_inbox), content=raw, headers=headers), 404, "NoSuchMailbox")
    assert_error(await client.post(url(UNKNOWN_ID, bobs_inbox), content=raw, headers=headers), 404, "UserNotFound")
    assert (await mailbox(client, bob, bobs_inbox))["total"] == 0
    assert await quota_used(client, alice) == 0
    assert await quota_used(client, bob) == 0


async def test_upload_keeps_8bit_and_bare_lf_bytes(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    raw = b"From: a@example.org\nSubject: caf\xc3\xa9 \xff\n\nbody \x80\x81\nline\r\nmixed\n"
    uid = await upload(client, user, inbox, raw)
    response = await client.get(url(user, inbox, uid) + "/message.eml")
    assert response.content == raw


# Listing -----------------------------------------------------------------------------


async def seed(client: httpx.AsyncClient, user: str, folder: str, count: int) -> list[int]:
    return [await upload(client, user, folder, make_message(f"message {i}")) for i in range(count)]


async def test_list_fields(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    raw = make_message("Subject line", "Beginning text in the message.\r\n")
    await upload(client, user, inbox, raw, unseen="true", flagged="true")
    body = await listing(client, user, inbox)
    assert body["total"] == 1
    assert body["page"] == 1
    assert body["previousCursor"] is False
    assert body["nextCursor"] is False
    assert body["specialUse"] is None
    [item] = body["results"]
    assert LIST_FIELDS <= set(item)
    assert item["id"] == 1
    assert item["mailbox"] == inbox
    assert isinstance(item["thread"], str) and len(item["thread"]) == 24
    assert item["from"] == {"address": "sender@example.org", "name": "Sender Name"}
    assert item["subject"] == "Subject line"
    assert item["date"] == "2011-11-02T19:19:08.000Z"
    assert item["intro"] == "Beginning text in the message."
    assert item["attachments"] is False
    assert (item["seen"], item["deleted"], item["flagged"], item["draft"]) == (False, False, True, False)
    assert item["size"] == len(raw)


async def test_list_date_formats(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    await upload(client, user, inbox, make_message("zone", Date="Tue, 1 Jul 2003 10:52:37 +0200"))
    await upload(client, user, inbox, make_message("no date", Date=None))  # type: ignore[arg-type]
    by_subject = {m["subject"]: m for m in (await listing(client, user, inbox))["results"]}
    assert by_subject["zone"]["date"] == "2003-07-01T08:52:37.000Z"
    # Without a Date header the internal date stands in.
    undated = by_subject["no date"]
    assert undated["date"].endswith("Z") and len(undated["date"]) == len("2011-11-02T19:19:08.000Z")
    assert abs(iso_ms(undated["date"]) - datetime.now(UTC).timestamp() * 1000) < 60_000


async def test_list_special_use_is_reported(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    sent = await folder_id(client, user, "Sent Mail")
    assert (await listing(client, user, sent))["specialUse"] == "\\Sent"


async def test_list_empty_folder(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    body = await listing(client, user, await folder_id(client, user))
    assert (body["total"], body["results"], body["nextCursor"], body["previousCursor"]) == (0, [], False, False)


async def test_list_order(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    await seed(client, user, inbox, 5)
    default = [m["id"] for m in (await listing(client, user, inbox))["results"]]
    desc = [m["id"] for m in (await listing(client, user, inbox, order="desc"))["results"]]
    asc = [m["id"] for m in (await listing(client, user, inbox, order="asc"))["results"]]
    assert default == desc == [5, 4, 3, 2, 1]
    assert asc == [1, 2, 3, 4, 5]
    assert [m["subject"] for m in (await listing(client, user, inbox, order="asc"))["results"]] == [f"message {i}" for i in range(5)]
    assert_error(await client.get(url(user, inbox), params={"order": "sideways"}), 400, "InputValidationError")


async def test_list_limit(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    await seed(client, user, inbox, 3)
    body = await listing(client, user, inbox, limit=1)
    assert [m["id"] for m in body["results"]] == [3]
    assert body["total"] == 3
    assert body["nextCursor"] and body["previousCursor"] is False
    body = await listing(client, user, inbox, limit=250)
    assert len(body["results"]) == 3 and body["nextCursor"] is False
    for bad in (0, 251, -1, "ten", 10**12):
        body = assert_error(await client.get(url(user, inbox), params={"limit": bad}), 400, "InputValidationError")
        assert "limit" in body["details"]


async def test_list_page_is_echoed(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    assert (await listing(client, user, inbox, page=7))["page"] == 7
    assert_error(await client.get(url(user, inbox), params={"page": 0}), 400)


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_cursor_walk_both_ways(client: httpx.AsyncClient, order: str) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    created = await seed(client, user, inbox, 45)
    expected = sorted(created, reverse=order == "desc")

    pages: list[list[int]] = []
    body = await listing(client, user, inbox, order=order, limit=10)
    assert body["previousCursor"] is False
    while True:
        assert body["total"] == 45
        pages.append([m["id"] for m in body["results"]])
        if body["nextCursor"] is False:
            break
        assert len(pages) < 10, "the walk does not end"
        body = await listing(client, user, inbox, order=order, limit=10, next=body["nextCursor"], page=len(pages) + 1)
        assert body["previousCursor"], "a page reached by next has a previous page"
        assert body["page"] == len(pages) + 1
    assert [len(p) for p in pages] == [10, 10, 10, 10, 5]
    assert [uid for page in pages for uid in page] == expected

    # And back again from the last page by the previous cursors.
    back: list[list[int]] = [pages[-1]]
    while body["previousCursor"] is not False:
        assert len(back) < 10, "the walk does not end"
        body = await listing(client, user, inbox, order=order, limit=10, previous=body["previousCursor"])
        assert body["nextCursor"], "a page reached by previous has a next page"
        back.append([m["id"] for m in body["results"]])
    assert list(reversed(back)) == pages
    # The first page reached backwards is the first page: no previous page.
    assert body["previousCursor"] is False


async def test_cursor_walk_sees_messages_added_meanwhile(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    await seed(client, user, inbox, 6)
    first = await listing(client, user, inbox, order="asc", limit=4)
    assert [m["id"] for m in first["results"]] == [1, 2, 3, 4]
    await upload(client, user, inbox, make_message("late"))
    await client.delete(url(user, inbox, 5))
    second = await listing(client, user, inbox, order="asc", limit=4, next=first["nextCursor"])
    assert [m["id"] for m in second["results"]] == [6, 7]
    assert second["nextCursor"] is False


def b64(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!!",
        "abc",
        "%%%",
        b64(b"not json"),
        b64(b"{}"),
        b64(b'"text"'),
        b64(b"[]"),
        b64(b'["1"]'),
        b64(b"[1, 2]"),
        b64(b"[true]"),
        b64(b"[1.5]"),
        b64(b"[null]"),
        "x" * 600,
    ],
)
async def test_garbage_cursor(client: httpx.AsyncClient, cursor: str) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    await seed(client, user, inbox, 2)
    for name in ("next", "previous"):
        body = assert_error(await client.get(url(user, inbox), params={name: cursor}), 400, "InputValidationError")
        assert name in body["details"]


async def test_next_and_previous_together(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    await seed(client, user, inbox, 3)
    cursor = (await listing(client, user, inbox, limit=1))["nextCursor"]
    assert_error(await client.get(url(user, inbox), params={"next": cursor, "previous": cursor}), 400)


async def test_list_unknown_and_foreign_folders(client: httpx.AsyncClient) -> None:
    alice = await create_user(client, "alice")
    bob = await create_user(client, "bob")
    bobs_inbox = await folder_id(client, bob)
    await upload(client, bob, bobs_inbox, make_message("Bob's secret subject"))
    body = assert_error(await client.get(url(alice, bobs_inbox)), 404, "NoSuchMailbox")
    assert "secret" not in orjson.dumps(body).decode()
    assert_error(await client.get(url(alice, UNKNOWN_ID)), 404, "NoSuchMailbox")
    assert_error(await client.get(url(UNKNOWN_ID, bobs_inbox)), 404, "UserNotFound")


# Summary parsed at append -------------------------------------------------------------


async def test_summary_fields(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    raw = (
        b"From: =?UTF-8?B?SsO8cmdlbiBNw7xsbGVy?= <juergen@example.de>\r\n"
        b"To: Alice <alice@example.com>, bob@example.com\r\n"
        b"Cc: \"Carol, C.\" <carol@example.net>\r\n"
        b"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?= =?UTF-8?B?IPCfjok=?=\r\n"
        b"Message-ID: <unique-123@example.de>\r\n"
        b"Date: Fri, 21 Jul 2017 19:11:04 +0300\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"\r\n"
        b"Hallo   Alice,\r\nwie   geht's?\r\n"
    )
    uid = await upload(client, user, inbox, raw)
    body = await details(client, user, inbox, uid)
    assert body["from"] == {"name": "Jürgen Müller", "address": "juergen@example.de"}
    assert body["to"] == [{"name": "Alice", "address": "alice@example.com"}, {"name": "", "address": "bob@example.com"}]
    assert body["cc"] == [{"name": "Carol, C.", "address": "carol@example.net"}]
    assert body["subject"] == "Grüße aus Köln 🎉"
    assert body["messageId"] == "<unique-123@example.de>"
    assert body["date"] == "2017-07-21T16:11:04.000Z"
    assert body["intro"] == "Hallo Alice, wie geht's?"
    assert body["attachments"] == []
    [item] = (await listing(client, user, inbox))["results"]
    assert item["from"] == {"name": "Jürgen Müller", "address": "juergen@example.de"}
    assert item["subject"] == "Grüße aus Köln 🎉"
    assert item["intro"] == "Hallo Alice, wie geht's?"
    assert item["attachments"] is False


async def test_summary_attachments_flag(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    raw = (
        b"From: a@example.org\r\nSubject: with file\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
        b"--b1\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n"
        b"--b1\r\nContent-Type: application/pdf; name=\"doc.pdf\"\r\nContent-Disposition: attachment; filename=\"doc.pdf\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(b"%PDF-1.4 fake") + b"\r\n--b1--\r\n"
    )
    uid = await upload(client, user, inbox, raw)
    [item] = (await listing(client, user, inbox))["results"]
    assert item["attachments"] is True
    assert item["intro"] == "See attached."
    body = await details(client, user, inbox, uid)
    assert [(a["id"], a["filename"], a["contentType"], a["size"]) for a in body["attachments"]] == [
        ("ATT00001", "doc.pdf", "application/pdf", len(b"%PDF-1.4 fake"))
    ]


async def test_summary_of_a_headerless_message(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    uid = await upload(client, user, inbox, b"just some text without headers\r\n")
    body = await details(client, user, inbox, uid)
    assert body["success"] is True
    [item] = (await listing(client, user, inbox))["results"]
    assert item["from"] == {"name": "", "address": ""}
    assert isinstance(item["subject"], str)


# Threads -----------------------------------------------------------------------------


async def thread_of(client: httpx.AsyncClient, user: str, folder: str, uid: int) -> str:
    return (await details(client, user, folder, uid))["thread"]


async def test_reply_by_in_reply_to_joins_thread(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    sent = await folder_id(client, user, "Sent Mail")
    parent = await upload(client, user, inbox, make_message("Plans", Message_ID="<parent@example.org>"))
    reply = await upload(client, user, sent, make_message("Different words", In_Reply_To="<parent@example.org>"))
    assert await thread_of(client, user, sent, reply) == await thread_of(client, user, inbox, parent)


async def test_reply_by_references_joins_thread(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    root = await upload(client, user, inbox, make_message("Root", Message_ID="<root@example.org>"))
    child = await upload(client, user, inbox, make_message("Re: Root", Message_ID="<child@example.org>", References="<root@example.org>"))
    # A grandchild that only references the child still lands in the same thread.
    grandchild = await upload(client, user, inbox, make_message("Something else", References="<child@example.org>"))
    thread = await thread_of(client, user, inbox, root)
    assert await thread_of(client, user, inbox, child) == thread
    assert await thread_of(client, user, inbox, grandchild) == thread
    listed = {m["id"]: m["thread"] for m in (await listing(client, user, inbox))["results"]}
    assert set(listed.values()) == {thread}


async def test_unrelated_message_gets_new_thread(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    first = await upload(client, user, inbox, make_message("Topic A"))
    second = await upload(client, user, inbox, make_message("Topic B"))
    # The same subject without a reply prefix or references is not a reply.
    third = await upload(client, user, inbox, make_message("Topic A"))
    threads = [await thread_of(client, user, inbox, uid) for uid in (first, second, third)]
    assert len(set(threads)) == 3


async def test_reply_subject_without_references_joins_recent_thread(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    original = await upload(client, user, inbox, make_message("Quarterly report"))
    reply = await upload(client, user, inbox, make_message("Re: Quarterly report"))
    forward = await upload(client, user, inbox, make_message("RE: re: quarterly   REPORT"))
    other = await upload(client, user, inbox, make_message("Re: Something else"))
    thread = await thread_of(client, user, inbox, original)
    assert await thread_of(client, user, inbox, reply) == thread
    assert await thread_of(client, user, inbox, forward) == thread
    assert await thread_of(client, user, inbox, other) != thread


async def test_threads_are_per_user(client: httpx.AsyncClient) -> None:
    alice = await create_user(client, "alice")
    bob = await create_user(client, "bob")
    a_inbox = await folder_id(client, alice)
    b_inbox = await folder_id(client, bob)
    a = await upload(client, alice, a_inbox, make_message("Shared", Message_ID="<shared@example.org>"))
    b = await upload(client, bob, b_inbox, make_message("Re: Shared", In_Reply_To="<shared@example.org>"))
    assert await thread_of(client, alice, a_inbox, a) != await thread_of(client, bob, b_inbox, b)


# Update: flags -------------------------------------------------------------------------


async def flags(client: httpx.AsyncClient, user: str, folder: str) -> dict[int, tuple[bool, bool, bool, bool]]:
    body = await listing(client, user, folder, order="asc", limit=250)
    return {m["id"]: (m["seen"], m["flagged"], m["draft"], m["deleted"]) for m in body["results"]}


async def test_update_one_message_flags(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    await upload(client, user, inbox, make_message("a"), unseen="true")
    await upload(client, user, inbox, make_message("b"), unseen="true")
    before = await mailbox(client, user, inbox)
    assert before["unseen"] == 2
    response = await update(client, user, inbox, 1, seen=True)
    assert response.status_code == 200, response.text
    assert response.json()["success"] is True
    assert response.json()["updated"] == 1
    after = await mailbox(client, user, inbox)
    assert after["unseen"] == 1
    assert after["modifyIndex"] > before["modifyIndex"]
    assert await flags(client, user, inbox) == {1: (True, False, False, False), 2: (False, False, False, False)}

    for name in ("flagged", "draft", "deleted"):
        response = await update(client, user, inbox, 2, **{name: True})
        assert response.status_code == 200, response.text
    assert await flags(client, user, inbox) == {1: (True, False, False, False), 2: (False, True, True, True)}
    response = await update(client, user, inbox, 2, flagged=False, draft=False, deleted=False, seen=True)
    assert response.status_code == 200, response.text
    assert await flags(client, user, inbox) == {1: (True, False, False, False), 2: (True, False, False, False)}
    assert (await mailbox(client, user, inbox))["unseen"] == 0
    # Marking unseen again counts it again.
    assert (await update(client, user, inbox, 1, seen=False)).status_code == 200
    assert (await mailbox(client, user, inbox))["unseen"] == 1
    # Setting a flag to the value it has does not disturb the counter.
    assert (await update(client, user, inbox, 1, seen=False)).status_code == 200
    assert (await mailbox(client, user, inbox))["unseen"] == 1


@pytest.mark.parametrize(
    ("selection", "hit"),
    [("1,3", {1, 3}), ("2:4", {2, 3, 4}), ("4:2", {2, 3, 4}), ("1:*", {1, 2, 3, 4, 5}), ("3:*", {3, 4, 5}), ("1,4:5", {1, 4, 5}), ("2,2,2", {2})],
)
async def test_update_selections(client: httpx.AsyncClient, selection: str, hit: set[int]) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    for i in range(5):
        await upload(client, user, inbox, make_message(f"m{i}"), unseen="true")
    before = await mailbox(client, user, inbox)
    response = await update(client, user, inbox, selection, seen=True, flagged=True)
    assert response.status_code == 200, response.text
    assert response.json()["updated"] == len(hit)
    state = await flags(client, user, inbox)
    for uid in range(1, 6):
        assert state[uid][:2] == ((True, True) if uid in hit else (False, False)), (selection, uid)
    after = await mailbox(client, user, inbox)
    assert after["unseen"] == 5 - len(hit)
    assert after["modifyIndex"] > before["modifyIndex"]


async def test_update_selection_with_gaps(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    for i in range(5):
        await upload(client, user, inbox, make_message(f"m{i}"), unseen="true")
    assert (await client.delete(url(user, inbox, 3))).status_code == 200
    response = await update(client, user, inbox, "2:4,9", seen=True)
    assert response.status_code == 200, response.text
    assert response.json()["updated"] == 2
    assert {uid for uid, f in (await flags(client, user, inbox)).items() if f[0]} == {2, 4}
    assert (await mailbox(client, user, inbox))["unseen"] == 2


async def test_update_unknown_ids(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    await upload(client, user, inbox, make_message(), unseen="true")
    before = await mailbox(client, user, inbox)
    for selection in ("2", "5,6", "10:20", "2:*"):
        assert_error(await update(client, user, inbox, selection, seen=True), 404, "MessageNotFound")
    after = await mailbox(client, user, inbox)
    assert after["unseen"] == 1
    assert after["modifyIndex"] == before["modifyIndex"]


@pytest.mark.parametrize("selection", ["abc", "0", "1:", ":1", "1,,2", ",1", "1,", "-1", "1:2:3", "99999999999", "4294967296", "1;2", "1 2", "*", "*:1", "1.5"])
async def test_update_malformed_ids(client: httpx.AsyncClient, selection: str) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    await upload(client, user, inbox, make_message(), unseen="true")
    response = await client.put(url(user, inbox) + "/" + quote(selection, safe=":,*"), json={"seen": True})
    assert response.status_code in (400, 404), response.text
    if response.status_code == 404:
        # Only a path the router does not know can be a 404, never a lookup.
        assert response.json().get("code") != "MessageNotFound"
    assert (await mailbox(client, user, inbox))["unseen"] == 1


@pytest.mark.parametrize("selection", ["abc", "0", "1:", "1,,2", "-1", "1:2:3", "99999999999"])
async def test_update_malformed_ids_are_400(client: httpx.AsyncClient, selection: str) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    await upload(client, user, inbox, make_message(), unseen="true")
    assert_error(await update(client, user, inbox, selection, seen=True), 400, "InputValidationError")


@pytest.mark.parametrize("body", [{"seen": "perhaps"}, {"flagged": 3}, {"expires": "not a date"}, {"expires": True}, {"moveTo": "INBOX"}, {"moveTo": 5}])
async def test_update_bad_bodies(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    await upload(client, user, inbox, make_message(), unseen="true")
    assert_error(await client.put(url(user, inbox, 1), json=body), 400, "InputValidationError")
    assert await flags(client, user, inbox) == {1: (False, False, False, False)}


async def test_update_expires(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    await upload(client, user, inbox, make_message("a"))
    await upload(client, user, inbox, make_message("b"))
    assert (await details(client, user, inbox, 1))["expires"] is False
    before = await mailbox(client, user, inbox)
    response = await update(client, user, inbox, "1:2", expires="2031-04-05T06:07:08.000Z")
    assert response.status_code == 200, response.text
    assert response.json()["updated"] == 2
    assert (await details(client, user, inbox, 1))["expires"] == "2031-04-05T06:07:08.000Z"
    assert (await details(client, user, inbox, 2))["expires"] == "2031-04-05T06:07:08.000Z"
    assert (await mailbox(client, user, inbox))["modifyIndex"] > before["modifyIndex"]
    response = await update(client, user, inbox, 1, expires="2031-04-05T08:07:08+02:00")
    assert response.status_code == 200, response.text
    assert (await details(client, user, inbox, 1))["expires"] == "2031-04-05T06:07:08.000Z"
    response = await update(client, user, inbox, 1, expires=False)
    assert response.status_code == 200, response.text
    assert (await details(client, user, inbox, 1))["expires"] is False
    assert (await details(client, user, inbox, 2))["expires"] == "2031-04-05T06:07:08.000Z"


@pytest.mark.parametrize("expires", ["9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00"])
async def test_update_expires_beyond_the_writable_years(client: httpx.AsyncClient, expires: str) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    await upload(client, user, inbox, make_message())
    body = assert_error(await update(client, user, inbox, 1, expires=expires), 400, "InputValidationError")
    assert "expires" in body["details"]
    assert (await details(client, user, inbox, 1))["expires"] is False
    assert len((await listing(client, user, inbox))["results"]) == 1


async def test_expired_message_is_collected(client: httpx.AsyncClient, runtime: Runtime) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    raw = make_message("soon gone")
    stays = make_message("stays")
    await upload(client, user, inbox, raw)
    await upload(client, user, inbox, stays)
    assert (await update(client, user, inbox, 1, expires="2001-01-01T00:00:00Z")).status_code == 200
    expired, _ = await runtime.mailstore.collect_garbage()
    assert expired == 1
    assert await uids(client, user, inbox) == [2]
    assert (await mailbox(client, user, inbox))["total"] == 1
    assert await quota_used(client, user) == len(stays)


# Update: move --------------------------------------------------------------------------


async def test_move_messages(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    archive = await folder_id(client, user, "Archive")
    # The target already holds messages: the moved ones continue its UIDs.
    await upload(client, user, archive, make_message("already 1"))
    await upload(client, user, archive, make_message("already 2"), unseen="true")
    sizes = {}
    for i in range(5):
        raw = make_message(f"m{i}", "x" * i + "\r\n")
        sizes[i + 1] = len(raw)
        await upload(client, user, inbox, raw, unseen="true" if i % 2 == 0 else "false")
    quota = await quota_used(client, user)
    src_before = await mailbox(client, user, inbox)
    dst_before = await mailbox(client, user, archive)
    assert (src_before["total"], src_before["unseen"]) == (5, 3)
    assert dst_before["uidNext"] == 3

    response = await update(client, user, inbox, "2:4", moveTo=archive)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    assert body["mailbox"] == archive
    assert body["id"] == [[2, 3], [3, 4], [4, 5]]
    assert body["updated"] == 3

    src = await mailbox(client, user, inbox)
    dst = await mailbox(client, user, archive)
    assert (src["total"], src["unseen"], src["size"]) == (2, 2, sizes[1] + sizes[5])
    assert (dst["total"], dst["unseen"]) == (5, 1 + 1)
    assert dst["uidNext"] == 6
    assert src["uidNext"] == 6
    assert src["modifyIndex"] > src_before["modifyIndex"]
    assert dst["modifyIndex"] > dst_before["modifyIndex"]
    assert await uids(client, user, inbox) == [1, 5]
    assert await uids(client, user, archive) == [1, 2, 3, 4, 5]
    for old in (2, 3, 4):
        assert_error(await client.get(url(user, inbox, old)), 404, "MessageNotFound")
    moved = {m["id"]: m for m in (await listing(client, user, archive, order="asc"))["results"]}
    assert [moved[uid]["subject"] for uid in (3, 4, 5)] == ["m1", "m2", "m3"]
    assert [moved[uid]["seen"] for uid in (3, 4, 5)] == [True, False, True]
    assert all(moved[uid]["mailbox"] == archive for uid in (3, 4, 5))
    # The content moved with them; the quota is unchanged by a move.
    eml = await client.get(url(user, archive, 4) + "/message.eml")
    assert eml.status_code == 200 and b"Subject: m2" in eml.content
    assert await quota_used(client, user) == quota


async def test_move_with_flags(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    trash = await folder_id(client, user, "Trash")
    await upload(client, user, inbox, make_message("a"), unseen="true")
    response = await update(client, user, inbox, 1, seen=True, flagged=True, moveTo=trash)
    assert response.status_code == 200, response.text
    assert response.json()["id"] == [[1, 1]]
    moved = await details(client, user, trash, 1)
    assert (moved["seen"], moved["flagged"]) == (True, True)
    assert (await mailbox(client, user, inbox))["unseen"] == 0
    assert (await mailbox(client, user, trash))["unseen"] == 0


async def test_move_all_with_star(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    other = await new_folder(client, user, "Everything")
    for i in range(4):
        await upload(client, user, inbox, make_message(f"m{i}"))
    response = await update(client, user, inbox, "1:*", moveTo=other)
    assert response.status_code == 200, response.text
    assert response.json()["id"] == [[1, 1], [2, 2], [3, 3], [4, 4]]
    assert await uids(client, user, inbox) == []
    assert (await mailbox(client, user, inbox))["total"] == 0
    assert (await mailbox(client, user, other))["total"] == 4


async def test_move_into_folder_with_retention_sets_expiry(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    trash = await folder_id(client, user, "Trash")
    trash_retention = (await mailbox(client, user, trash))["retention"]
    assert trash_retention  # Trash keeps mail for a limited time
    await upload(client, user, inbox, make_message("to trash"))
    assert (await details(client, user, inbox, 1))["expires"] is False
    before = datetime.now(UTC).timestamp() * 1000
    response = await update(client, user, inbox, 1, moveTo=trash)
    assert response.status_code == 200, response.text
    expires = (await details(client, user, trash, 1))["expires"]
    assert expires is not False
    assert before + trash_retention - 60_000 <= iso_ms(expires) <= before + trash_retention + 60_000


async def test_move_out_of_trash_clears_expiry(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    trash = await folder_id(client, user, "Trash")
    await upload(client, user, trash, make_message("restored"))
    assert (await details(client, user, trash, 1))["expires"] is not False
    response = await update(client, user, trash, 1, moveTo=inbox)
    assert response.status_code == 200, response.text
    # A message restored to a folder without retention must not be deleted later.
    assert (await details(client, user, inbox, 1))["expires"] is False


async def test_move_to_same_folder(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    await upload(client, user, inbox, make_message())
    response = await update(client, user, inbox, 1, moveTo=inbox)
    assert response.status_code == 200, response.text
    assert await uids(client, user, inbox) == [1]
    assert (await mailbox(client, user, inbox))["total"] == 1


async def test_move_to_foreign_or_unknown_folder(client: httpx.AsyncClient) -> None:
    alice = await create_user(client, "alice")
    bob = await create_user(client, "bob")
    inbox = await folder_id(client, alice)
    bobs_inbox = await folder_id(client, bob)
    await upload(client, alice, inbox, make_message("mine"), unseen="true")
    assert_error(await update(client, alice, inbox, 1, moveTo=bobs_inbox), 404, "NoSuchMailbox")
    assert_error(await update(client, alice, inbox, 1, moveTo=UNKNOWN_ID, seen=True), 404, "NoSuchMailbox")
    assert await uids(client, alice, inbox) == [1]
    assert (await mailbox(client, alice, inbox))["unseen"] == 1  # the flag change was rolled back too
    assert await uids(client, bob, bobs_inbox) == []
    assert (await mailbox(client, bob, bobs_inbox))["uidNext"] == 1


async def test_move_unknown_ids(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    archive = await folder_id(client, user, "Archive")
    await upload(client, user, inbox, make_message())
    assert_error(await update(client, user, inbox, "7:9", moveTo=archive), 404, "MessageNotFound")
    assert (await mailbox(client, user, archive))["uidNext"] == 1


# Delete ------------------------------------------------------------------------------


async def test_delete_message(client: httpx.AsyncClient, runtime: Runtime) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    keep = make_message("keep")
    drop = make_message("drop", "bye\r\n")
    await upload(client, user, inbox, keep, unseen="true")
    await upload(client, user, inbox, drop, unseen="true")
    key = hashlib.sha256(drop).hexdigest()
    assert await refcount(runtime, key) == 1
    before = await mailbox(client, user, inbox)
    response = await client.delete(url(user, inbox, 2))
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    assert_error(await client.get(url(user, inbox, 2)), 404, "MessageNotFound")
    assert_error(await client.get(url(user, inbox, 2) + "/message.eml"), 404, "MessageNotFound")
    after = await mailbox(client, user, inbox)
    assert (after["total"], after["unseen"], after["size"]) == (1, 1, len(keep))
    assert after["modifyIndex"] > before["modifyIndex"]
    assert await quota_used(client, user) == len(keep)
    assert await refcount(runtime, key) == 0
    assert await uids(client, user, inbox) == [1]
    # A second delete finds nothing.
    assert_error(await client.delete(url(user, inbox, 2)), 404, "MessageNotFound")
    assert await quota_used(client, user) == len(keep)


async def test_delete_bad_ids(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    await upload(client, user, inbox, make_message())
    for bad in ("0", "abc", "1,2", "-1", "4294967296"):
        response = await client.delete(url(user, inbox, bad))
        assert_error(response, 400)
    assert await uids(client, user, inbox) == [1]


# Other users' ids ----------------------------------------------------------------------


async def test_foreign_message_ids_leak_nothing(client: httpx.AsyncClient, runtime: Runtime) -> None:
    alice = await create_user(client, "alice")
    bob = await create_user(client, "bob")
    a_inbox = await folder_id(client, alice)
    b_inbox = await folder_id(client, bob)
    secret = make_message("Bob's secret", "the launch code is 1234\r\n")
    await upload(client, bob, b_inbox, secret, unseen="true")
    await upload(client, alice, a_inbox, make_message("Alice's own"), unseen="true")
    responses = [
        await client.get(url(alice, b_inbox)),
        await client.get(url(alice, b_inbox, 1)),
        await client.get(url(alice, b_inbox, 1) + "/message.eml"),
        await client.get(url(alice, b_inbox, 1) + "/attachments/ATT00001"),
        await update(client, alice, b_inbox, 1, seen=True),
        await update(client, alice, b_inbox, "1:*", moveTo=a_inbox),
        await client.delete(url(alice, b_inbox, 1)),
    ]
    for response in responses:
        assert_error(response, 404, "NoSuchMailbox")
        assert b"launch code" not in response.content and b"secret" not in response.content
    # Moving from one's own folder into Bob's folder is refused too.
    assert_error(await update(client, alice, a_inbox, 1, moveTo=b_inbox), 404, "NoSuchMailbox")
    # Bob's message is intact, Alice's too.
    bobs = await details(client, bob, b_inbox, 1)
    assert (bobs["seen"], bobs["subject"]) == (False, "Bob's secret")
    assert (await mailbox(client, bob, b_inbox))["total"] == 1
    assert await quota_used(client, bob) == len(secret)
    assert await uids(client, alice, a_inbox) == [1]
    assert await refcount(runtime, hashlib.sha256(secret).hexdigest()) == 1


async def test_message_of_unknown_user(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    await upload(client, user, inbox, make_message())
    assert_error(await client.get(url(UNKNOWN_ID, inbox, 1)), 404, "UserNotFound")
    assert_error(await client.delete(url(UNKNOWN_ID, inbox, 1)), 404, "UserNotFound")
    assert_error(await update(client, UNKNOWN_ID, inbox, 1, seen=False), 404, "UserNotFound")
    assert await uids(client, user, inbox) == [1]


# Concurrency -----------------------------------------------------------------------------


async def test_concurrent_uploads_get_distinct_uids(client: httpx.AsyncClient, runtime: Runtime) -> None:
    user = await create_user(client)
    inbox = await folder_id(client, user)
    same = make_message("same bytes")
    raws = [same if i % 2 else make_message(f"distinct {i}") for i in range(24)]

    async def send(raw: bytes) -> httpx.Response:
        return await client.post(url(user, inbox), content=raw, headers={"Content-Type": "message/rfc822"})

    responses = await asyncio.gather(*(send(raw) for raw in raws))
    assert [r.status_code for r in responses] == [200] * len(raws), [r.text for r in responses if r.status_code != 200]
    assert sorted(r.json()["message"]["id"] for r in responses) == list(range(1, len(raws) + 1))
    body = await mailbox(client, user, inbox)
    assert (body["total"], body["uidNext"]) == (len(raws), len(raws) + 1)
    assert await quota_used(client, user) == sum(len(r) for r in raws)
    assert await refcount(runtime, hashlib.sha256(same).hexdigest()) == 12


async def test_concurrent_moves_both_ways_and_deletes(client: httpx.AsyncClient) -> None:
    """Moves A->B and B->A, deletes and uploads at once: every request answers (no
    deadlock, no server error) and the counters agree with the listings afterwards."""
    user = await create_user(client)
    a = await folder_id(client, user)
    b = await folder_id(client, user, "Archive")
    for i in range(10):
        await upload(client, user, a, make_message(f"a{i}"), unseen="true")
        await upload(client, user, b, make_message(f"b{i}"))

    async def move(source: str, target: str) -> httpx.Response:
        return await update(client, user, source, "1:*", moveTo=target)

    async def delete(folder: str, uid: int) -> httpx.Response:
        return await client.delete(url(user, folder, uid))

    async def add(folder: str, i: int) -> httpx.Response:
        return await client.post(url(user, folder), content=make_message(f"new {i}"), headers={"Content-Type": "message/rfc822"})

    jobs = []
    for i in range(12):
        jobs.append(move(a, b) if i % 2 else move(b, a))
        jobs.append(delete(a if i % 2 else b, i + 1))
        jobs.append(add(a if i % 3 else b, i))
    responses = await asyncio.gather(*jobs)
    for response in responses:
        assert response.status_code in (200, 404), response.text
        if response.status_code == 404:
            assert response.json()["code"] == "MessageNotFound"
    total = 0
    for folder in (a, b):
        listed = (await listing(client, user, folder, limit=250))["results"]
        counters = await mailbox(client, user, folder)
        assert counters["total"] == len(listed)
        assert counters["unseen"] == sum(1 for m in listed if not m["seen"])
        assert counters["size"] == sum(m["size"] for m in listed)
        total += sum(m["size"] for m in listed)
    assert await quota_used(client, user) == total
