"""Users' custom domains, their mailboxes, their aliases' counts and their trash."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, delete, func, literal, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage import address_claims
from postern.storage.dialect import insert_for
from postern.storage.schema import addresses, aliases, custom_domain_mailboxes, custom_domains, deleted_aliases, mailboxes


def _domain_suffix(domain: str) -> str:
    return "@" + domain


async def insert(conn: AsyncConnection, values: dict[str, Any]) -> int:
    result = await conn.execute(custom_domains.insert().values(**values).returning(custom_domains.c.id))
    return int(result.scalar_one())


async def get(conn: AsyncConnection, user_id: str, domain_id: int) -> Row | None:
    stmt = select(custom_domains).where(custom_domains.c.id == domain_id, custom_domains.c.user_id == user_id)
    return (await conn.execute(stmt)).first()


async def get_by_domain(conn: AsyncConnection, domain: str) -> Row | None:
    return (await conn.execute(select(custom_domains).where(custom_domains.c.domain == domain))).first()


async def list_for_user(conn: AsyncConnection, user_id: str) -> list[Row]:
    stmt = select(custom_domains).where(custom_domains.c.user_id == user_id).order_by(custom_domains.c.created_ms, custom_domains.c.id)
    return list((await conn.execute(stmt)).all())


async def alias_counts(conn: AsyncConnection, domain_ids: Sequence[int]) -> dict[int, int]:
    if not domain_ids:
        return {}
    stmt = (
        select(aliases.c.custom_domain_id, func.count())
        .where(aliases.c.custom_domain_id.in_(list(domain_ids)))
        .group_by(aliases.c.custom_domain_id)
    )
    return {int(domain_id): int(count) for domain_id, count in (await conn.execute(stmt)).all()}


async def mailboxes_of(conn: AsyncConnection, domain_ids: Sequence[int]) -> dict[int, list[tuple[int, str]]]:
    """Each domain's mailboxes as (id, email), in id order."""
    found: dict[int, list[tuple[int, str]]] = {domain_id: [] for domain_id in domain_ids}
    if not domain_ids:
        return found
    stmt = (
        select(custom_domain_mailboxes.c.domain_id, mailboxes.c.id, mailboxes.c.email)
        .join(mailboxes, mailboxes.c.id == custom_domain_mailboxes.c.mailbox_id)
        .where(custom_domain_mailboxes.c.domain_id.in_(list(domain_ids)))
        .order_by(custom_domain_mailboxes.c.domain_id, mailboxes.c.id)
    )
    for domain_id, mailbox_id, email in (await conn.execute(stmt)).all():
        found[int(domain_id)].append((int(mailbox_id), email))
    return found


async def set_mailboxes(conn: AsyncConnection, user_id: str, domain_id: int, mailbox_ids: Sequence[int]) -> None:
    await conn.execute(delete(custom_domain_mailboxes).where(custom_domain_mailboxes.c.domain_id == domain_id))
    rows = [{"domain_id": domain_id, "mailbox_id": m, "user_id": user_id} for m in dict.fromkeys(mailbox_ids)]
    if rows:
        await conn.execute(custom_domain_mailboxes.insert(), rows)


async def default_mailbox_id(conn: AsyncConnection, user_id: str) -> int | None:
    stmt = select(mailboxes.c.id).where(mailboxes.c.user_id == user_id, mailboxes.c.is_default).limit(1)
    value = await conn.scalar(stmt)
    return None if value is None else int(value)


async def verified_mailbox_ids(conn: AsyncConnection, user_id: str, mailbox_ids: Sequence[int]) -> set[int]:
    """Those of ``mailbox_ids`` that are the user's verified mailboxes."""
    stmt = select(mailboxes.c.id).where(mailboxes.c.user_id == user_id, mailboxes.c.verified, mailboxes.c.id.in_(list(mailbox_ids)))
    return {int(m) for m in (await conn.scalars(stmt)).all()}


async def update_domain(conn: AsyncConnection, domain_id: int, values: dict[str, Any]) -> None:
    if values:
        await conn.execute(update(custom_domains).where(custom_domains.c.id == domain_id).values(**values))


async def hosted_address_uses(conn: AsyncConnection, domain: str) -> bool:
    """Whether some hosted address (the addresses table) is at ``domain``."""
    stmt = select(addresses.c.id).where(addresses.c.address_key.endswith(_domain_suffix(domain), autoescape=True)).limit(1)
    return (await conn.scalar(stmt)) is not None


async def adopt_trash(conn: AsyncConnection, user_id: str, domain_id: int, domain: str) -> None:
    """A domain added again: its owner's earlier deleted aliases on it go back to its trash."""
    await conn.execute(
        update(deleted_aliases)
        .where(deleted_aliases.c.user_id == user_id, deleted_aliases.c.email_key.endswith(_domain_suffix(domain), autoescape=True))
        .values(custom_domain_id=domain_id)
    )


async def trash(conn: AsyncConnection, user_id: str, domain_id: int, domain: str) -> list[Row]:
    """The domain's deleted aliases, newest first. Also filtered by owner and domain, so
    that a reused id never shows another domain's trash."""
    stmt = (
        select(deleted_aliases.c.email, deleted_aliases.c.deleted_ms)
        .where(
            deleted_aliases.c.custom_domain_id == domain_id,
            deleted_aliases.c.user_id == user_id,
            deleted_aliases.c.email_key.endswith(_domain_suffix(domain), autoescape=True),
        )
        .order_by(deleted_aliases.c.deleted_ms.desc(), deleted_aliases.c.email_key)
    )
    return list((await conn.execute(stmt)).all())


async def delete_domain(conn: AsyncConnection, user_id: str, domain_id: int, now_ms: int) -> int:
    """In the caller's transaction: every alias of the domain goes to deleted_aliases
    (reserved for ever, in the domain's trash), then the aliases and the domain go.
    Returns how many aliases were deleted."""
    moved = select(
        aliases.c.email_key,
        aliases.c.email,
        aliases.c.user_id,
        aliases.c.custom_domain_id,
        literal(now_ms, BigInteger).label("deleted_ms"),
    ).where(aliases.c.custom_domain_id == domain_id)
    stmt = insert_for(conn, deleted_aliases).from_select(["email_key", "email", "user_id", "custom_domain_id", "deleted_ms"], moved)
    await conn.execute(stmt.on_conflict_do_nothing(index_elements=["email_key"]))
    keys = (await conn.execute(select(aliases.c.email_key).where(aliases.c.custom_domain_id == domain_id))).scalars().all()
    await address_claims.reclassify(conn, keys, address_claims.ALIAS, address_claims.DELETED_ALIAS)
    result = await conn.execute(delete(aliases).where(aliases.c.custom_domain_id == domain_id))
    await conn.execute(delete(custom_domains).where(custom_domains.c.id == domain_id, custom_domains.c.user_id == user_id))
    return int(result.rowcount or 0)
