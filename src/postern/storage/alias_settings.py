"""The user API's settings (columns of ``users``) and the user's data as exported by
``GET /api/export/data``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage.schema import aliases, custom_domains, users

COLUMNS = ("alias_generator", "random_alias_suffix", "sender_format", "random_alias_default_domain", "notification_emails")


async def get(conn: AsyncConnection, user_id: str) -> Row | None:
    """The users row (its settings and what usable_domains needs)."""
    return (await conn.execute(select(users).where(users.c.id == user_id))).first()


async def set_values(conn: AsyncConnection, user_id: str, values: dict[str, Any]) -> None:
    unknown = set(values) - set(COLUMNS)
    assert not unknown, unknown
    if values:
        await conn.execute(update(users).where(users.c.id == user_id).values(**values))


async def alias_states(conn: AsyncConnection, user_id: str) -> Sequence[Row]:
    """(email, enabled) of every alias of the user, oldest first."""
    stmt = select(aliases.c.email, aliases.c.enabled).where(aliases.c.user_id == user_id).order_by(aliases.c.id)
    return (await conn.execute(stmt)).all()


async def custom_domain_names(conn: AsyncConnection, user_id: str) -> list[str]:
    stmt = select(custom_domains.c.domain).where(custom_domains.c.user_id == user_id).order_by(custom_domains.c.id)
    return [r.domain for r in (await conn.execute(stmt)).all()]
