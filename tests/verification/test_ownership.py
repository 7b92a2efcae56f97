"""``postern.verification.ownership``: hosted addresses, aliases and addresses proven
by mail are the user's; nothing else is, and nobody else's is."""

from __future__ import annotations

import httpx

from postern.serve.runtime import Runtime
from postern.storage import validation_sessions as store
from postern.verification.ownership import (
    ALIAS,
    EMAIL_TOKEN,
    HOSTED,
    MAILBOX,
    address_is_proven,
    proven_addresses,
)
from tests.aliases import Person, add_mailbox


async def test_hosted_alias_and_proven_addresses_count(
    client: httpx.AsyncClient, api: httpx.AsyncClient, runtime: Runtime, ann: Person
) -> None:
    response = await client.post(
        f"/users/{ann.user_id}/addresses", json={"address": "Ann.Hosted@Example.com"}
    )
    assert response.status_code == 200, response.text
    response = await api.post("/api/alias/random/new", headers=ann.headers, json={})
    assert response.status_code == 201, response.text
    alias = response.json()["email"]
    async with runtime.db.write() as conn:
        await store.add_proven(
            conn,
            {
                "user_id": ann.user_id,
                "address": "ann@bücher.example",
                "address_key": "ann@xn--bcher-kva.example",
                "method": EMAIL_TOKEN,
                "proven_ms": 5,
            },
        )

    proven = {
        p.key: p.method for p in await proven_addresses(ann.user_id, db=runtime.db)
    }
    assert proven == {
        "ann.hosted@example.com": HOSTED,
        alias: ALIAS,
        "ann@example.org": MAILBOX,
        "ann@xn--bcher-kva.example": EMAIL_TOKEN,
    }
    assert await address_is_proven(ann.user_id, "ANN.HOSTED@example.com", db=runtime.db)
    assert await runtime.ownership.address_is_proven(ann.user_id, alias.upper())
    # Either spelling of an internationalised domain.
    assert await runtime.ownership.address_is_proven(ann.user_id, "ann@BÜCHER.example")
    assert await runtime.ownership.address_is_proven(
        ann.user_id, "<ann@xn--bcher-kva.example>"
    )
    # Her verified mailbox was proven by a mailed code; an unverified one is not hers
    # yet; nor is anyone else's address, nor garbage.
    assert await runtime.ownership.address_is_proven(ann.user_id, "ann@example.org")
    await add_mailbox(runtime, ann.user_id, "pending@example.net", verified=False)
    assert not await runtime.ownership.address_is_proven(
        ann.user_id, "pending@example.net"
    )
    assert not await runtime.ownership.address_is_proven(
        ann.user_id, "someone@example.net"
    )
    assert not await runtime.ownership.address_is_proven(ann.user_id, "not an address")
    assert not await runtime.ownership.address_is_proven(
        "0" * 24, "ann.hosted@example.com"
    )
