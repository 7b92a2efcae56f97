"""Whether an address may become a new alias: it is nobody's address, alias or
reverse alias, and it was never an alias that got deleted."""

from __future__ import annotations

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage.schema import address_claims, addresses, aliases, contacts, deleted_aliases


async def address_taken(conn: AsyncConnection, key: str) -> bool:
    """``key`` is a normalised address (see accounts.addressing)."""
    checks = [
        exists().where(address_claims.c.address_key == key),  # the one namespace
        exists().where(addresses.c.address_key == key),
        exists().where(aliases.c.email_key == key),
        exists().where(deleted_aliases.c.email_key == key),
        exists().where(contacts.c.reverse_alias_key == key),
    ]
    for check in checks:
        if await conn.scalar(select(check)):
            return True
    return False
