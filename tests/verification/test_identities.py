"""/api/v1/identities over HTTP: the user's proven addresses, and the proof of an
external address by the link mailed to it (through the queue, to the SMTP sink)."""

from __future__ import annotations

import httpx

from postern.serve.runtime import Runtime
from tests.aliases import Person
from tests.http.identity_service.conftest import mail_number
from tests.sink import SmtpSink


async def test_prove_an_external_address(
    api: httpx.AsyncClient,
    identity: httpx.AsyncClient,
    runtime: Runtime,
    ann: Person,
    internet: SmtpSink,
) -> None:
    response = await api.get("/api/v1/identities", headers=ann.headers)
    assert response.status_code == 200, response.text
    assert [(i["email"], i["method"]) for i in response.json()["identities"]] == [
        ("ann@example.org", "mailbox")
    ]

    response = await api.post(
        "/api/v1/identities", headers=ann.headers, json={"email": "Ann@Example.NET"}
    )
    assert response.status_code == 202, response.text
    assert (
        response.json()["email"] == "ann@example.net"
        and response.json()["pending"] is True
    )
    sid = response.json()["sid"]
    mail = await mail_number(internet, 1)
    assert not await runtime.ownership.address_is_proven(ann.user_id, "ann@example.net")
    listing = (await api.get("/api/v1/identities", headers=ann.headers)).json()
    assert listing["pending"] == [
        {
            "email": "ann@example.net",
            "sid": sid,
            "requested_timestamp": listing["pending"][0]["requested_timestamp"],
        }
    ]

    # Asking again mails the same link again (one pending proof per address).
    again = await api.post(
        "/api/v1/identities", headers=ann.headers, json={"email": "ann@example.net"}
    )
    assert again.status_code == 202 and again.json()["sid"] == sid
    assert (await mail_number(internet, 2)).token == mail.token

    # The link proves it.
    page = await identity.get(
        mail.link.split("://", 1)[1].split("/", 1)[1].join(["/", ""])
    )
    assert page.status_code == 200 and "verified" in page.text
    assert await runtime.ownership.address_is_proven(ann.user_id, "ANN@example.net")
    listing = (await api.get("/api/v1/identities", headers=ann.headers)).json()
    methods = {i["email"]: i["method"] for i in listing["identities"]}
    assert methods == {"ann@example.org": "mailbox", "ann@example.net": "email_token"}
    assert listing["pending"] == []
    proven = next(i for i in listing["identities"] if i["email"] == "ann@example.net")
    assert proven["proven_timestamp"] > 0 and proven["proven_at"] and proven["how"]

    response = await api.post(
        "/api/v1/identities", headers=ann.headers, json={"email": "ann@example.net"}
    )
    assert response.status_code == 409

    # Dropping the proof; a mailbox is removed where it is managed.
    response = await api.delete(
        "/api/v1/identities", headers=ann.headers, params={"email": "ann@example.org"}
    )
    assert response.status_code == 403
    response = await api.delete(
        "/api/v1/identities", headers=ann.headers, params={"email": "ann@example.net"}
    )
    assert response.status_code == 200 and response.json() == {"deleted": True}
    assert not await runtime.ownership.address_is_proven(ann.user_id, "ann@example.net")
    response = await api.delete(
        "/api/v1/identities", headers=ann.headers, params={"email": "ann@example.net"}
    )
    assert response.status_code == 404


async def test_identities_need_a_key_and_an_address(
    api: httpx.AsyncClient, ann: Person
) -> None:
    assert (await api.get("/api/v1/identities")).status_code == 401
    assert (
        await api.post("/api/v1/identities", json={"email": "x@example.net"})
    ).status_code == 401
    response = await api.post(
        "/api/v1/identities", headers=ann.headers, json={"email": "not an address"}
    )
    assert response.status_code == 400 and "error" in response.json()
    response = await api.delete(
        "/api/v1/identities", headers=ann.headers, params={"email": "nope"}
    )
    assert response.status_code == 400
