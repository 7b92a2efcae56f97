"""GET /api/notifications (pages, humanised times) and POST /api/notifications/{id}."""

from __future__ import annotations

import httpx
import pytest

from postern.http.api.notifications import humanise
from postern.serve.runtime import Runtime
from postern.storage import notifications as store
from postern.storage.ids import now_ms
from tests.http.api.helpers import Outbox, auth, signed_up

S = 1000
MINUTE, HOUR, DAY = 60 * S, 3600 * S, 86400 * S


@pytest.mark.parametrize(
    ("age_ms", "words"),
    [
        (0, "just now"),
        (-5 * MINUTE, "just now"),  # a clock ahead
        (9 * S, "just now"),
        (10 * S, "10 seconds ago"),
        (44 * S, "44 seconds ago"),
        (45 * S, "a minute ago"),
        (89 * S, "a minute ago"),
        (90 * S, "2 minutes ago"),
        (2 * MINUTE + 59 * S, "2 minutes ago"),
        (44 * MINUTE, "44 minutes ago"),
        (45 * MINUTE, "an hour ago"),
        (89 * MINUTE, "an hour ago"),
        (90 * MINUTE, "2 hours ago"),
        (21 * HOUR, "21 hours ago"),
        (22 * HOUR, "a day ago"),
        (35 * HOUR, "a day ago"),
        (36 * HOUR, "2 days ago"),
        (3 * DAY, "3 days ago"),
        (25 * DAY, "25 days ago"),
        (26 * DAY, "a month ago"),
        (44 * DAY, "a month ago"),
        (45 * DAY, "2 months ago"),
        (100 * DAY, "3 months ago"),
        (319 * DAY, "10 months ago"),
        (320 * DAY, "a year ago"),
        (547 * DAY, "a year ago"),
        (548 * DAY, "2 years ago"),
        (5 * 365 * DAY, "5 years ago"),
    ],
)
def test_humanise(age_ms: int, words: str) -> None:
    now = 1_700_000_000_000
    assert humanise(now - age_ms, now) == words


async def user_id_of(runtime: Runtime, email: str) -> str:
    user = await runtime.registration.by_email(email)
    assert user is not None
    return str(user.id)


async def test_list_and_mark_read(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    key = await signed_up(api, outbox, "ann@example.org")
    user_id = await user_id_of(runtime, "ann@example.org")
    response = await api.get("/api/notifications?page=0", headers=auth(key))
    assert response.status_code == 200
    assert response.json() == {"more": False, "notifications": []}
    async with runtime.db.write() as conn:
        old = await store.insert(conn, user_id=user_id, title="Old", message="<b>old</b>", created_ms=now_ms() - 3 * DAY - HOUR)
    new = await runtime.notifications.notify(user_id, "Alias disabled", "Your alias <b>x@example.com</b> was disabled")
    body = (await api.get("/api/notifications", params={"page": 0}, headers=auth(key))).json()
    assert body == {
        "more": False,
        "notifications": [
            {"id": new, "message": "Your alias <b>x@example.com</b> was disabled", "title": "Alias disabled", "read": False, "created_at": "just now"},
            {"id": old, "message": "<b>old</b>", "title": "Old", "read": False, "created_at": "3 days ago"},
        ],
    }
    response = await api.post(f"/api/notifications/{old}", headers=auth(key))
    assert response.status_code == 200 and response.json() == {"done": True}
    reads = [n["read"] for n in (await api.get("/api/notifications", headers=auth(key))).json()["notifications"]]
    assert reads == [False, True]
    # Marking again is fine.
    assert (await api.post(f"/api/notifications/{old}", headers=auth(key))).status_code == 200


async def test_pages(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    key = await signed_up(api, outbox, "bob@example.org")
    user_id = await user_id_of(runtime, "bob@example.org")
    async with runtime.db.write() as conn:
        ids = [await store.insert(conn, user_id=user_id, title=f"n{i}", message="m", created_ms=now_ms()) for i in range(45)]
    seen: list[int] = []
    for page, more, count in ((0, True, 20), (1, True, 20), (2, False, 5), (3, False, 0)):
        body = (await api.get("/api/notifications", params={"page": page}, headers=auth(key))).json()
        assert (body["more"], len(body["notifications"])) == (more, count)
        seen += [n["id"] for n in body["notifications"]]
    assert seen == list(reversed(ids))  # newest first
    for bad in ("-1", "x", "1.5", "9999999999"):
        response = await api.get("/api/notifications", params={"page": bad}, headers=auth(key))
        assert response.status_code == 400, bad
        assert response.json()["error"] == "page must be a number from 0"


async def test_other_users_notifications(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    owner = await signed_up(api, outbox, "cid@example.org")
    other = await signed_up(api, outbox, "dee@example.org")
    theirs = await runtime.notifications.notify(await user_id_of(runtime, "cid@example.org"), "Private", "secret")
    assert (await api.get("/api/notifications", headers=auth(other))).json() == {"more": False, "notifications": []}
    for notification_id in (theirs, 424242, 0, 2**40):
        response = await api.post(f"/api/notifications/{notification_id}", headers=auth(other))
        assert response.status_code == 404
        assert response.json() == {"error": "Notification not found"}
    assert (await api.post("/api/notifications/abc", headers=auth(other))).status_code == 400
    [item] = (await api.get("/api/notifications", headers=auth(owner))).json()["notifications"]
    assert item["read"] is False
    assert (await api.get("/api/notifications")).status_code == 401
    assert (await api.post(f"/api/notifications/{theirs}")).status_code == 401
