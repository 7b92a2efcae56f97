"""The operator's view of the outbound queue over the admin API (/queue): list, show,
retry now and cancel, and that a cancelled message gives its blob back."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from postern.delivery.dns import DnsError, StaticResolver
from postern.serve.runtime import Runtime
from postern.storage.ids import now_ms
from postern.storage.schema import blobs
from tests.delivery.test_outbound_queue import all_in, send, wait_rows, worker
from tests.helpers import create_user


async def _deferred(client: httpx.AsyncClient, runtime: Runtime, resolver: StaticResolver) -> tuple[str, str]:
    """A message for two recipients whose domain's DNS fails for now: deferred."""
    user_id = await create_user(client, "alice", address="alice@example.com")
    resolver.set("MX", "unreachable.example", DnsError("SERVFAIL", temporary=True))
    await send(runtime, user_id, ["bob@unreachable.example", "carol@unreachable.example"])
    async with worker(runtime):
        found = await wait_rows(runtime, all_in("deferred"))
    return user_id, found[0].queue_id


async def test_list_show_retry_and_cancel(client: httpx.AsyncClient, runtime: Runtime, resolver: StaticResolver) -> None:
    user_id, queue_id = await _deferred(client, runtime, resolver)

    listing = (await client.get("/queue")).json()
    assert listing["total"] == 1
    entry = listing["results"][0]
    assert entry["queueId"] == queue_id and entry["user"] == user_id and entry["sender"] == "alice@example.com"
    assert entry["state"] == "deferred"
    assert sorted(r["to"] for r in entry["recipients"]) == ["bob@unreachable.example", "carol@unreachable.example"]
    assert all(r["attempts"] == 1 and r["nextAttempt"] and "SERVFAIL" in r["lastResponse"] for r in entry["recipients"])
    assert (await client.get("/queue", params={"user": user_id})).json()["total"] == 1
    assert (await client.get("/queue", params={"state": "delivered"})).json()["total"] == 0

    shown = (await client.get(f"/queue/{queue_id}")).json()
    assert shown["queueId"] == queue_id and len(shown["recipients"]) == 2

    waiting = await runtime.queue_admin.show(queue_id)
    assert all(r.next_attempt_ms > now_ms() for r in waiting.recipients)  # the backoff
    retried = (await client.post(f"/queue/{queue_id}/retry")).json()
    assert retried["recipients"] == 2
    assert all(r.next_attempt_ms <= now_ms() for r in (await runtime.queue_admin.show(queue_id)).recipients)

    async with runtime.db.read() as conn:
        before = dict((await conn.execute(select(blobs.c.key, blobs.c.refcount))).all())
    cancelled = (await client.delete(f"/queue/{queue_id}")).json()
    assert cancelled["recipients"] == 2
    assert (await client.get("/queue")).json()["total"] == 0
    gone = (await client.get("/queue", params={"state": "cancelled"})).json()["results"][0]
    assert gone["state"] == "cancelled" and all(r["lastResponse"] == "cancelled by the operator" for r in gone["recipients"])
    async with runtime.db.read() as conn:
        after = dict((await conn.execute(select(blobs.c.key, blobs.c.refcount))).all())
    key = (await runtime.queue_admin.show(queue_id)).blob_key
    assert after[key] == before[key] - 2
    # Cancelling again changes nothing.
    assert (await client.delete(f"/queue/{queue_id}")).json()["recipients"] == 0


async def test_unknown_and_malformed_queue_ids(client: httpx.AsyncClient) -> None:
    assert (await client.get("/queue/0123456789abcdef01234567")).status_code == 404
    assert (await client.post("/queue/0123456789abcdef01234567/retry")).status_code == 404
    assert (await client.delete("/queue/0123456789abcdef01234567")).status_code == 404
    assert (await client.get("/queue/not-an-id")).status_code == 400
    assert (await client.get("/queue", params={"state": "lost"})).status_code == 400
    assert (await client.get("/queue", params={"user": "nope"})).status_code == 400


async def test_queue_needs_the_admin_token(anonymous: httpx.AsyncClient) -> None:
    assert (await anonymous.get("/queue")).status_code in (401, 403)
    assert (await anonymous.delete("/queue/0123456789abcdef01234567")).status_code in (401, 403)
