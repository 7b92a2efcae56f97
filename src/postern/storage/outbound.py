"""The outbound queue's rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage.schema import outbound

PENDING = ("queued", "deferred")
FINAL = ("delivered", "bounced", "cancelled")


async def insert_rows(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(outbound.insert(), list(rows))


def _due(now_ms: int) -> Any:
    return or_(
        and_(outbound.c.state.in_(PENDING), outbound.c.next_attempt_ms <= now_ms),
        # A row left "sending" by a process that died: its lease ran out.
        and_(outbound.c.state == "sending", outbound.c.lease_until_ms <= now_ms),
    )


async def claim_due(conn: AsyncConnection, now_ms: int, lease_ms: int, limit: int, owner: str | None = None) -> list[Row]:
    """Mark up to ``limit`` due rows as being sent by this process (``owner``), under a lease."""
    pick = select(outbound.c.id).where(_due(now_ms)).order_by(outbound.c.next_attempt_ms).limit(limit)
    if conn.dialect.name == "postgresql":
        # Several processes may run queue workers: each row goes to one of them.
        pick = pick.with_for_update(skip_locked=True)
    ids = list((await conn.scalars(pick)).all())
    if not ids:
        return []
    stmt = (
        update(outbound)
        .where(outbound.c.id.in_(ids))
        .values(state="sending", lease_until_ms=now_ms + lease_ms, lease_owner=owner, attempts=outbound.c.attempts + 1, updated_ms=now_ms)
        .returning(*outbound.c)
    )
    return list(await conn.execute(stmt))


async def end_leases_of(conn: AsyncConnection, owner: str, now_ms: int) -> int:
    """End at once the leases ``owner`` holds: for a worker that knows no live process
    holds them under its id (its own previous life died mid-delivery)."""
    result = await conn.execute(
        update(outbound)
        .where(outbound.c.state == "sending", outbound.c.lease_owner == owner, outbound.c.lease_until_ms > now_ms)
        .values(lease_until_ms=now_ms, updated_ms=now_ms)
    )
    return result.rowcount


async def set_states(conn: AsyncConnection, updates: Sequence[dict[str, Any]]) -> None:
    """Rows' new states, in bulk: dicts of id, state, response, now_ms and
    next_attempt_ms (None: unchanged). Ends their lease."""
    for rescheduled in (True, False):
        group = [u for u in updates if (u["next_attempt_ms"] is not None) == rescheduled]
        if not group:
            continue
        values: dict[str, Any] = {
            "state": bindparam("b_state"),
            "last_response": bindparam("b_response"),
            "updated_ms": bindparam("b_now"),
            "lease_until_ms": None,
        }
        if rescheduled:
            values["next_attempt_ms"] = bindparam("b_next")
        stmt = update(outbound).where(outbound.c.id == bindparam("b_id")).values(**values)
        params = [
            {
                "b_id": u["id"],
                "b_state": u["state"],
                "b_response": u["response"][:2000],
                "b_now": u["now_ms"],
                "b_next": u["next_attempt_ms"],
            }
            for u in group
        ]
        if not rescheduled:
            for item in params:
                del item["b_next"]
        await conn.execute(stmt, params)


async def next_due_ms(conn: AsyncConnection) -> int | None:
    pending = await conn.scalar(select(func.min(outbound.c.next_attempt_ms)).where(outbound.c.state.in_(PENDING)))
    leased = await conn.scalar(select(func.min(outbound.c.lease_until_ms)).where(outbound.c.state == "sending"))
    candidates = [v for v in (pending, leased) if v is not None]
    return min(candidates) if candidates else None


async def recipients_since(conn: AsyncConnection, user_id: str, since_ms: int, *, not_from_prefix: str | None = None) -> int:
    """The user's queued recipients since ``since_ms``, leaving out the rows whose
    envelope sender starts with ``not_from_prefix``."""
    stmt = select(func.count()).select_from(outbound).where(outbound.c.user_id == user_id, outbound.c.created_ms >= since_ms)
    if not_from_prefix:
        stmt = stmt.where(~outbound.c.mail_from.startswith(not_from_prefix, autoescape=True))
    return int(await conn.scalar(stmt) or 0)


async def purge_final(conn: AsyncConnection, before_ms: int) -> int:
    result = await conn.execute(delete(outbound).where(outbound.c.state.in_(FINAL), outbound.c.updated_ms < before_ms))
    return result.rowcount


async def queue_stats(conn: AsyncConnection) -> tuple[int, int | None]:
    """How many rows wait or are being sent, and the oldest one's creation time (ms)
    (for /metrics: the state index narrows it to the rows not yet final)."""
    row = (
        await conn.execute(select(func.count(), func.min(outbound.c.created_ms)).where(outbound.c.state.in_((*PENDING, "sending"))))
    ).one()
    return int(row[0]), row[1]


# The operator's view of the queue (`postern queue`, GET /queue) --------------------------


async def list_rows(conn: AsyncConnection, *, states: Sequence[str] | None, user_id: str | None, limit: int) -> list[Row]:
    """Rows oldest first, of the given states (all when None) and user."""
    stmt = select(outbound).order_by(outbound.c.created_ms, outbound.c.queue_id, outbound.c.id).limit(limit)
    if states:
        stmt = stmt.where(outbound.c.state.in_(list(states)))
    if user_id:
        stmt = stmt.where(outbound.c.user_id == user_id)
    return list((await conn.execute(stmt)).all())


async def rows_of(conn: AsyncConnection, queue_id: str) -> list[Row]:
    stmt = select(outbound).where(outbound.c.queue_id == queue_id).order_by(outbound.c.id)
    return list((await conn.execute(stmt)).all())


async def retry_now(conn: AsyncConnection, queue_id: str, now_ms: int) -> int:
    """Makes the message's waiting rows due now; how many."""
    stmt = (
        update(outbound)
        .where(outbound.c.queue_id == queue_id, outbound.c.state.in_(PENDING))
        .values(next_attempt_ms=now_ms, updated_ms=now_ms)
    )
    return (await conn.execute(stmt)).rowcount


async def cancel(conn: AsyncConnection, queue_id: str, response: str, now_ms: int) -> list[str]:
    """Ends the message's waiting rows as ``cancelled``; the blob keys they held (one
    reference each, for the caller to release). Rows being sent now are left to finish."""
    stmt = (
        update(outbound)
        .where(outbound.c.queue_id == queue_id, outbound.c.state.in_(PENDING))
        .values(state="cancelled", last_response=response, updated_ms=now_ms, lease_until_ms=None)
        .returning(outbound.c.blob_key)
    )
    return list((await conn.scalars(stmt)).all())


async def state_counts(conn: AsyncConnection) -> dict[str, tuple[int, int | None]]:
    """``{state: (rows, oldest created_ms)}``."""
    stmt = select(outbound.c.state, func.count(), func.min(outbound.c.created_ms)).group_by(outbound.c.state)
    return {row[0]: (row[1], row[2]) for row in await conn.execute(stmt)}
