"""Listing and searching aliases, one alias's reading, changing, toggling and deleting,
its activities, and the stats."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import event, func, select, update

from postern.aliases.contacts import find_or_create
from postern.config import Settings
from postern.serve.runtime import Runtime
from postern.storage.schema import alias_activities, alias_mailboxes, aliases, contacts, deleted_aliases
from tests.aliases import Person, add_mailbox, insert_aliases, new_alias


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.max_alias_free_plan = 1000
    return settings


async def listing(api: httpx.AsyncClient, who: Person, **params: object) -> list[dict[str, object]]:
    response = await api.get("/api/v2/aliases", params=params, headers=who.headers)
    assert response.status_code == 200, response.text
    return response.json()["aliases"]


async def search(api: httpx.AsyncClient, who: Person, query: str | None, **params: object) -> list[dict[str, object]]:
    response = await api.post("/api/v2/aliases", params={"page_id": 0, **params}, json={"query": query}, headers=who.headers)
    assert response.status_code == 200, response.text
    return response.json()["aliases"]


async def set_alias(runtime: Runtime, alias_id: int, **values: object) -> None:
    async with runtime.db.write() as conn:
        await conn.execute(update(aliases).where(aliases.c.id == alias_id).values(**values))


async def add_activity(runtime: Runtime, who: Person, alias_id: int, contact_email: str, action: str, ms: int) -> int:
    """A contact and an activity of it, as the mail flows record them."""
    async with runtime.db.write() as conn:
        contact, _ = await find_or_create(
            conn, user_id=who.user_id, alias_id=alias_id, email=contact_email, name="Carol", reverse_alias_domain="example.com"
        )
        await conn.execute(
            alias_activities.insert().values(user_id=who.user_id, alias_id=alias_id, contact_id=contact.id, action=action, created_ms=ms)
        )
        column = {"forward": aliases.c.nb_forward, "reply": aliases.c.nb_reply, "block": aliases.c.nb_block}.get(action)
        values = {"latest_activity_ms": ms, "latest_activity_action": action, "latest_contact_id": contact.id}
        if column is not None:
            values[column.name] = column + 1
        await conn.execute(update(aliases).where(aliases.c.id == alias_id).values(**values))
        return int(contact.id)


# Listing -----------------------------------------------------------------------------------


async def test_pages_and_order(api: httpx.AsyncClient, runtime: Runtime, ann: Person, bob: Person) -> None:
    ids = await insert_aliases(runtime, ann, 45)
    await insert_aliases(runtime, bob, 3, domain="bob.example")
    pages = [await listing(api, ann, page_id=n) for n in range(4)]
    assert [len(p) for p in pages] == [20, 20, 5, 0]
    seen = [a["id"] for p in pages for a in p]
    assert seen == list(reversed(ids))
    # Pinned first, then by latest activity, then by id.
    await set_alias(runtime, ids[3], pinned=True)
    await set_alias(runtime, ids[10], latest_activity_ms=2_000_000_000_000)
    await set_alias(runtime, ids[11], latest_activity_ms=2_000_000_000_000)
    first = await listing(api, ann, page_id=0)
    assert [a["id"] for a in first[:4]] == [ids[3], ids[11], ids[10], ids[44]]
    assert first[0]["pinned"] is True


async def test_a_page_costs_the_same_statements_at_any_depth(api: httpx.AsyncClient, runtime: Runtime, ann: Person) -> None:
    """No statement per alias: the same few statements for page 0 and a deep page."""
    ids = await insert_aliases(runtime, ann, 130)
    async with runtime.db.write() as conn:
        for alias_id in ids:
            contact, _ = await find_or_create(
                conn, user_id=ann.user_id, alias_id=alias_id, email=f"c{alias_id}@shop.example", name=None, reverse_alias_domain="example.com"
            )
            await conn.execute(update(aliases).where(aliases.c.id == alias_id).values(latest_activity_action="forward", latest_contact_id=contact.id))
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    engine = runtime.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        per_page = []
        for page in (0, 3, 6):
            statements.clear()
            items = await listing(api, ann, page_id=page)
            assert len(items) == (20 if page < 6 else 10)
            assert all(a["latest_activity"] is not None for a in items)
            per_page.append(len(statements))
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert per_page[0] == per_page[1] == per_page[2] <= 4, per_page


async def test_alias_shape_in_listing(api: httpx.AsyncClient, runtime: Runtime, ann: Person) -> None:
    second = await add_mailbox(runtime, ann.user_id, "work@example.net")
    made = await new_alias(api, ann, "shape", mailbox_ids=[ann.mailbox_id, second], note="n", name="Shape")
    await add_activity(runtime, ann, made["id"], "carol@shop.example", "forward", 1_700_000_000_000)
    [item] = await listing(api, ann, page_id="0")
    assert set(item) == {
        "id", "email", "name", "enabled", "note", "pinned", "creation_date", "creation_timestamp", "nb_forward", "nb_block",
        "nb_reply", "mailbox", "mailboxes", "support_pgp", "disable_pgp", "latest_activity",
    }  # fmt: skip
    assert item["mailboxes"] == [{"id": ann.mailbox_id, "email": "ann@example.org"}, {"id": second, "email": "work@example.net"}]
    assert item["nb_forward"] == 1
    assert item["latest_activity"]["action"] == "forward"
    assert item["latest_activity"]["timestamp"] == 1_700_000_000
    contact = item["latest_activity"]["contact"]
    assert contact["email"] == "carol@shop.example" and contact["name"] == "Carol"
    assert contact["reverse_alias"].startswith('"Carol | carol at shop.example" <ra+')


async def test_page_id_is_required_and_checked(api: httpx.AsyncClient, ann: Person) -> None:
    for params in ({}, {"page_id": ""}, {"page_id": "-1"}, {"page_id": "x"}, {"page_id": "1" * 20}):
        for method in ("GET", "POST"):
            response = await api.request(method, "/api/v2/aliases", params=params, headers=ann.headers)
            assert response.status_code == 400, (method, params)
            assert "page_id" in response.json()["error"]
    assert (await api.get("/api/v2/aliases", params={"page_id": 0})).status_code == 401


async def test_filters(api: httpx.AsyncClient, runtime: Runtime, ann: Person) -> None:
    ids = await insert_aliases(runtime, ann, 6)
    await set_alias(runtime, ids[1], pinned=True)
    await set_alias(runtime, ids[2], enabled=False)
    await set_alias(runtime, ids[4], enabled=False, pinned=True)
    ids_of = lambda items: [a["id"] for a in items]  # noqa: E731
    assert ids_of(await listing(api, ann, page_id=0, pinned="")) == [ids[4], ids[1]]
    assert ids_of(await listing(api, ann, page_id=0, pinned="true")) == [ids[4], ids[1]]
    assert ids_of(await listing(api, ann, page_id=0, disabled="")) == [ids[4], ids[2]]
    assert ids_of(await listing(api, ann, page_id=0, enabled="")) == [ids[1], ids[5], ids[3], ids[0]]
    assert len(await listing(api, ann, page_id=0, pinned="false")) == 6
    # Presence without a value, as the apps send it.
    response = await api.get("/api/v2/aliases?page_id=0&disabled", headers=ann.headers)
    assert [a["id"] for a in response.json()["aliases"]] == [ids[4], ids[2]]
    response = await api.get("/api/v2/aliases?page_id=0&enabled&disabled", headers=ann.headers)
    assert response.status_code == 400


async def test_search(api: httpx.AsyncClient, runtime: Runtime, ann: Person, bob: Person) -> None:
    ids = await insert_aliases(runtime, ann, 5)
    await set_alias(runtime, ids[0], note="Newsletter of the SHOP")
    await set_alias(runtime, ids[1], name="Shopping")
    await set_alias(runtime, ids[2], email="weird_100%@example.com", email_key="weird_100%@example.com")
    await insert_aliases(runtime, bob, 2, domain="shop.example")
    ids_of = lambda items: sorted(a["id"] for a in items)  # noqa: E731
    assert ids_of(await search(api, ann, "shop")) == [ids[0], ids[1]]
    assert ids_of(await search(api, ann, "bulk3")) == [ids[3]]
    # LIKE's wildcards are matched literally.
    assert ids_of(await search(api, ann, "100%")) == [ids[2]]
    assert ids_of(await search(api, ann, "_1")) == [ids[2]]
    assert ids_of(await search(api, ann, "%")) == [ids[2]]
    assert await search(api, ann, "1%_") == []
    assert len(await search(api, ann, None)) == 5
    assert len(await search(api, ann, "")) == 5
    # The browser extension: always POST, sometimes without a body.
    response = await api.post("/api/v2/aliases", params={"page_id": 0}, headers=ann.headers)
    assert response.status_code == 200 and len(response.json()["aliases"]) == 5
    assert ids_of(await search(api, ann, "shop", pinned="")) == []
    for bad in ({"query": 5}, {"query": "x" * 300}, {"query": "a\x00"}, ["query"]):
        response = await api.post("/api/v2/aliases", params={"page_id": 0}, json=bad, headers=ann.headers)
        assert response.status_code == 400, bad


# One alias ---------------------------------------------------------------------------------


async def test_another_users_alias_is_404_everywhere(api: httpx.AsyncClient, runtime: Runtime, ann: Person, bob: Person) -> None:
    theirs = await new_alias(api, bob, "private")
    alias_id = theirs["id"]
    calls = [
        ("GET", f"/api/aliases/{alias_id}", None),
        ("DELETE", f"/api/aliases/{alias_id}", None),
        ("POST", f"/api/aliases/{alias_id}/toggle", None),
        ("PATCH", f"/api/aliases/{alias_id}", {"note": "mine now"}),
        ("PUT", f"/api/aliases/{alias_id}", {"pinned": True}),
        ("GET", f"/api/aliases/{alias_id}/activities?page_id=0", None),
        ("GET", f"/api/aliases/{alias_id}/contacts?page_id=0", None),
        ("POST", f"/api/aliases/{alias_id}/contacts", {"contact": "x@example.net"}),
    ]
    for method, path, body in calls:
        for target in (path, path.replace(str(alias_id), "987654"), path.replace(str(alias_id), str(2**40))):
            response = await api.request(method, target, json=body, headers=ann.headers)
            assert response.status_code == 404, (method, target, response.text)
            assert "private" not in response.text and "bob" not in response.text
    # Untouched.
    again = await api.get(f"/api/aliases/{alias_id}", headers=bob.headers)
    assert again.json() == {k: v for k, v in theirs.items() if k != "alias"}
    assert (await api.get("/api/aliases/abc", headers=ann.headers)).status_code in (400, 404)


async def test_toggle(api: httpx.AsyncClient, ann: Person) -> None:
    made = await new_alias(api, ann, "toggled")
    path = f"/api/aliases/{made['id']}/toggle"
    assert (await api.post(path, headers=ann.headers)).json() == {"enabled": False}
    assert (await api.get(f"/api/aliases/{made['id']}", headers=ann.headers)).json()["enabled"] is False
    assert (await api.post(path, headers=ann.headers)).json() == {"enabled": True}


async def test_patch_and_put(api: httpx.AsyncClient, runtime: Runtime, ann: Person) -> None:
    second = await add_mailbox(runtime, ann.user_id, "work@example.net")
    made = await new_alias(api, ann, "patched", note="old")
    path = f"/api/aliases/{made['id']}"
    response = await api.patch(path, json={"note": "new note", "name": "Named", "pinned": True, "disable_pgp": True}, headers=ann.headers)
    assert response.status_code == 200 and response.json() == {"ok": True}
    body = (await api.get(path, headers=ann.headers)).json()
    assert (body["note"], body["name"], body["pinned"], body["disable_pgp"]) == ("new note", "Named", True, True)
    # Fields not sent stay; null clears note and name.
    assert (await api.put(path, json={"note": None}, headers=ann.headers)).json() == {"ok": True}
    body = (await api.get(path, headers=ann.headers)).json()
    assert (body["note"], body["name"], body["pinned"]) == (None, "Named", True)
    # Mailboxes: the first becomes the primary one.
    assert (await api.patch(path, json={"mailbox_ids": [second, ann.mailbox_id]}, headers=ann.headers)).status_code == 200
    body = (await api.get(path, headers=ann.headers)).json()
    assert body["mailbox"]["id"] == second and [m["id"] for m in body["mailboxes"]] == [second, ann.mailbox_id]
    assert (await api.put(path, json={"mailbox_id": ann.mailbox_id}, headers=ann.headers)).status_code == 200
    body = (await api.get(path, headers=ann.headers)).json()
    assert body["mailboxes"] == [{"id": ann.mailbox_id, "email": "ann@example.org"}]
    assert (await api.patch(path, json={}, headers=ann.headers)).json() == {"ok": True}


async def test_patch_bad_input_changes_nothing(api: httpx.AsyncClient, runtime: Runtime, ann: Person, bob: Person) -> None:
    unverified = await add_mailbox(runtime, ann.user_id, "pending@example.net", verified=False)
    made = await new_alias(api, ann, "stable", note="keep")
    path = f"/api/aliases/{made['id']}"
    for body in (
        {"note": "changed", "mailbox_ids": [bob.mailbox_id]},
        {"note": "changed", "mailbox_ids": [unverified]},
        {"note": "changed", "mailbox_ids": []},
        {"note": "changed", "mailbox_id": "1"},
        {"note": "changed", "mailbox_id": 2**40},
        {"note": "changed", "pinned": "yes"},
        {"note": "changed", "disable_pgp": 1},
        {"note": "x" * 10_001},
        {"note": "a\x00b"},
        {"name": ["x"]},
        ["note"],
        "note",
    ):
        response = await api.patch(path, json=body, headers=ann.headers)
        assert response.status_code == 400, (body, response.text)
        assert "bob" not in response.text
    assert (await api.get(path, headers=ann.headers)).json() == {k: v for k, v in made.items() if k != "alias"}


async def test_delete_cascades_and_reserves(api: httpx.AsyncClient, runtime: Runtime, ann: Person) -> None:
    made = await new_alias(api, ann, "doomed")
    await add_activity(runtime, ann, made["id"], "carol@shop.example", "forward", 1_700_000_000_000)
    response = await api.delete(f"/api/aliases/{made['id']}", headers=ann.headers)
    assert response.status_code == 200 and response.json() == {"deleted": True}
    assert (await api.get(f"/api/aliases/{made['id']}", headers=ann.headers)).status_code == 404
    assert (await api.delete(f"/api/aliases/{made['id']}", headers=ann.headers)).status_code == 404
    async with runtime.db.read() as conn:
        for table in (aliases, alias_mailboxes, contacts, alias_activities):
            assert await conn.scalar(select(func.count()).select_from(table)) == 0, table.name
        trash = (await conn.execute(select(deleted_aliases))).one()
    assert trash.email == made["alias"] and trash.custom_domain_id is None


# Activities and stats ----------------------------------------------------------------------


async def test_activities(api: httpx.AsyncClient, runtime: Runtime, ann: Person) -> None:
    made = await new_alias(api, ann, "active")
    base = 1_700_000_000_000
    await add_activity(runtime, ann, made["id"], "carol@shop.example", "forward", base)
    await add_activity(runtime, ann, made["id"], "carol@shop.example", "reply", base + 1000)
    for n in range(25):
        await add_activity(runtime, ann, made["id"], "news@list.example", "block", base + 10_000 + n)
    path = f"/api/aliases/{made['id']}/activities"
    first = (await api.get(path, params={"page_id": 0}, headers=ann.headers)).json()["activities"]
    second = (await api.get(path, params={"page_id": 1}, headers=ann.headers)).json()["activities"]
    assert len(first) == 20 and len(second) == 7
    reply, forward = second[-2], second[-1]
    assert forward["action"] == "forward"
    assert (forward["from"], forward["to"], forward["timestamp"]) == ("carol@shop.example", made["alias"], base // 1000)
    assert reply["action"] == "reply" and (reply["from"], reply["to"]) == (made["alias"], "carol@shop.example")
    assert set(reply) == {"action", "from", "to", "timestamp", "reverse_alias", "reverse_alias_address"}
    assert reply["reverse_alias_address"].startswith("ra+") and reply["reverse_alias"].endswith(f"<{reply['reverse_alias_address']}>")
    assert first[0]["action"] == "block" and first[0]["from"] == "news@list.example"
    assert (await api.get(path, headers=ann.headers)).status_code == 400


async def test_stats(api: httpx.AsyncClient, runtime: Runtime, ann: Person, bob: Person) -> None:
    assert (await api.get("/api/stats", headers=ann.headers)).json() == {"nb_alias": 0, "nb_forward": 0, "nb_reply": 0, "nb_block": 0}
    one = await new_alias(api, ann, "one")
    two = await new_alias(api, ann, "two")
    await new_alias(api, bob, "bobs")
    await set_alias(runtime, one["id"], nb_forward=3, nb_reply=1)
    await set_alias(runtime, two["id"], nb_forward=2, nb_block=4)
    assert (await api.get("/api/stats", headers=ann.headers)).json() == {"nb_alias": 2, "nb_forward": 5, "nb_reply": 1, "nb_block": 4}
    assert (await api.get("/api/stats")).status_code == 401
