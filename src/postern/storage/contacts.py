"""Contacts of aliases and their reverse aliases."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage import address_claims
from postern.storage.dialect import insert_for
from postern.storage.schema import contacts


async def get(conn: AsyncConnection, user_id: str, contact_id: int) -> Row | None:
    stmt = select(contacts).where(contacts.c.id == contact_id, contacts.c.user_id == user_id)
    return (await conn.execute(stmt)).first()


async def by_alias_and_email(conn: AsyncConnection, alias_id: int, email_key: str) -> Row | None:
    stmt = select(contacts).where(contacts.c.alias_id == alias_id, contacts.c.email_key == email_key)
    return (await conn.execute(stmt)).first()


async def by_alias_and_emails(conn: AsyncConnection, alias_id: int, email_keys: Sequence[str]) -> dict[str, Row]:
    """The alias's contacts among ``email_keys``, by key, in one read."""
    if not email_keys:
        return {}
    stmt = select(contacts).where(contacts.c.alias_id == alias_id, contacts.c.email_key.in_(list(dict.fromkeys(email_keys))))
    return {row.email_key: row for row in (await conn.execute(stmt)).all()}


async def by_reverse_alias(conn: AsyncConnection, reverse_alias_key: str) -> Row | None:
    stmt = select(contacts).where(contacts.c.reverse_alias_key == reverse_alias_key)
    return (await conn.execute(stmt)).first()


async def insert_returning_id(conn: AsyncConnection, values: dict[str, Any]) -> int | None:
    """Insert unless the alias has this contact already; the new id, or None. A new
    contact's reverse alias is claimed in the one namespace of addresses
    (``address_claims.AddressClaimed`` when something holds it: the caller's
    transaction then rolls back)."""
    stmt = (
        insert_for(conn, contacts)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["alias_id", "email_key"])
        .returning(contacts.c.id)
    )
    found = (await conn.execute(stmt)).scalar_one_or_none()
    if found is not None:
        await address_claims.claim(conn, values["reverse_alias_key"], address_claims.REVERSE_ALIAS, values.get("user_id"))
    return found


async def page_of_alias(conn: AsyncConnection, alias_id: int, offset: int, limit: int) -> Sequence[Row]:
    stmt = select(contacts).where(contacts.c.alias_id == alias_id).order_by(contacts.c.id.desc()).offset(offset).limit(limit)
    return (await conn.execute(stmt)).all()


async def set_fields(conn: AsyncConnection, contact_id: int, **values: Any) -> None:
    await conn.execute(update(contacts).where(contacts.c.id == contact_id).values(**values))


async def remove(conn: AsyncConnection, user_id: str, contact_id: int) -> bool:
    stmt = delete(contacts).where(contacts.c.id == contact_id, contacts.c.user_id == user_id)
    return (await conn.execute(stmt)).rowcount > 0
