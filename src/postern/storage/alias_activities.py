"""What happened on an alias (forward, block, reply, bounced), and the alias's
counters and latest activity that follow it: both in the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage.ids import now_ms
from postern.storage.schema import alias_activities, aliases

ACTIONS = ("forward", "block", "reply", "bounced")
# The alias counter each action bumps.
_COUNTERS = {"forward": "nb_forward", "block": "nb_block", "reply": "nb_reply", "bounced": "nb_bounce"}


async def record(
    conn: AsyncConnection,
    *,
    user_id: str,
    alias_id: int,
    action: str,
    contact_id: int | None = None,
    mailbox_id: int | None = None,
    created_ms: int | None = None,
) -> int:
    """Record one activity and bump the alias's counter for it, its latest activity
    (time, action) and, when given, its latest contact. Returns the activity's id."""
    if action not in _COUNTERS:
        raise ValueError(f"unknown alias activity {action!r}")
    when = created_ms if created_ms is not None else now_ms()
    result = await conn.execute(
        alias_activities.insert()
        .values(user_id=user_id, alias_id=alias_id, contact_id=contact_id, mailbox_id=mailbox_id, action=action, created_ms=when)
        .returning(alias_activities.c.id)
    )
    activity_id = int(result.scalar_one())
    column = aliases.c[_COUNTERS[action]]
    values = {column.name: column + 1, "latest_activity_ms": when, "latest_activity_action": action}
    if contact_id is not None:
        values["latest_contact_id"] = contact_id
    await conn.execute(update(aliases).where(aliases.c.id == alias_id).values(**values))
    return activity_id


@dataclass(frozen=True, slots=True)
class NewActivity:
    user_id: str
    alias_id: int
    action: str
    contact_id: int | None = None
    mailbox_id: int | None = None


async def record_many(conn: AsyncConnection, entries: Sequence[NewActivity], created_ms: int | None = None) -> list[int]:
    """``record`` for many activities: their ids, in order. The alias counters and
    latest activities are updated in one bulk statement per action."""
    when = created_ms if created_ms is not None else now_ms()
    ids = []
    for entry in entries:
        if entry.action not in _COUNTERS:
            raise ValueError(f"unknown alias activity {entry.action!r}")
        stmt = alias_activities.insert().values(
            user_id=entry.user_id,
            alias_id=entry.alias_id,
            contact_id=entry.contact_id,
            mailbox_id=entry.mailbox_id,
            action=entry.action,
            created_ms=when,
        )
        ids.append(int((await conn.execute(stmt.returning(alias_activities.c.id))).scalar_one()))
    for action in dict.fromkeys(e.action for e in entries):
        column = aliases.c[_COUNTERS[action]]
        bump = (
            update(aliases)
            .where(aliases.c.id == bindparam("b_alias"))
            .values(
                {
                    column: column + 1,
                    aliases.c.latest_activity_ms: when,
                    aliases.c.latest_activity_action: action,
                    aliases.c.latest_contact_id: func.coalesce(bindparam("b_contact"), aliases.c.latest_contact_id),
                }
            )
        )
        await conn.execute(bump, [{"b_alias": e.alias_id, "b_contact": e.contact_id} for e in entries if e.action == action])
    return ids


async def get(conn: AsyncConnection, activity_id: int):  # type: ignore[no-untyped-def]
    stmt = select(alias_activities).where(alias_activities.c.id == activity_id)
    return (await conn.execute(stmt)).first()


async def count_since(conn: AsyncConnection, alias_id: int, action: str, since_ms: int) -> int:
    stmt = (
        select(func.count())
        .select_from(alias_activities)
        .where(alias_activities.c.alias_id == alias_id, alias_activities.c.action == action, alias_activities.c.created_ms >= since_ms)
    )
    return int(await conn.scalar(stmt) or 0)
