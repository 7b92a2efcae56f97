"""Alias options and alias creation: custom (prefix + signed suffix) and random, on
the current paths and the older ones the browser extension calls."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from sqlalchemy import func, select

from postern.config import Settings
from postern.serve.runtime import Runtime
from postern.storage.ids import now_ms
from postern.storage.schema import aliases, custom_domains, deleted_aliases
from tests.aliases import Person, add_mailbox, create_custom, new_alias, options, set_user, signed_suffix_for

EXPIRED = {"error": "Alias creation time is expired, please retry"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.alias_domains = ["example.com", "sl.example"]
    settings.premium_alias_domains = ["premium.example"]
    settings.max_alias_free_plan = 3
    return settings


async def alias_count(runtime: Runtime) -> int:
    async with runtime.db.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(aliases)) or 0)


async def add_custom_domain(runtime: Runtime, who: Person, domain: str, *, random_prefix: bool = False, verified: bool = True) -> int:
    async with runtime.db.write() as conn:
        result = await conn.execute(
            custom_domains.insert()
            .values(
                user_id=who.user_id,
                domain=domain,
                ownership_token="t" * 32,
                verified=verified,
                random_prefix_generation=random_prefix,
                created_ms=now_ms(),
            )
            .returning(custom_domains.c.id)
        )
        return int(result.scalar_one())


# Options -----------------------------------------------------------------------------------


async def test_options_v5(api: httpx.AsyncClient, runtime: Runtime, ann: Person) -> None:
    await add_custom_domain(runtime, ann, "ann.example")
    await add_custom_domain(runtime, ann, "rand.example", random_prefix=True)
    await add_custom_domain(runtime, ann, "unverified.example", verified=False)
    body = await options(api, ann, "www.facebook.com")
    assert body["can_create"] is True
    assert body["prefix_suggestion"] == "facebook"
    assert "recommendation" not in body
    suffixes = body["suffixes"]
    assert [s["suffix"].rpartition("@")[2] for s in suffixes] == ["ann.example", "rand.example", "example.com", "sl.example", "premium.example"]
    assert suffixes[0] == {**suffixes[0], "suffix": "@ann.example", "is_custom": True, "is_premium": False}
    assert re.fullmatch(r"\.[a-z]+@rand\.example", suffixes[1]["suffix"])
    for item in suffixes[2:]:
        assert re.fullmatch(r"\.[a-z]+\d{2,3}@[a-z.]+", item["suffix"]), item
        assert item["is_custom"] is False
    assert [s["is_premium"] for s in suffixes] == [False, False, False, False, True]
    for item in suffixes:
        assert set(item) == {"suffix", "signed_suffix", "is_custom", "is_premium"}
        assert item["signed_suffix"].startswith(item["suffix"] + ".")
        assert item["signed_suffix"] == item["signed_suffix"].lower()


async def test_options_v4_pairs_and_recommendation(api: httpx.AsyncClient, ann: Person) -> None:
    response = await api.get("/api/v4/alias/options", headers=ann.headers)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"can_create", "prefix_suggestion", "suffixes"}
    assert body["prefix_suggestion"] == ""
    assert all(isinstance(p, list) and len(p) == 2 and p[1].startswith(p[0] + ".") for p in body["suffixes"])
    # No premium offers in pairs (they could not say so).
    assert [p[0].rpartition("@")[2] for p in body["suffixes"]] == ["example.com", "sl.example"]
    # An alias made for a website is recommended there afterwards.
    signed = body["suffixes"][0][1]
    made = await api.post(
        "/api/v2/alias/custom/new",
        params={"hostname": "shop.example.net"},
        json={"alias_prefix": "shop", "signed_suffix": signed, "mailbox_id": ann.mailbox_id},
        headers=ann.headers,
    )
    assert made.status_code == 201, made.text
    again = (await api.get("/api/v4/alias/options", params={"hostname": "shop.example.net"}, headers=ann.headers)).json()
    assert again["recommendation"] == {"alias": made.json()["alias"], "hostname": "shop.example.net"}
    assert (await options(api, ann, "SHOP.example.net"))["recommendation"]["alias"] == made.json()["alias"]
    assert "recommendation" not in await options(api, ann, "other.example.net")


@pytest.mark.parametrize(
    ("hostname", "suggestion"),
    [
        ("www.facebook.com", "facebook"),
        ("facebook.com", "facebook"),
        ("news.bbc.co.uk", "bbc"),
        ("WWW.Example.ORG", "example"),
        ("localhost", "localhost"),
        ("my_site.example", "my_site"),
        ("xn--bcher-kva.example", "xn--bcher-kva"),
        ("bücher.example", "bcher"),
        ("", ""),
    ],
)
async def test_prefix_suggestion(api: httpx.AsyncClient, ann: Person, hostname: str, suggestion: str) -> None:
    assert (await options(api, ann, hostname))["prefix_suggestion"] == suggestion


async def test_options_bad_hostname(api: httpx.AsyncClient, ann: Person) -> None:
    response = await api.get("/api/v5/alias/options", params={"hostname": "a" * 2000}, headers=ann.headers)
    assert response.status_code == 400 and "hostname" in response.json()["error"]
    response = await api.get("/api/v5/alias/options", params={"hostname": "a\x00b"}, headers=ann.headers)
    assert response.status_code == 400


async def test_options_need_a_key(api: httpx.AsyncClient) -> None:
    assert (await api.get("/api/v5/alias/options")).status_code == 401
    assert (await api.get("/api/v4/alias/options", headers={"Authentication": "wrong"})).status_code == 401


# Custom aliases ----------------------------------------------------------------------------


async def test_create_custom_alias(api: httpx.AsyncClient, runtime: Runtime, ann: Person) -> None:
    second = await add_mailbox(runtime, ann.user_id, "ann.work@example.net")
    signed = await signed_suffix_for(api, ann, "sl.example")
    suffix = signed.rsplit(".", 2)[0]
    response = await api.post(
        "/api/v3/alias/custom/new",
        params={"hostname": "www.github.com"},
        json={"alias_prefix": "  GitHub.Dev ", "signed_suffix": signed, "mailbox_ids": [second, ann.mailbox_id], "note": "code", "name": "Ann"},
        headers=ann.headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["alias"] == body["email"] == f"github.dev{suffix}"
    assert body["note"] == "code" and body["name"] == "Ann"
    assert body["enabled"] is True and body["pinned"] is False
    assert body["mailbox"] == {"id": second, "email": "ann.work@example.net"}
    assert body["mailboxes"] == [{"id": second, "email": "ann.work@example.net"}, {"id": ann.mailbox_id, "email": "ann@example.org"}]
    assert (body["nb_forward"], body["nb_block"], body["nb_reply"]) == (0, 0, 0)
    assert body["support_pgp"] is False and body["disable_pgp"] is False
    assert body["latest_activity"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+00:00", body["creation_date"])
    assert isinstance(body["creation_timestamp"], int) and isinstance(body["id"], int)
    fetched = await api.get(f"/api/aliases/{body['id']}", headers=ann.headers)
    assert fetched.json() == {k: v for k, v in body.items() if k != "alias"}
    async with runtime.db.read() as conn:
        assert await conn.scalar(select(aliases.c.hostname).where(aliases.c.id == body["id"])) == "www.github.com"


async def test_custom_domain_alias(api: httpx.AsyncClient, runtime: Runtime, ann: Person) -> None:
    domain_id = await add_custom_domain(runtime, ann, "ann.example")
    body = await new_alias(api, ann, "shop", "ann.example")
    assert body["alias"] == "shop@ann.example"
    async with runtime.db.read() as conn:
        assert await conn.scalar(select(aliases.c.custom_domain_id).where(aliases.c.id == body["id"])) == domain_id


async def test_case_folded_signed_suffix_is_accepted(api: httpx.AsyncClient, ann: Person) -> None:
    signed = await signed_suffix_for(api, ann, "example.com")
    for n, variant in enumerate((signed.lower(), signed.upper())):
        response = await api.post(
            "/api/v3/alias/custom/new",
            json={"alias_prefix": f"folded{n}", "signed_suffix": variant, "mailbox_ids": [ann.mailbox_id]},
            headers=ann.headers,
        )
        assert response.status_code == 201, response.text
        assert response.json()["alias"] == f"folded{n}{signed.rsplit('.', 2)[0]}"


async def test_expired_signed_suffix_is_412(api: httpx.AsyncClient, runtime: Runtime, ann: Person) -> None:
    signed = await signed_suffix_for(api, ann, "example.com")
    real = runtime.aliases.signer.clock
    runtime.aliases.signer.clock = lambda: real() + 601
    try:
        for path in ("/api/v3/alias/custom/new", "/api/v2/alias/custom/new"):
            response = await api.post(path, json={"alias_prefix": "late", "signed_suffix": signed, "mailbox_ids": [ann.mailbox_id]}, headers=ann.headers)
            assert response.status_code == 412
            assert response.json() == EXPIRED
    finally:
        runtime.aliases.signer.clock = real
    assert await alias_count(runtime) == 0


async def test_tampered_or_foreign_signed_suffix(api: httpx.AsyncClient, runtime: Runtime, ann: Person, bob: Person) -> None:
    signed = await signed_suffix_for(api, ann, "example.com")
    premium = await signed_suffix_for(api, ann, "premium.example")
    forged = signed.replace("@example.com", "@premium.example")
    for bad, who in ((forged, ann), (signed, bob), ("nonsense", ann), (".x@example.com", ann)):
        response = await api.post(
            "/api/v3/alias/custom/new", json={"alias_prefix": "forged", "signed_suffix": bad, "mailbox_ids": [who.mailbox_id]}, headers=who.headers
        )
        assert response.status_code == 412, response.text
        assert "retry" in response.json()["error"]
    # A premium domain offered to a free user cannot be used...
    response = await api.post(
        "/api/v3/alias/custom/new", json={"alias_prefix": "rich", "signed_suffix": premium, "mailbox_ids": [ann.mailbox_id]}, headers=ann.headers
    )
    assert response.status_code == 403 and "premium" in response.json()["error"]
    assert await alias_count(runtime) == 0
    # ... until the user is premium.
    await set_user(runtime, ann.user_id, premium=True)
    response = await api.post(
        "/api/v3/alias/custom/new", json={"alias_prefix": "rich", "signed_suffix": premium, "mailbox_ids": [ann.mailbox_id]}, headers=ann.headers
    )
    assert response.status_code == 201, response.text


async def test_domain_no_longer_usable(api: httpx.AsyncClient, runtime: Runtime, ann: Person) -> None:
    await add_custom_domain(runtime, ann, "gone.example")
    signed = await signed_suffix_for(api, ann, "gone.example")
    async with runtime.db.write() as conn:
        await conn.execute(custom_domains.delete())
    response = await api.post(
        "/api/v3/alias/custom/new", json={"alias_prefix": "late", "signed_suffix": signed, "mailbox_ids": [ann.mailbox_id]}, headers=ann.headers
    )
    assert response.status_code == 400 and "gone.example" in response.json()["error"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"alias_prefix": ""}, "alias_prefix"),
        ({"alias_prefix": "a" * 41}, "alias_prefix"),
        ({"alias_prefix": "has space"}, "alias_prefix"),
        ({"alias_prefix": "plus+sign"}, "alias_prefix"),
        ({"alias_prefix": ".dot"}, "dot"),
        ({"alias_prefix": "dot."}, "dot"),
        ({"alias_prefix": "dot..dot"}, "dot"),
        ({"alias_prefix": "ünï"}, "alias_prefix"),
        ({"alias_prefix": "nul\x00"}, "NUL"),
        ({"alias_prefix": 12}, "alias_prefix"),
        ({"alias_prefix": None}, "alias_prefix"),
        ({"mailbox_ids": []}, "mailbox_ids"),
        ({"mailbox_ids": "1"}, "mailbox_ids"),
        ({"mailbox_ids": ["1"]}, "mailbox_ids"),
        ({"mailbox_ids": [True]}, "mailbox_ids"),
        ({"mailbox_ids": [99999]}, "not found"),
        ({"mailbox_ids": [2**40]}, "not found"),
        ({"mailbox_ids": [-1]}, "not found"),
        ({"note": "n" * 10_001}, "note"),
        ({"note": 5}, "note"),
        ({"name": "x" * 256}, "name"),
        ({"signed_suffix": ""}, "signed_suffix"),
        ({"signed_suffix": "s" * 600}, "signed_suffix"),
        ({"signed_suffix": ["x"]}, "signed_suffix"),
    ],
)
async def test_create_custom_bad_input(api: httpx.AsyncClient, runtime: Runtime, ann: Person, body: dict[str, object], fragment: str) -> None:
    signed = await signed_suffix_for(api, ann, "example.com")
    full = {"alias_prefix": "good", "signed_suffix": signed, "mailbox_ids": [ann.mailbox_id], **body}
    response = await api.post("/api/v3/alias/custom/new", json=full, headers=ann.headers)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]
    assert await alias_count(runtime) == 0


async def test_create_custom_missing_or_garbage_body(api: httpx.AsyncClient, ann: Person) -> None:
    for kwargs in ({}, {"content": b"not json", "headers": {"Content-Type": "application/json"}}, {"json": []}, {"json": {}}):
        headers = {**ann.headers, **kwargs.pop("headers", {})}  # type: ignore[dict-item]
        response = await api.post("/api/v3/alias/custom/new", headers=headers, **kwargs)  # type: ignore[arg-type]
        assert response.status_code == 400, response.text
        assert response.json()["error"]


async def test_mailboxes_must_be_the_users_and_verified(api: httpx.AsyncClient, runtime: Runtime, ann: Person, bob: Person) -> None:
    unverified = await add_mailbox(runtime, ann.user_id, "pending@example.net", verified=False)
    signed = await signed_suffix_for(api, ann, "example.com")
    response = await api.post(
        "/api/v3/alias/custom/new", json={"alias_prefix": "x", "signed_suffix": signed, "mailbox_ids": [bob.mailbox_id]}, headers=ann.headers
    )
    assert response.status_code == 400
    assert response.json()["error"] == f"mailbox {bob.mailbox_id} not found"
    assert "bob" not in response.text
    response = await api.post(
        "/api/v3/alias/custom/new",
        json={"alias_prefix": "x", "signed_suffix": signed, "mailbox_ids": [ann.mailbox_id, unverified]},
        headers=ann.headers,
    )
    assert response.status_code == 400 and "not verified" in response.json()["error"]
    assert await alias_count(runtime) == 0


async def test_existing_or_deleted_address_is_409(api: httpx.AsyncClient, runtime: Runtime, ann: Person, bob: Person) -> None:
    await add_custom_domain(runtime, ann, "ann.example")
    made = await new_alias(api, ann, "taken", "ann.example")
    again = await create_custom(api, ann, "taken", "ann.example")
    assert again.status_code == 409
    assert "taken@ann.example" in again.json()["error"]
    deleted = await api.delete(f"/api/aliases/{made['id']}", headers=ann.headers)
    assert deleted.json() == {"deleted": True}
    async with runtime.db.read() as conn:
        trash = (await conn.execute(select(deleted_aliases))).one()
    assert (trash.email, trash.user_id) == ("taken@ann.example", ann.user_id) and trash.custom_domain_id is not None
    # Deleted: never again, by anyone.
    assert (await create_custom(api, ann, "taken", "ann.example")).status_code == 409
    # Another user's alias is taken too.
    signed = await signed_suffix_for(api, bob, "example.com")
    suffix = signed.rsplit(".", 2)[0]
    first = await api.post(
        "/api/v2/alias/custom/new", json={"alias_prefix": "same", "signed_suffix": signed, "mailbox_ids": [bob.mailbox_id]}, headers=bob.headers
    )
    assert first.status_code == 201
    signed_for_ann = runtime.aliases.signer.sign(suffix, ann.user_id)
    clash = await api.post(
        "/api/v3/alias/custom/new", json={"alias_prefix": "same", "signed_suffix": signed_for_ann, "mailbox_ids": [ann.mailbox_id]}, headers=ann.headers
    )
    assert clash.status_code == 409


async def test_free_plan_limit(api: httpx.AsyncClient, runtime: Runtime, ann: Person) -> None:
    for n in range(2):
        await new_alias(api, ann, f"a{n}")
    assert (await api.post("/api/alias/random/new", headers=ann.headers)).status_code == 201
    assert (await options(api, ann))["can_create"] is False
    response = await create_custom(api, ann, "one-too-many")
    assert response.status_code == 400 and "limit" in response.json()["error"]
    response = await api.post("/api/alias/random/new", json={"note": "x"}, headers=ann.headers)
    assert response.status_code == 400 and "limit" in response.json()["error"]
    assert await alias_count(runtime) == 3
    await set_user(runtime, ann.user_id, premium=True)
    assert (await options(api, ann))["can_create"] is True
    assert (await create_custom(api, ann, "premium-now")).status_code == 201


async def test_v2_custom_new_defaults_to_the_default_mailbox(api: httpx.AsyncClient, runtime: Runtime, ann: Person) -> None:
    second = await add_mailbox(runtime, ann.user_id, "second@example.net")
    pairs = (await api.get("/api/v4/alias/options", headers=ann.headers)).json()["suffixes"]
    made = await api.post(
        "/api/v2/alias/custom/new", json={"alias_prefix": "ext", "signed_suffix": pairs[0][1], "note": "from the extension"}, headers=ann.headers
    )
    assert made.status_code == 201, made.text
    assert made.json()["mailboxes"] == [{"id": ann.mailbox_id, "email": "ann@example.org"}]
    assert made.json()["alias"].startswith("ext.")
    made = await api.post(
        "/api/v2/alias/custom/new", json={"alias_prefix": "ext2", "signed_suffix": pairs[1][1], "mailbox_id": second}, headers=ann.headers
    )
    assert made.status_code == 201 and made.json()["mailbox"]["id"] == second


# Random aliases ----------------------------------------------------------------------------


async def test_random_alias_word_mode(api: httpx.AsyncClient, runtime: Runtime, ann: Person) -> None:
    # What Bitwarden sends: hostname in the query, a note in the body; it reads "alias".
    response = await api.post("/api/alias/random/new", params={"hostname": "vault.example"}, json={"note": "Generated by Bitwarden."}, headers=ann.headers)
    assert response.status_code == 201, response.text
    body = response.json()
    assert re.fullmatch(r"[a-z]+_[a-z]+\d{2,3}@example\.com", body["alias"]), body["alias"]
    assert body["email"] == body["alias"] and body["note"] == "Generated by Bitwarden."
    assert body["mailboxes"] == [{"id": ann.mailbox_id, "email": "ann@example.org"}]
    async with runtime.db.read() as conn:
        assert await conn.scalar(select(aliases.c.hostname).where(aliases.c.id == body["id"])) == "vault.example"


async def test_random_alias_uuid_mode_and_setting(api: httpx.AsyncClient, runtime: Runtime, ann: Person) -> None:
    response = await api.post("/api/alias/random/new", params={"mode": "uuid"}, headers=ann.headers)
    assert response.status_code == 201, response.text
    local = response.json()["alias"].split("@")[0]
    assert uuid.UUID(local).version == 4
    await set_user(runtime, ann.user_id, alias_generator="uuid")
    local = (await api.post("/api/alias/random/new", json={}, headers=ann.headers)).json()["alias"].split("@")[0]
    assert uuid.UUID(local).version == 4
    assert (await api.post("/api/alias/random/new", params={"mode": "word"}, headers=ann.headers)).json()["alias"].count("_") == 1


async def test_random_alias_default_domain(api: httpx.AsyncClient, runtime: Runtime, ann: Person) -> None:
    await set_user(runtime, ann.user_id, random_alias_default_domain="sl.example", premium=True)
    assert (await api.post("/api/alias/random/new", headers=ann.headers)).json()["alias"].endswith("@sl.example")
    await set_user(runtime, ann.user_id, random_alias_default_domain="premium.example")
    assert (await api.post("/api/alias/random/new", headers=ann.headers)).json()["alias"].endswith("@premium.example")
    # No longer usable (premium lapsed): the first usable domain.
    await set_user(runtime, ann.user_id, premium=False)
    assert (await api.post("/api/alias/random/new", headers=ann.headers)).json()["alias"].endswith("@example.com")


async def test_random_alias_bad_input(api: httpx.AsyncClient, runtime: Runtime, ann: Person) -> None:
    for kwargs in (
        {"params": {"mode": "emoji"}},
        {"json": {"note": 12}},
        {"json": {"note": "x" * 10_001}},
        {"json": {"note": "a\x00"}},
        {"json": ["note"]},
        {"params": {"hostname": "h" * 300}},
    ):
        response = await api.post("/api/alias/random/new", headers=ann.headers, **kwargs)  # type: ignore[arg-type]
        assert response.status_code == 400, (kwargs, response.text)
    assert await alias_count(runtime) == 0


async def test_random_alias_retries_on_collision(api: httpx.AsyncClient, runtime: Runtime, ann: Person, monkeypatch: pytest.MonkeyPatch) -> None:
    from postern.aliases import words

    made = iter(["taken_one10", "taken_one10", "free_one11"])
    monkeypatch.setattr(words, "word_local", lambda: next(made))
    first = await api.post("/api/alias/random/new", headers=ann.headers)
    assert first.json()["alias"] == "taken_one10@example.com"
    second = await api.post("/api/alias/random/new", headers=ann.headers)
    assert second.status_code == 201 and second.json()["alias"] == "free_one11@example.com"
