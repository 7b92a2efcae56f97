"""/api/mailboxes and /api/v2/mailboxes: listing, creation with verification by code or
link, default, address change, deletion that moves aliases, other users' ids."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from postern.accounts.addressing import normalise_address
from postern.accounts.rate_limit import Policy
from postern.serve.runtime import Runtime
from postern.storage.aliases import insert_alias
from postern.storage.ids import now_ms
from postern.storage.schema import alias_mailboxes, aliases, contacts, custom_domain_mailboxes, custom_domains, deleted_aliases, mailboxes
from tests.helpers import folder_id
from tests.http.api.helpers import Outbox, Sent, auth, signed_up

MAILBOX_FIELDS = {"id", "email", "verified", "default", "creation_timestamp", "nb_alias", "pending_email", "require_reply_authentication"}
PUBLIC_URL = "http://127.0.0.1:8080"


def link_of(mail: Sent) -> str:
    match = re.search(r"(http\S+/api/mailboxes/verify\?token=\S+)", mail.text)
    assert match, mail.text
    return match.group(1).removeprefix(PUBLIC_URL)


async def user_id_of(runtime: Runtime, email: str) -> str:
    user = await runtime.registration.by_email(email)
    assert user is not None
    return str(user.id)


async def listing(api: httpx.AsyncClient, key: str, path: str = "/api/v2/mailboxes") -> list[dict[str, Any]]:
    response = await api.get(path, headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()["mailboxes"]


async def add(api: httpx.AsyncClient, key: str, email: str) -> dict[str, Any]:
    response = await api.post("/api/mailboxes", json={"email": email}, headers=auth(key))
    assert response.status_code == 201, response.text
    return response.json()


async def add_verified(api: httpx.AsyncClient, outbox: Outbox, key: str, email: str) -> dict[str, Any]:
    mailbox = await add(api, key, email)
    code = (await outbox.last_to(email)).code
    response = await api.post(f"/api/mailboxes/{mailbox['id']}/verify", json={"code": code}, headers=auth(key))
    assert response.status_code == 200, response.text
    assert response.json()["verified"] is True
    return response.json()


def error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"], body
    return str(body["error"])


async def test_the_registration_email_is_the_default_mailbox(api: httpx.AsyncClient, outbox: Outbox) -> None:
    key = await signed_up(api, outbox, "ann@example.org")
    [mailbox] = await listing(api, key)
    assert set(mailbox) == MAILBOX_FIELDS
    assert mailbox["email"] == "ann@example.org"
    assert (mailbox["verified"], mailbox["default"], mailbox["nb_alias"], mailbox["pending_email"]) == (True, True, 0, None)
    assert isinstance(mailbox["id"], int) and isinstance(mailbox["creation_timestamp"], int)
    assert await listing(api, key, "/api/mailboxes") == [mailbox]
    assert (await api.get("/api/v2/mailboxes")).status_code == 401
    assert (await api.get("/api/mailboxes", headers=auth("wrong"))).status_code == 401


async def test_create_and_verify_by_code(api: httpx.AsyncClient, outbox: Outbox) -> None:
    key = await signed_up(api, outbox, "bea@example.org")
    mailbox = await add(api, key, "Bea.Work@Example.NET")
    assert set(mailbox) == MAILBOX_FIELDS
    assert (mailbox["email"], mailbox["verified"], mailbox["default"], mailbox["nb_alias"]) == ("bea.work@example.net", False, False, 0)
    # Listed with the unverified ones only.
    assert [m["email"] for m in await listing(api, key)] == ["bea@example.org", "bea.work@example.net"]
    assert [m["email"] for m in await listing(api, key, "/api/mailboxes")] == ["bea@example.org"]
    mail = await outbox.last_to("bea.work@example.net")
    assert "bea.work@example.net" in mail.subject
    assert link_of(mail).startswith("/api/mailboxes/verify?token=")
    response = await api.post(f"/api/mailboxes/{mailbox['id']}/verify", json={"code": f" {mail.code[:3]} {mail.code[3:]}"}, headers=auth(key))
    assert response.status_code == 200, response.text
    assert response.json() == {**mailbox, "verified": True}
    assert [m["email"] for m in await listing(api, key, "/api/mailboxes")] == ["bea@example.org", "bea.work@example.net"]
    # The code is used up; verifying again is harmless.
    again = await api.post(f"/api/mailboxes/{mailbox['id']}/verify", json={"code": mail.code}, headers=auth(key))
    assert again.status_code == 200 and again.json()["verified"] is True


async def test_verify_by_link(api: httpx.AsyncClient, outbox: Outbox) -> None:
    key = await signed_up(api, outbox, "cal@example.org")
    mailbox = await add(api, key, "cal@example.net")
    link = link_of(await outbox.last_to("cal@example.net"))
    page = await api.get(link)  # no API key: a link in a mail
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "Mailbox verified" in page.text and "cal@example.net" in page.text
    assert (await listing(api, key))[1]["verified"] is True
    assert (await api.get(link)).status_code == 200  # followed twice
    # A broken, forged or missing token.
    for bad in (link[:-3] + "abc", "/api/mailboxes/verify?token=x.y.z", "/api/mailboxes/verify"):
        response = await api.get(bad)
        assert response.status_code == 400
        assert "invalid or has expired" in response.text
    assert mailbox["id"]


async def test_wrong_codes_kill_the_code_and_a_resend_revives(api: httpx.AsyncClient, outbox: Outbox) -> None:
    key = await signed_up(api, outbox, "dan@example.org")
    mailbox = await add(api, key, "dan@example.net")
    first = await outbox.last_to("dan@example.net")
    wrong = "000000" if first.code != "000000" else "111111"
    path = f"/api/mailboxes/{mailbox['id']}/verify"
    assert error(await api.post(path, json={"code": wrong}, headers=auth(key)), 400) == "Wrong code"
    error(await api.post(path, json={"code": wrong}, headers=auth(key)), 400)
    error(await api.post(path, json={"code": wrong}, headers=auth(key)), 410)
    # Dead now, even the right one, and its link too.
    error(await api.post(path, json={"code": first.code}, headers=auth(key)), 410)
    assert (await api.get(link_of(first))).status_code == 400
    error(await api.post(path, json={}, headers=auth(key)), 400)
    # A new code; the old one and its link stay dead.
    response = await api.post(f"/api/mailboxes/{mailbox['id']}/resend", headers=auth(key))
    assert response.status_code == 200 and response.json() == {"sent": True}
    second = await outbox.last_to("dan@example.net")
    assert (await api.get(link_of(first))).status_code == 400
    if second.code != first.code:
        error(await api.post(path, json={"code": first.code}, headers=auth(key)), 400)
    response = await api.post(path, json={"code": second.code}, headers=auth(key))
    assert response.status_code == 200 and response.json()["verified"] is True
    # Nothing to resend for a verified mailbox.
    error(await api.post(f"/api/mailboxes/{mailbox['id']}/resend", headers=auth(key)), 400)


async def test_refused_addresses(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    key = await signed_up(api, outbox, "eve@example.org")
    user_id = await user_id_of(runtime, "eve@example.org")
    default_id = (await listing(api, key))[0]["id"]
    async with runtime.db.write() as conn:
        alias_id = await insert_alias(
            conn, user_id=user_id, email="shop@example.com", email_key="shop@example.com", mailbox_ids=[default_id], created_ms=now_ms()
        )
        await conn.execute(
            contacts.insert().values(
                user_id=user_id, alias_id=alias_id, email="x@shop.test", email_key="x@shop.test",
                reverse_alias="ra+abcdefghijklmnopqrstuvwxyz@example.com", reverse_alias_key="ra+abcdefghijklmnopqrstuvwxyz@example.com",
                created_ms=now_ms(),
            )
        )
        await conn.execute(deleted_aliases.insert().values(email_key="gone@example.com", email="gone@example.com", deleted_ms=now_ms()))
    await add(api, key, "eve@example.net")
    cases = {
        "not an address": "must be an email address",
        "eve@localhost": "not a valid email address",
        "EVE@example.org": "already one of your mailboxes",
        "eve@example.net": "already one of your mailboxes",
        "shop@example.com": "is an alias",
        "gone@example.com": "is a deleted alias",
        "ra+abcdefghijklmnopqrstuvwxyz@example.com": "is a reverse alias",
        "nobody@example.com": "domain of aliases",
    }
    for email, message in cases.items():
        text = error(await api.post("/api/mailboxes", json={"email": email}, headers=auth(key)), 400)
        assert message in text, (email, text)
    for body in ({}, {"email": ""}, {"email": 5}, {"email": "a\x00b@example.net"}):
        error(await api.post("/api/mailboxes", json=body, headers=auth(key)), 400)
    assert len(await listing(api, key)) == 2


async def test_a_hosted_address_may_be_a_mailbox(api: httpx.AsyncClient, client: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    key = await signed_up(api, outbox, "fay@example.org")
    created = await client.post("/users", json={"username": "fay", "password": "correct horse battery"})
    assert created.status_code == 200, created.text
    mailbox = await add(api, key, "fay@example.com")
    assert mailbox["verified"] is False  # still proven by mail, delivered here
    assert (await outbox.last_to("fay@example.com")).code


async def test_other_users_mailboxes_are_not_found(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    owner = await signed_up(api, outbox, "gil@example.org")
    other = await signed_up(api, outbox, "hal@example.org")
    theirs = await add(api, owner, "gil@example.net")
    code = (await outbox.last_to("gil@example.net")).code
    owner_default = (await listing(api, owner))[0]["id"]
    for mailbox_id in (theirs["id"], owner_default, 999999, 0, -1, 2**40):
        error(await api.post(f"/api/mailboxes/{mailbox_id}/verify", json={"code": code}, headers=auth(other)), 404)
        error(await api.post(f"/api/mailboxes/{mailbox_id}/resend", headers=auth(other)), 404)
        error(await api.put(f"/api/mailboxes/{mailbox_id}", json={"default": True}, headers=auth(other)), 404)
        error(await api.put(f"/api/mailboxes/{mailbox_id}", json={"email": "x@example.net"}, headers=auth(other)), 404)
        error(await api.delete(f"/api/mailboxes/{mailbox_id}", headers=auth(other)), 404)
    error(await api.delete("/api/mailboxes/abc", headers=auth(other)), 404)
    error(await api.put("/api/mailboxes/verify", json={}, headers=auth(other)), 405)
    assert [m["email"] for m in await listing(api, other)] == ["hal@example.org"]
    # The owner's mailbox is untouched and its code still works.
    response = await api.post(f"/api/mailboxes/{theirs['id']}/verify", json={"code": code}, headers=auth(owner))
    assert response.status_code == 200, response.text
    # The same address may be a mailbox of another user.
    await add(api, other, "gil@example.net")


async def test_delete_moves_aliases_to_the_default(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    key = await signed_up(api, outbox, "ida@example.org")
    user_id = await user_id_of(runtime, "ida@example.org")
    default = (await listing(api, key))[0]
    second = await add_verified(api, outbox, key, "ida2@example.net")
    third = await add_verified(api, outbox, key, "ida3@example.net")
    d, m2, m3 = default["id"], second["id"], third["id"]
    async with runtime.db.write() as conn:
        def new(name: str, ids: list[int]) -> Any:
            return insert_alias(conn, user_id=user_id, email=f"{name}@example.com", email_key=f"{name}@example.com", mailbox_ids=ids, created_ms=now_ms())

        only = await new("only", [m2])
        first = await new("first", [m2, m3])
        later = await new("later", [m3, m2])
        both = await new("both", [m2, d])
        untouched = await new("untouched", [m3])
        domain_id = (
            await conn.execute(
                custom_domains.insert().values(user_id=user_id, domain="ida.test", ownership_token="t", created_ms=now_ms()).returning(custom_domains.c.id)
            )
        ).scalar_one()
        await conn.execute(custom_domain_mailboxes.insert().values(domain_id=domain_id, mailbox_id=m2, user_id=user_id))
    counts = {m["id"]: m["nb_alias"] for m in await listing(api, key)}
    assert counts == {d: 1, m2: 4, m3: 3}
    error(await api.delete(f"/api/mailboxes/{d}", headers=auth(key)), 400)  # the default
    response = await api.delete(f"/api/mailboxes/{m2}", headers=auth(key))
    assert response.status_code == 200 and response.json() == {"deleted": True}
    async with runtime.db.read() as conn:
        firsts = dict((await conn.execute(select(aliases.c.id, aliases.c.mailbox_id))).all())
        links = (await conn.execute(select(alias_mailboxes.c.alias_id, alias_mailboxes.c.mailbox_id))).all()
        domain_boxes = (await conn.execute(select(custom_domain_mailboxes.c.mailbox_id))).scalars().all()
        left = (await conn.execute(select(mailboxes.c.id))).scalars().all()
    assert firsts == {only: d, first: m3, later: m3, both: d, untouched: m3}
    assert sorted(links) == sorted([(only, d), (first, m3), (later, m3), (both, d), (untouched, m3)])
    assert domain_boxes == [d]
    assert m2 not in left
    counts = {m["id"]: m["nb_alias"] for m in await listing(api, key)}
    assert counts == {d: 2, m3: 3}
    error(await api.delete(f"/api/mailboxes/{m2}", headers=auth(key)), 404)


async def test_default_rules(api: httpx.AsyncClient, outbox: Outbox) -> None:
    key = await signed_up(api, outbox, "jon@example.org")
    old = (await listing(api, key))[0]
    pending = await add(api, key, "jon-new@example.net")
    text = error(await api.put(f"/api/mailboxes/{pending['id']}", json={"default": True}, headers=auth(key)), 400)
    assert "verified" in text
    verified = await add_verified(api, outbox, key, "jon2@example.net")
    response = await api.put(f"/api/mailboxes/{verified['id']}", json={"default": True}, headers=auth(key))
    assert response.status_code == 200 and response.json() == {"updated": True}
    defaults = {m["email"]: m["default"] for m in await listing(api, key)}
    assert defaults == {"jon@example.org": False, "jon-new@example.net": False, "jon2@example.net": True}
    # default: false changes nothing; the old default may go now.
    assert (await api.put(f"/api/mailboxes/{verified['id']}", json={"default": False}, headers=auth(key))).status_code == 200
    assert {m["email"]: m["default"] for m in await listing(api, key)}["jon2@example.net"] is True
    assert (await api.delete(f"/api/mailboxes/{old['id']}", headers=auth(key))).status_code == 200
    error(await api.put(f"/api/mailboxes/{verified['id']}", json={"default": "yes"}, headers=auth(key)), 400)


async def test_email_change_verified_then_applied(api: httpx.AsyncClient, outbox: Outbox) -> None:
    key = await signed_up(api, outbox, "kim@example.org")
    mailbox = await add_verified(api, outbox, key, "kim@example.net")
    path = f"/api/mailboxes/{mailbox['id']}"
    response = await api.put(path, json={"email": "Kim.New@example.net"}, headers=auth(key))
    assert response.status_code == 200, response.text
    shown = (await listing(api, key))[1]
    assert (shown["email"], shown["pending_email"], shown["verified"]) == ("kim@example.net", "kim.new@example.net", True)
    mail = await outbox.last_to("kim.new@example.net")
    wrong = "000000" if mail.code != "000000" else "111111"
    error(await api.post(f"{path}/verify", json={"code": wrong}, headers=auth(key)), 400)
    response = await api.post(f"{path}/verify", json={"code": mail.code}, headers=auth(key))
    assert response.status_code == 200, response.text
    assert (response.json()["email"], response.json()["pending_email"], response.json()["verified"]) == ("kim.new@example.net", None, True)
    # Refused: the same address, another mailbox's address, a bad one.
    assert "already" in error(await api.put(path, json={"email": "kim.new@example.net"}, headers=auth(key)), 400)
    assert "already one of your mailboxes" in error(await api.put(path, json={"email": "kim@example.org"}, headers=auth(key)), 400)
    error(await api.put(path, json={"email": "nope"}, headers=auth(key)), 400)


async def test_email_change_by_link_and_cancel(api: httpx.AsyncClient, outbox: Outbox) -> None:
    key = await signed_up(api, outbox, "lea@example.org")
    mailbox = await add_verified(api, outbox, key, "lea@example.net")
    path = f"/api/mailboxes/{mailbox['id']}"
    assert (await api.put(path, json={"email": "lea-a@example.net"}, headers=auth(key))).status_code == 200
    first = await outbox.last_to("lea-a@example.net")
    # Cancelled: the pending address goes, and its code and link with it.
    response = await api.put(path, json={"cancel_email_change": True}, headers=auth(key))
    assert response.status_code == 200
    assert (await listing(api, key))[1]["pending_email"] is None
    assert (await api.get(link_of(first))).status_code == 400
    # A newer change replaces an older one: only the newest link works.
    assert (await api.put(path, json={"email": "lea-b@example.net"}, headers=auth(key))).status_code == 200
    older = await outbox.last_to("lea-b@example.net")
    assert (await api.put(path, json={"email": "lea-c@example.net"}, headers=auth(key))).status_code == 200
    newer = await outbox.last_to("lea-c@example.net")
    assert (await api.get(link_of(older))).status_code == 400
    page = await api.get(link_of(newer))
    assert page.status_code == 200 and "lea-c@example.net" in page.text
    assert [(m["email"], m["pending_email"]) for m in await listing(api, key)][1] == ("lea-c@example.net", None)


async def test_email_change_of_an_unverified_mailbox(api: httpx.AsyncClient, outbox: Outbox) -> None:
    key = await signed_up(api, outbox, "max@example.org")
    mailbox = await add(api, key, "max-typo@example.net")
    old = await outbox.last_to("max-typo@example.net")
    path = f"/api/mailboxes/{mailbox['id']}"
    assert (await api.put(path, json={"email": "max@example.net"}, headers=auth(key))).status_code == 200
    shown = (await listing(api, key))[1]
    assert (shown["email"], shown["pending_email"], shown["verified"]) == ("max@example.net", None, False)
    assert (await api.get(link_of(old))).status_code == 400
    code = (await outbox.last_to("max@example.net")).code
    response = await api.post(f"{path}/verify", json={"code": code}, headers=auth(key))
    assert response.status_code == 200 and response.json()["email"] == "max@example.net"


async def test_require_reply_authentication(api: httpx.AsyncClient, outbox: Outbox) -> None:
    key = await signed_up(api, outbox, "ned@example.org")
    mailbox_id = (await listing(api, key))[0]["id"]
    path = f"/api/mailboxes/{mailbox_id}"
    assert (await api.put(path, json={"require_reply_authentication": True}, headers=auth(key))).status_code == 200
    assert (await listing(api, key))[0]["require_reply_authentication"] is True
    error(await api.put(path, json={"require_reply_authentication": "sure"}, headers=auth(key)), 400)
    assert (await api.put(path, json={"require_reply_authentication": False}, headers=auth(key))).status_code == 200
    assert (await listing(api, key))[0]["require_reply_authentication"] is False
    # An invalid field changes nothing, the valid ones beside it included.
    error(await api.put(path, json={"require_reply_authentication": True, "email": "bad"}, headers=auth(key)), 400)
    assert (await listing(api, key))[0]["require_reply_authentication"] is False


@pytest.mark.parametrize("path", ["/api/mailboxes", "resend", "change"])
async def test_sending_is_rate_limited(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox, path: str) -> None:
    key = await signed_up(api, outbox, "oda@example.org")
    runtime.rate_limiter.policies["send_mailbox_code"] = Policy(per_ip=100, per_account=2, window_s=3600)
    mailbox = await add(api, key, "oda1@example.net")

    async def send(n: int) -> httpx.Response:
        if path == "resend":
            return await api.post(f"/api/mailboxes/{mailbox['id']}/resend", headers=auth(key))
        if path == "change":
            return await api.put(f"/api/mailboxes/{mailbox['id']}", json={"email": f"oda-x{n}@example.net"}, headers=auth(key))
        return await api.post("/api/mailboxes", json={"email": f"oda-y{n}@example.net"}, headers=auth(key))

    assert (await send(1)).status_code in (200, 201)
    response = await send(2)
    assert error(response, 429) == "Rate limit exceeded"
    assert int(response.headers["retry-after"]) > 0


async def test_mailbox_code_is_bound_to_its_address(runtime: Runtime, api: httpx.AsyncClient, outbox: Outbox) -> None:
    """A code mailed for one address never verifies another (the digest covers it)."""
    key = await signed_up(api, outbox, "pia@example.org")
    mailbox = await add(api, key, "pia@example.net")
    code = (await outbox.last_to("pia@example.net")).code
    async with runtime.db.write() as conn:
        key_other = normalise_address("pia-other@example.net").key
        await conn.execute(mailboxes.update().where(mailboxes.c.id == mailbox["id"]).values(email=key_other, email_key=key_other))
    error(await api.post(f"/api/mailboxes/{mailbox['id']}/verify", json={"code": code}, headers=auth(key)), 400)


async def test_a_hosted_mailbox_gets_its_code_delivered_here(api: httpx.AsyncClient, client: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    """Without the outbox: the verification mail really goes out, and an address
    hosted here gets it in its INBOX."""
    key = await signed_up(api, outbox, "gus@example.org")
    del runtime.system_mail.send  # the real sender again
    created = await client.post("/users", json={"username": "gus", "password": "correct horse battery"})
    hosted_id = created.json()["id"]
    mailbox = await add(api, key, "gus@example.com")
    inbox = await folder_id(client, hosted_id)
    listed = (await client.get(f"/users/{hosted_id}/mailboxes/{inbox}/messages")).json()["results"]
    assert [m["subject"] for m in listed] == ["Verify your mailbox gus@example.com"]
    raw = (await client.get(f"/users/{hosted_id}/mailboxes/{inbox}/messages/{listed[0]['id']}/message.eml")).text
    code = re.search(r"code is: (\d{6})", raw)
    assert code, raw
    response = await api.post(f"/api/mailboxes/{mailbox['id']}/verify", json={"code": code.group(1)}, headers=auth(key))
    assert response.status_code == 200 and response.json()["verified"] is True
