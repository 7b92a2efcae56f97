"""GET /api/export/aliases (CSV) and POST /api/import/aliases."""

from __future__ import annotations

import csv
import io

import httpx
import pytest
from sqlalchemy import func, select

from postern.config import Settings
from postern.serve.runtime import Runtime
from postern.storage.schema import alias_mailboxes, aliases
from tests.aliases import Person, add_mailbox, new_alias


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.alias_domains = ["example.com", "sl.example"]
    settings.premium_alias_domains = ["premium.example"]
    settings.max_alias_free_plan = 20
    return settings


def rows_of(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


async def counts(runtime: Runtime) -> tuple[int, int]:
    async with runtime.db.read() as conn:
        return (
            int(await conn.scalar(select(func.count()).select_from(aliases)) or 0),
            int(await conn.scalar(select(func.count()).select_from(alias_mailboxes)) or 0),
        )


async def test_export(api: httpx.AsyncClient, runtime: Runtime, ann: Person, bob: Person) -> None:
    work = await add_mailbox(runtime, ann.user_id, "work@example.net")
    one = await new_alias(api, ann, "one", note='a "quoted", note')
    two = await new_alias(api, ann, "two", mailbox_ids=[work, ann.mailbox_id])
    await api.post(f"/api/aliases/{two['id']}/toggle", headers=ann.headers)
    await new_alias(api, bob, "bobs")
    response = await api.get("/api/export/aliases", headers=ann.headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert rows_of(response.text) == [
        ["alias", "note", "enabled", "mailboxes"],
        [one["alias"], 'a "quoted", note', "True", "ann@example.org"],
        [two["alias"], "", "False", "work@example.net ann@example.org"],
    ]
    assert (await api.get("/api/export/aliases")).status_code == 401


async def test_export_import_round_trip(api: httpx.AsyncClient, runtime: Runtime, ann: Person, bob: Person) -> None:
    work = await add_mailbox(runtime, ann.user_id, "work@example.net")
    await add_mailbox(runtime, bob.user_id, "work@example.net")
    one = await new_alias(api, ann, "one", note="first")
    two = await new_alias(api, ann, "two", mailbox_ids=[work, ann.mailbox_id])
    await api.post(f"/api/aliases/{two['id']}/toggle", headers=ann.headers)
    exported = (await api.get("/api/export/aliases", headers=ann.headers)).text
    # Ann's aliases exist: importing them again skips every row.
    response = await api.post("/api/import/aliases", content=exported, headers={**ann.headers, "Content-Type": "text/csv"})
    assert response.status_code == 200
    assert response.json()["imported"] == 0 and len(response.json()["skipped"]) == 2
    # Renamed addresses are free: Bob imports them (as JSON), onto his own mailboxes.
    # Only the prefix changes: the random word after it may itself hold "one" or "two".
    uno_address, dos_address = "uno" + one["alias"].removeprefix("one"), "dos" + two["alias"].removeprefix("two")
    renamed = exported.replace(one["alias"], uno_address).replace(two["alias"], dos_address)
    response = await api.post("/api/import/aliases", json={"csv": renamed}, headers=bob.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"imported": 2, "skipped": []}
    listed = (await api.get("/api/v2/aliases", params={"page_id": 0}, headers=bob.headers)).json()["aliases"]
    by_email = {a["email"]: a for a in listed}
    uno = by_email[uno_address]
    dos = by_email[dos_address]
    assert (uno["note"], uno["enabled"], [m["email"] for m in uno["mailboxes"]]) == ("first", True, ["bob@example.org"])
    assert (dos["note"], dos["enabled"]) == (None, False)
    assert [m["email"] for m in dos["mailboxes"]] == ["work@example.net"]
    assert all(m["id"] != work for m in dos["mailboxes"])


async def test_import_skips_what_it_cannot_make(api: httpx.AsyncClient, runtime: Runtime, ann: Person, bob: Person) -> None:
    taken = await new_alias(api, bob, "taken")
    deleted = await new_alias(api, ann, "gone")
    await api.delete(f"/api/aliases/{deleted['id']}", headers=ann.headers)
    text = "\r\n".join(
        [
            "alias,note,enabled,mailboxes",
            "good.abcde@example.com,ok,True,ann@example.org",
            f"{taken['alias']},,True,",
            f"{deleted['alias']},,True,",
            "rich@premium.example,,True,",
            "someone@elsewhere.example,,True,",
            "not an address,,True,",
            "bad-flag@example.com,,maybe,",
            ",,True,",
            "Second.river12@SL.example,,false,nobody@example.net bob@example.org",
        ]
    )
    before = await counts(runtime)
    response = await api.post("/api/import/aliases", content=text.encode(), headers={**ann.headers, "Content-Type": "text/csv"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["imported"] == 2
    skipped = {s["alias"]: s["reason"] for s in body["skipped"]}
    assert set(skipped) == {taken["alias"], deleted["alias"], "rich@premium.example", "someone@elsewhere.example", "not an address", "bad-flag@example.com", ""}
    assert "taken" in skipped[taken["alias"]]
    assert "premium.example" in skipped["rich@premium.example"]
    assert await counts(runtime) == (before[0] + 2, before[1] + 2)
    listed = (await api.get("/api/v2/aliases", params={"page_id": 0}, headers=ann.headers)).json()["aliases"]
    second = next(a for a in listed if a["email"] == "second.river12@sl.example")
    # Bob's mailbox is not Ann's: the default one.
    assert second["enabled"] is False and second["mailboxes"] == [{"id": ann.mailbox_id, "email": "ann@example.org"}]


async def test_import_respects_the_free_plan(api: httpx.AsyncClient, runtime: Runtime, ann: Person) -> None:
    runtime.settings.max_alias_free_plan = 2
    text = "alias,note,enabled,mailboxes\n" + "".join(f"a{n}.plain12@example.com,,True,\n" for n in range(4))
    response = await api.post("/api/import/aliases", content=text, headers={**ann.headers, "Content-Type": "text/csv"})
    body = response.json()
    assert body["imported"] == 2 and len(body["skipped"]) == 2
    assert "limit" in body["skipped"][0]["reason"]


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"content": b""}, 400),
        ({"content": b"   \n"}, 400),
        ({"content": b"email,note\nx@example.com,\n"}, 400),
        ({"content": b"\xff\xfe garbage"}, 400),
        ({"content": b"alias\nx\x00@example.com\n"}, 400),
        ({"json": {"csv": 5}}, 400),
        ({"json": {"other": "x"}}, 400),
        ({"json": ["alias"]}, 400),
        ({"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 400),
        ({"content": b"alias,note\n" + b"x" * (5 * 1024 * 1024)}, 413),
    ],
)
async def test_import_bad_input(api: httpx.AsyncClient, runtime: Runtime, ann: Person, kwargs: dict[str, object], status: int) -> None:
    headers = {**ann.headers, "Content-Type": "text/csv", **kwargs.pop("headers", {})}  # type: ignore[dict-item]
    if "json" in kwargs:
        headers.pop("Content-Type")
    response = await api.post("/api/import/aliases", headers=headers, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == status, response.text
    assert response.json()["error"]
    assert await counts(runtime) == (0, 0)
