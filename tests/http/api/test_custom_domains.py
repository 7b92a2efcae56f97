"""/api/custom_domains: listing, adding (premium), settings, DNS records and checks,
trash and deletion."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from postern.aliases.availability import address_taken
from postern.aliases.usable_domains import usable_domains
from postern.config import Settings
from postern.delivery.dns import DnsError, StaticResolver
from postern.serve.runtime import Runtime
from postern.storage import aliases as alias_store
from postern.storage import mailboxes as mailbox_store
from postern.storage import users as user_store
from postern.storage.ids import new_id, now_ms
from postern.storage.schema import custom_domains, deleted_aliases, mailboxes, users
from tests.http.api.helpers import Outbox, auth, signed_up

SPEC_FIELDS = {
    "id",
    "domain_name",
    "is_verified",
    "nb_alias",
    "creation_date",
    "creation_timestamp",
    "catch_all",
    "name",
    "random_prefix_generation",
    "mailboxes",
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.alias_domains = ["aliases.example.net"]
    settings.premium_alias_domains = ["premium.example.net"]
    return settings


async def user_id_of(runtime: Runtime, key: str) -> str:
    holder = await runtime.api_keys.authenticate(key)
    assert holder is not None
    return holder.user.id


async def premium_user(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox, email: str) -> str:
    key = await signed_up(api, outbox, email)
    user_id = await user_id_of(runtime, key)
    async with runtime.db.write() as conn:
        await conn.execute(update(users).where(users.c.id == user_id).values(premium=True))
    return key


async def add(api: httpx.AsyncClient, key: str, domain: str = "example.org") -> dict[str, Any]:
    response = await api.post("/api/custom_domains", json={"domain": domain}, headers=auth(key))
    assert response.status_code == 201, response.text
    return response.json()


def publish(resolver: StaticResolver, records: list[dict[str, Any]]) -> None:
    txt: dict[str, list[str]] = {}
    for record in records:
        if record["type"] == "MX":
            resolver.set("MX", record["name"], [(record["priority"], record["value"] + ".")])
        else:
            txt.setdefault(record["name"], []).append(record["value"])
    for name, values in txt.items():
        resolver.set("TXT", name, values)


async def default_mailbox(runtime: Runtime, user_id: str) -> tuple[int, str]:
    async with runtime.db.read() as conn:
        row = (await conn.execute(select(mailboxes).where(mailboxes.c.user_id == user_id, mailboxes.c.is_default))).one()
    return row.id, row.email


async def new_mailbox(runtime: Runtime, user_id: str, email: str, verified: bool = True) -> int:
    async with runtime.db.write() as conn:
        return await mailbox_store.insert(
            conn, {"user_id": user_id, "email": email, "email_key": email, "verified": verified, "created_ms": now_ms()}
        )


async def add_alias(runtime: Runtime, user_id: str, email: str, domain_id: int) -> int:
    mailbox_id, _ = await default_mailbox(runtime, user_id)
    async with runtime.db.write() as conn:
        return await alias_store.insert_alias(
            conn, user_id=user_id, email=email, email_key=email, mailbox_ids=[mailbox_id], created_ms=now_ms(), custom_domain_id=domain_id
        )


# Listing and adding ---------------------------------------------------------------------


async def test_list_needs_a_key_and_starts_empty(api: httpx.AsyncClient, outbox: Outbox) -> None:
    assert (await api.get("/api/custom_domains")).status_code == 401
    key = await signed_up(api, outbox, "ava@mail.test")
    response = await api.get("/api/custom_domains", headers=auth(key))
    assert response.status_code == 200
    assert response.json() == []


async def test_custom_domains_are_premium(api: httpx.AsyncClient, outbox: Outbox) -> None:
    key = await signed_up(api, outbox, "ava@mail.test")
    response = await api.post("/api/custom_domains", json={"domain": "example.org"}, headers=auth(key))
    assert response.status_code == 403
    assert response.json() == {"error": "Custom domains are a premium feature"}
    assert (await api.get("/api/custom_domains", headers=auth(key))).json() == []


async def test_add_a_domain(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    key = await premium_user(api, runtime, outbox, "ava@mail.test")
    user_id = await user_id_of(runtime, key)
    mailbox_id, mailbox_email = await default_mailbox(runtime, user_id)
    created = await add(api, key, " Example.ORG. ")
    assert set(created) == SPEC_FIELDS | {"dns_records"}
    assert created["domain_name"] == "example.org"
    assert created["is_verified"] is False
    assert created["nb_alias"] == 0
    assert created["catch_all"] is False and created["random_prefix_generation"] is False
    assert created["name"] is None
    assert created["mailboxes"] == [{"id": mailbox_id, "email": mailbox_email}]
    assert isinstance(created["id"], int)
    assert abs(created["creation_timestamp"] - now_ms() // 1000) < 600
    assert created["creation_date"].endswith("+00:00")

    records = {r["purpose"]: r for r in created["dns_records"]}
    assert set(records) == {"ownership", "mx", "spf", "dkim", "dmarc"}
    async with runtime.db.read() as conn:
        token = await conn.scalar(select(custom_domains.c.ownership_token).where(custom_domains.c.id == created["id"]))
    assert records["ownership"] == {"purpose": "ownership", "type": "TXT", "name": "example.org", "value": f"postern-verification={token}", "priority": None}
    assert records["mx"] == {"purpose": "mx", "type": "MX", "name": "example.org", "value": "mx.example.com", "priority": 10}
    assert records["spf"]["value"] == "v=spf1 mx ~all"
    assert records["dkim"]["name"].endswith("._domainkey.example.org")
    assert records["dkim"]["value"].startswith("v=DKIM1; k=rsa; p=")
    assert records["dmarc"]["name"] == "_dmarc.example.org"

    listed = (await api.get("/api/custom_domains", headers=auth(key))).json()
    assert [set(d) for d in listed] == [SPEC_FIELDS]
    assert listed[0] == {k: v for k, v in created.items() if k != "dns_records"}

    dns = (await api.get(f"/api/custom_domains/{created['id']}/dns", headers=auth(key))).json()
    assert dns == {"domain_name": "example.org", "is_verified": False, "dns_records": created["dns_records"], "last_check": None}


async def test_a_unicode_domain_is_stored_in_ascii(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    key = await premium_user(api, runtime, outbox, "ava@mail.test")
    created = await add(api, key, "Bücher.de")
    assert created["domain_name"] == "xn--bcher-kva.de"
    response = await api.post("/api/custom_domains", json={"domain": "xn--bcher-kva.de"}, headers=auth(key))
    assert response.status_code == 409


@pytest.mark.parametrize(
    "domain",
    [
        "",
        "not a domain",
        "org",
        "192.0.2.1",
        "exa_mple.org",
        "-bad.org",
        "example.com",  # the mail domain
        "mx.example.com",  # the host name
        "sub.example.com",
        "aliases.example.net",  # an alias domain
        "x.premium.example.net",
        "hosted.test",  # a hosted address's domain
        "a" * 64 + ".org",
        "a..b.org",
        "nul\x00.org",
        "x" * 300,
        "x" * 301,
        "bob@example.org",
    ],
)
async def test_bad_or_reserved_domains_are_refused(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox, domain: str) -> None:
    key = await premium_user(api, runtime, outbox, "ava@mail.test")
    user_id = await user_id_of(runtime, key)
    async with runtime.db.write() as conn:
        await user_store.insert_address(
            conn, {"id": new_id(), "user_id": user_id, "address": "bob@hosted.test", "address_key": "bob@hosted.test", "created_ms": now_ms()}
        )
    response = await api.post("/api/custom_domains", json={"domain": domain}, headers=auth(key))
    assert response.status_code == 400, response.text
    assert isinstance(response.json()["error"], str) and response.json()["error"]
    assert (await api.get("/api/custom_domains", headers=auth(key))).json() == []


@pytest.mark.parametrize("body", [None, {}, {"domain": 12}, {"domain": None}, [1]])
async def test_add_with_a_bad_body(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox, body: Any) -> None:
    key = await premium_user(api, runtime, outbox, "ava@mail.test")
    response = await api.post("/api/custom_domains", json=body, headers=auth(key))
    assert response.status_code == 400
    assert set(response.json()) == {"error"}


async def test_a_domain_belongs_to_one_user(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    ava = await premium_user(api, runtime, outbox, "ava@mail.test")
    bob = await premium_user(api, runtime, outbox, "bob@mail.test")
    created = await add(api, ava, "example.org")
    again = await api.post("/api/custom_domains", json={"domain": "example.org"}, headers=auth(ava))
    assert again.status_code == 409
    assert again.json() == {"error": "You have already added example.org"}
    taken = await api.post("/api/custom_domains", json={"domain": "EXAMPLE.org"}, headers=auth(bob))
    assert taken.status_code == 409
    assert taken.json() == {"error": "example.org is already in use"}

    # An old unverified claim without aliases no longer blocks the domain.
    async with runtime.db.write() as conn:
        await conn.execute(update(custom_domains).where(custom_domains.c.id == created["id"]).values(created_ms=now_ms() - 4 * 86400_000))
    taken_over = await add(api, bob, "example.org")
    assert (await api.get("/api/custom_domains", headers=auth(ava))).json() == []
    assert [d["id"] for d in (await api.get("/api/custom_domains", headers=auth(bob))).json()] == [taken_over["id"]]


async def test_a_verified_claim_is_never_taken_over(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    ava = await premium_user(api, runtime, outbox, "ava@mail.test")
    bob = await premium_user(api, runtime, outbox, "bob@mail.test")
    created = await add(api, ava, "example.org")
    async with runtime.db.write() as conn:
        await conn.execute(
            update(custom_domains).where(custom_domains.c.id == created["id"]).values(verified=True, created_ms=now_ms() - 30 * 86400_000)
        )
    assert (await api.post("/api/custom_domains", json={"domain": "example.org"}, headers=auth(bob))).status_code == 409


# Other users' ids -------------------------------------------------------------------------


async def test_another_users_domain_is_not_found(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    ava = await premium_user(api, runtime, outbox, "ava@mail.test")
    bob = await premium_user(api, runtime, outbox, "bob@mail.test")
    domain_id = (await add(api, ava))["id"]
    for path_id in (str(domain_id), str(domain_id + 1000), "abc", "99999999999", "-1", "0", "1e3"):
        base = f"/api/custom_domains/{path_id}"
        calls = [
            api.patch(base, json={"catch_all": True}, headers=auth(bob)),
            api.get(f"{base}/trash", headers=auth(bob)),
            api.get(f"{base}/dns", headers=auth(bob)),
            api.post(f"{base}/check", headers=auth(bob)),
            api.delete(base, headers=auth(bob)),
        ]
        for call in calls:
            response = await call
            assert response.status_code == 404, (path_id, response.request.url, response.text)
            assert response.json() == {"error": "Custom domain not found"}
    # Nothing changed for its owner.
    listed = (await api.get("/api/custom_domains", headers=auth(ava))).json()
    assert [(d["id"], d["catch_all"]) for d in listed] == [(domain_id, False)]
    assert (await api.get("/api/custom_domains", headers=auth(bob))).json() == []
    assert (await api.delete(f"/api/custom_domains/{domain_id}")).status_code == 401


# Settings -----------------------------------------------------------------------------------


async def test_patch_settings(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    key = await premium_user(api, runtime, outbox, "ava@mail.test")
    user_id = await user_id_of(runtime, key)
    first, first_email = await default_mailbox(runtime, user_id)
    second = await new_mailbox(runtime, user_id, "second@mail.test")
    domain_id = (await add(api, key))["id"]
    url = f"/api/custom_domains/{domain_id}"

    response = await api.patch(url, json={"catch_all": True, "random_prefix_generation": True, "name": "  Ava Doe ", "mailbox_ids": [second, first]}, headers=auth(key))
    assert response.status_code == 200, response.text
    patched = response.json()
    assert set(patched) == SPEC_FIELDS
    assert (patched["catch_all"], patched["random_prefix_generation"], patched["name"]) == (True, True, "Ava Doe")
    assert patched["mailboxes"] == [{"id": first, "email": first_email}, {"id": second, "email": "second@mail.test"}]
    assert (await api.get("/api/custom_domains", headers=auth(key))).json() == [patched]

    # Only what is given changes; an empty body changes nothing.
    response = await api.patch(url, json={"catch_all": False}, headers=auth(key))
    assert (response.json()["catch_all"], response.json()["random_prefix_generation"], response.json()["name"]) == (False, True, "Ava Doe")
    assert (await api.patch(url, json={}, headers=auth(key))).json() == response.json()
    response = await api.patch(url, json={"mailbox_ids": [second, second]}, headers=auth(key))
    assert response.json()["mailboxes"] == [{"id": second, "email": "second@mail.test"}]
    # null or "" removes the name.
    assert (await api.patch(url, json={"name": None}, headers=auth(key))).json()["name"] is None
    await api.patch(url, json={"name": "x"}, headers=auth(key))
    assert (await api.patch(url, json={"name": ""}, headers=auth(key))).json()["name"] is None


async def test_patch_with_bad_input(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    key = await premium_user(api, runtime, outbox, "ava@mail.test")
    user_id = await user_id_of(runtime, key)
    first, _ = await default_mailbox(runtime, user_id)
    unverified = await new_mailbox(runtime, user_id, "unverified@mail.test", verified=False)
    bob = await signed_up(api, outbox, "bob@mail.test")
    bobs, _ = await default_mailbox(runtime, await user_id_of(runtime, bob))
    domain_id = (await add(api, key))["id"]
    url = f"/api/custom_domains/{domain_id}"
    bad = [
        ({"name": "a\nb"}, "name must not contain line breaks or control characters"),
        ({"name": "a\rb"}, "name must not contain line breaks or control characters"),
        ({"name": "x" * 129}, "name must be at most 128 characters"),
        ({"name": 5}, "name must be a string"),
        ({"catch_all": "yes"}, "catch_all must be true or false"),
        ({"catch_all": None}, "catch_all must be true or false"),
        ({"random_prefix_generation": 1}, "random_prefix_generation must be true or false"),
        ({"mailbox_ids": []}, "mailbox_ids must name at least one mailbox"),
        ({"mailbox_ids": [unverified]}, "mailbox_ids must name your verified mailboxes"),
        ({"mailbox_ids": [first, bobs]}, "mailbox_ids must name your verified mailboxes"),
        ({"mailbox_ids": [first, 2**40]}, "mailbox_ids must name your verified mailboxes"),
        ({"mailbox_ids": [-1]}, "mailbox_ids must name your verified mailboxes"),
        ({"mailbox_ids": ["1"]}, None),
        ({"mailbox_ids": 1}, None),
        (None, "Request body cannot be empty"),
    ]
    for body, error in bad:
        response = await api.patch(url, json=body, headers=auth(key))
        assert response.status_code == 400, (body, response.text)
        if error:
            assert response.json() == {"error": error}, body
        else:
            assert set(response.json()) == {"error"}
    domain = (await api.get("/api/custom_domains", headers=auth(key))).json()[0]
    assert (domain["name"], domain["catch_all"], [m["id"] for m in domain["mailboxes"]]) == (None, False, [first])
    # The name limit counts characters.
    assert (await api.patch(url, json={"name": "é" * 128}, headers=auth(key))).status_code == 200


# DNS checks --------------------------------------------------------------------------------


async def test_check_with_every_record_published(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox, resolver: StaticResolver) -> None:
    key = await premium_user(api, runtime, outbox, "ava@mail.test")
    created = await add(api, key)
    url = f"/api/custom_domains/{created['id']}"
    publish(resolver, created["dns_records"])
    response = await api.post(f"{url}/check", headers=auth(key))
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["is_verified"] is True
    assert set(report["checks"]) == {"ownership", "mx", "spf", "dkim", "dmarc"}
    for name, check in report["checks"].items():
        assert check["ok"] is True, (name, check)
        assert set(check) == {"ok", "expected", "found", "error", "temporary"}
        assert check["error"] is None and check["expected"]
    assert report["checks"]["mx"]["found"] == ["10 mx.example.com"]
    assert report["notes"] == []
    assert report["custom_domain"]["is_verified"] is True
    assert set(report["custom_domain"]) == SPEC_FIELDS

    dns = (await api.get(f"{url}/dns", headers=auth(key))).json()
    assert dns["is_verified"] is True
    assert {k: v for k, v in dns["last_check"].items()} == {k: v for k, v in report.items() if k != "custom_domain"}
    assert (await api.get("/api/custom_domains", headers=auth(key))).json()[0]["is_verified"] is True
    async with runtime.db.read() as conn:
        row = (await conn.execute(select(custom_domains).where(custom_domains.c.id == created["id"]))).one()
        user = await user_store.get_user(conn, row.user_id)
        usable = await usable_domains(conn, runtime.settings, user)
    assert (row.verified, row.mx_ok, row.spf_ok, row.dkim_ok, row.dmarc_ok) == (True, True, True, True, True)
    assert row.checked_ms is not None
    assert [d.domain for d in usable if d.is_custom] == ["example.org"]


@pytest.mark.parametrize("missing", ["ownership", "mx", "spf", "dkim", "dmarc"])
async def test_check_reports_each_missing_record(
    api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox, resolver: StaticResolver, missing: str
) -> None:
    key = await premium_user(api, runtime, outbox, "ava@mail.test")
    created = await add(api, key)
    publish(resolver, [r for r in created["dns_records"] if r["purpose"] != missing])
    report = (await api.post(f"/api/custom_domains/{created['id']}/check", headers=auth(key))).json()
    failing = {name for name, check in report["checks"].items() if not check["ok"]}
    assert failing == {missing}
    assert report["checks"][missing]["error"]
    assert report["checks"][missing]["temporary"] is False
    assert report["is_verified"] is (missing != "ownership")
    async with runtime.db.read() as conn:
        row = (await conn.execute(select(custom_domains).where(custom_domains.c.id == created["id"]))).one()
    flags = {"ownership": row.verified, "mx": row.mx_ok, "spf": row.spf_ok, "dkim": row.dkim_ok, "dmarc": row.dmarc_ok}
    assert {name for name, ok in flags.items() if not ok} == {missing}
    if missing == "ownership":
        assert any("verify" in note for note in report["notes"])


async def test_dns_failures_are_reported_and_a_verified_domain_stays_verified(
    api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox, resolver: StaticResolver
) -> None:
    key = await premium_user(api, runtime, outbox, "ava@mail.test")
    created = await add(api, key)
    url = f"/api/custom_domains/{created['id']}/check"

    # Before verification: a failure is reported (never a 500), nothing is verified.
    resolver.set("TXT", "example.org", DnsError("SERVFAIL", temporary=True))
    response = await api.post(url, headers=auth(key))
    assert response.status_code == 200
    report = response.json()
    assert report["is_verified"] is False
    assert report["checks"]["ownership"]["temporary"] is True
    assert "SERVFAIL" in report["checks"]["ownership"]["error"]

    publish(resolver, created["dns_records"])
    assert (await api.post(url, headers=auth(key))).json()["is_verified"] is True

    # A temporary failure keeps what passed, and says so.
    resolver.set("TXT", "example.org", DnsError("timeout", temporary=True))
    resolver.set("MX", "example.org", DnsError("no server answered", temporary=True))
    report = (await api.post(url, headers=auth(key))).json()
    assert report["is_verified"] is True
    assert report["checks"]["ownership"]["ok"] is False and report["checks"]["ownership"]["temporary"] is True
    assert "The ownership check failed temporarily: the domain stays verified" in report["notes"]
    assert any(note.startswith("The MX check failed temporarily") for note in report["notes"])
    assert report["custom_domain"]["is_verified"] is True
    async with runtime.db.read() as conn:
        row = (await conn.execute(select(custom_domains).where(custom_domains.c.id == created["id"]))).one()
    assert (row.verified, row.mx_ok, row.spf_ok) == (True, True, True)

    # A permanent error, or the record gone, is a failure.
    resolver.set("TXT", "example.org", DnsError("broken answer", temporary=False))
    report = (await api.post(url, headers=auth(key))).json()
    assert report["is_verified"] is False
    assert report["checks"]["ownership"]["temporary"] is False
    publish(resolver, created["dns_records"])
    assert (await api.post(url, headers=auth(key))).json()["is_verified"] is True
    resolver.set("TXT", "example.org", ["v=spf1 mx ~all"])
    report = (await api.post(url, headers=auth(key))).json()
    assert report["is_verified"] is False
    assert (await api.get("/api/custom_domains", headers=auth(key))).json()[0]["is_verified"] is False


# Trash and deletion -------------------------------------------------------------------------


async def test_trash_lists_deleted_aliases(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    key = await premium_user(api, runtime, outbox, "ava@mail.test")
    user_id = await user_id_of(runtime, key)
    domain_id = (await add(api, key))["id"]
    assert (await api.get(f"/api/custom_domains/{domain_id}/trash", headers=auth(key))).json() == {"aliases": []}
    async with runtime.db.write() as conn:
        await conn.execute(
            deleted_aliases.insert(),
            [
                {"email_key": "old@example.org", "email": "old@example.org", "user_id": user_id, "custom_domain_id": domain_id, "deleted_ms": 1_605_464_595_000},
                {"email_key": "new@example.org", "email": "new@example.org", "user_id": user_id, "custom_domain_id": domain_id, "deleted_ms": 1_705_464_595_000},
                {"email_key": "x@elsewhere.org", "email": "x@elsewhere.org", "user_id": user_id, "custom_domain_id": None, "deleted_ms": 1},
            ],
        )
    response = await api.get(f"/api/custom_domains/{domain_id}/trash", headers=auth(key))
    assert response.status_code == 200
    assert response.json() == {
        "aliases": [
            {"alias": "new@example.org", "deletion_timestamp": 1_705_464_595},
            {"alias": "old@example.org", "deletion_timestamp": 1_605_464_595},
        ]
    }


async def test_delete_a_domain(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox, resolver: StaticResolver) -> None:
    ava = await premium_user(api, runtime, outbox, "ava@mail.test")
    bob = await premium_user(api, runtime, outbox, "bob@mail.test")
    ava_id = await user_id_of(runtime, ava)
    created = await add(api, ava)
    other = await add(api, ava, "other.org")
    publish(resolver, created["dns_records"])
    await api.post(f"/api/custom_domains/{created['id']}/check", headers=auth(ava))
    for local in ("one", "two"):
        await add_alias(runtime, ava_id, f"{local}@example.org", created["id"])
    await add_alias(runtime, ava_id, "keep@other.org", other["id"])
    listed = {d["domain_name"]: d["nb_alias"] for d in (await api.get("/api/custom_domains", headers=auth(ava))).json()}
    assert listed == {"example.org": 2, "other.org": 1}

    response = await api.delete(f"/api/custom_domains/{created['id']}", headers=auth(ava))
    assert response.status_code == 200
    assert response.json() == {"deleted": True}
    assert [d["domain_name"] for d in (await api.get("/api/custom_domains", headers=auth(ava))).json()] == ["other.org"]
    assert (await api.delete(f"/api/custom_domains/{created['id']}", headers=auth(ava))).status_code == 404
    assert (await api.get(f"/api/custom_domains/{created['id']}/trash", headers=auth(ava))).status_code == 404
    async with runtime.db.read() as conn:
        assert await address_taken(conn, "one@example.org")
        assert await address_taken(conn, "two@example.org")
        assert await address_taken(conn, "keep@other.org")
        trashed = (await conn.execute(select(deleted_aliases).order_by(deleted_aliases.c.email_key))).all()
    assert [(r.email, r.user_id, r.custom_domain_id) for r in trashed] == [
        ("one@example.org", ava_id, created["id"]),
        ("two@example.org", ava_id, created["id"]),
    ]

    # The domain is free again; the addresses stay reserved. Its owner finds them in
    # the trash when adding it back; another user does not.
    readded = await add(api, bob)
    assert readded["is_verified"] is False and readded["nb_alias"] == 0
    assert (await api.get(f"/api/custom_domains/{readded['id']}/trash", headers=auth(bob))).json() == {"aliases": []}
    await api.delete(f"/api/custom_domains/{readded['id']}", headers=auth(bob))
    back = await add(api, ava)
    trash = (await api.get(f"/api/custom_domains/{back['id']}/trash", headers=auth(ava))).json()
    assert sorted(a["alias"] for a in trash["aliases"]) == ["one@example.org", "two@example.org"]


async def test_openapi_documents_the_endpoints(api: httpx.AsyncClient) -> None:
    paths = (await api.get("/openapi.json")).json()["paths"]
    assert set(paths["/api/custom_domains"]) >= {"get", "post"}
    assert set(paths["/api/custom_domains/{custom_domain_id}"]) >= {"patch", "delete"}
    assert "get" in paths["/api/custom_domains/{custom_domain_id}/trash"]
    assert "get" in paths["/api/custom_domains/{custom_domain_id}/dns"]
    assert "post" in paths["/api/custom_domains/{custom_domain_id}/check"]


async def test_dns_checks_are_rate_limited(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each check is five lookups through the server's resolver: a user gets a
    bounded number an hour (429 with Retry-After after that)."""
    from postern.accounts.rate_limit import Policy
    from postern.aliases.domains import CHECK_ACTION

    monkeypatch.setitem(runtime.rate_limiter.policies, CHECK_ACTION, Policy(per_ip=100, per_account=3, window_s=3600))
    key = await premium_user(api, runtime, outbox, "ava@mail.test")
    created = await add(api, key)
    for _ in range(3):
        assert (await api.post(f"/api/custom_domains/{created['id']}/check", headers=auth(key))).status_code == 200
    refused = await api.post(f"/api/custom_domains/{created['id']}/check", headers=auth(key))
    assert refused.status_code == 429 and refused.json() == {"error": "Rate limit exceeded"}
    assert int(refused.headers["Retry-After"]) > 0


async def test_a_user_has_a_bounded_number_of_domains(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox, monkeypatch: pytest.MonkeyPatch) -> None:
    from postern.aliases import domains

    monkeypatch.setattr(domains, "MAX_DOMAINS_PER_USER", 2)
    key = await premium_user(api, runtime, outbox, "ava@mail.test")
    await add(api, key, "one.example")
    await add(api, key, "two.example")
    response = await api.post("/api/custom_domains", headers=auth(key), json={"domain": "three.example"})
    assert response.status_code == 403
    assert response.json() == {"error": "You can have at most 2 custom domains"}
    assert len((await api.get("/api/custom_domains", headers=auth(key))).json()) == 2
