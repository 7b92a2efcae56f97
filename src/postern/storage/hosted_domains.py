"""The hosted domains: those the operator added, and those in use by addresses,
aliases and custom domains."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage.dialect import insert_for
from postern.storage.schema import addresses, custom_domains, hosted_domains


async def add(conn: AsyncConnection, domain: str, now_ms: int) -> bool:
    """Adds ``domain`` (ASCII form); False when it was there already."""
    stmt = insert_for(conn, hosted_domains).values(domain=domain, created_ms=now_ms).on_conflict_do_nothing()
    return bool((await conn.execute(stmt)).rowcount)


async def remove(conn: AsyncConnection, domain: str) -> bool:
    return bool((await conn.execute(delete(hosted_domains).where(hosted_domains.c.domain == domain))).rowcount)


async def added(conn: AsyncConnection) -> dict[str, int]:
    """The domains the operator added: ``{domain: created_ms}``."""
    rows = await conn.execute(select(hosted_domains.c.domain, hosted_domains.c.created_ms))
    return {row.domain: row.created_ms for row in rows}


async def address_counts(conn: AsyncConnection) -> dict[str, int]:
    """How many users' addresses each domain has (by the normalised key's domain, which
    is the ASCII form)."""
    domain = func.substr(addresses.c.address_key, func.instr(addresses.c.address_key, "@") + 1)
    if conn.dialect.name == "postgresql":
        domain = func.split_part(addresses.c.address_key, "@", 2)
    rows = await conn.execute(select(domain.label("domain"), func.count()).group_by(domain))
    return {row[0]: row[1] for row in rows}


async def custom_domain_names(conn: AsyncConnection) -> list[str]:
    return list((await conn.scalars(select(custom_domains.c.domain))).all())
