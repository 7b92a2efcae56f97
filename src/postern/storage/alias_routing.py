"""The reads and writes of alias mail flows at DATA (forward, catch-all, bounces);
the RCPT lookups themselves are in ``hot_reads``."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import exists, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage import address_claims
from postern.storage import aliases as alias_store
from postern.storage.schema import (
    addresses,
    alias_mailboxes,
    aliases,
    custom_domain_mailboxes,
    custom_domains,
    deleted_aliases,
    mailboxes,
    users,
)


async def alias_by_id(conn: AsyncConnection, alias_id: int) -> Row | None:
    return (await conn.execute(select(aliases).where(aliases.c.id == alias_id))).first()


async def alias_for_forward(conn: AsyncConnection, alias_id: int) -> Row | None:
    """The alias with its owner's ``sender_format``, in one read."""
    stmt = select(aliases, users.c.sender_format).join(users, users.c.id == aliases.c.user_id).where(aliases.c.id == alias_id)
    return (await conn.execute(stmt)).first()


async def forward_targets(conn: AsyncConnection, alias: Row) -> list[tuple[Row, str | None]]:
    """The alias's verified mailboxes, its first (``aliases.mailbox_id``) first, each
    with the user whose hosted address it is (None: it is elsewhere), in one read."""
    stmt = (
        select(mailboxes, addresses.c.user_id.label("hosted_by"))
        .join(alias_mailboxes, alias_mailboxes.c.mailbox_id == mailboxes.c.id)
        .outerjoin(addresses, addresses.c.address_key == mailboxes.c.email_key)
        .where(alias_mailboxes.c.alias_id == alias.id, mailboxes.c.verified)
        .order_by(mailboxes.c.id)
    )
    rows = sorted((await conn.execute(stmt)).all(), key=lambda r: r.id != alias.mailbox_id)
    return [(row, row.hosted_by) for row in rows]


async def alias_by_key(conn: AsyncConnection, email_key: str) -> Row | None:
    return (await conn.execute(select(aliases).where(aliases.c.email_key == email_key))).first()


async def mailbox_by_id(conn: AsyncConnection, user_id: str, mailbox_id: int) -> Row | None:
    stmt = select(mailboxes).where(mailboxes.c.id == mailbox_id, mailboxes.c.user_id == user_id)
    return (await conn.execute(stmt)).first()


async def mailboxes_of_alias(conn: AsyncConnection, alias_id: int) -> Sequence[Row]:
    """The alias's verified mailboxes, its first (``aliases.mailbox_id``) first."""
    stmt = (
        select(mailboxes)
        .join(alias_mailboxes, alias_mailboxes.c.mailbox_id == mailboxes.c.id)
        .where(alias_mailboxes.c.alias_id == alias_id, mailboxes.c.verified)
        .order_by(mailboxes.c.id)
    )
    rows = list((await conn.execute(stmt)).all())
    first = await conn.scalar(select(aliases.c.mailbox_id).where(aliases.c.id == alias_id))
    rows.sort(key=lambda r: r.id != first)
    return rows


async def set_alias_enabled(conn: AsyncConnection, alias_id: int, enabled: bool) -> None:
    await conn.execute(update(aliases).where(aliases.c.id == alias_id).values(enabled=enabled))


async def catch_all_mailbox_ids(conn: AsyncConnection, domain_id: int, user_id: str) -> list[int]:
    """The custom domain's mailboxes, else the user's default mailbox."""
    stmt = (
        select(mailboxes.c.id)
        .join(custom_domain_mailboxes, custom_domain_mailboxes.c.mailbox_id == mailboxes.c.id)
        .where(custom_domain_mailboxes.c.domain_id == domain_id, mailboxes.c.verified)
        .order_by(mailboxes.c.id)
    )
    found = list((await conn.scalars(stmt)).all())
    if found:
        return found
    default = await conn.scalar(select(mailboxes.c.id).where(mailboxes.c.user_id == user_id, mailboxes.c.is_default))
    return [default] if default is not None else []


async def custom_domain(conn: AsyncConnection, domain_id: int) -> Row | None:
    return (await conn.execute(select(custom_domains).where(custom_domains.c.id == domain_id))).first()


async def is_deleted(conn: AsyncConnection, email_key: str) -> bool:
    return bool(await conn.scalar(select(exists().where(deleted_aliases.c.email_key == email_key))))


async def create_catch_all_alias(
    conn: AsyncConnection, *, user_id: str, email: str, email_key: str, domain_id: int, mailbox_ids: Sequence[int], created_ms: int
) -> int | None:
    """The alias a catch-all custom domain makes on its first mail, or the one a
    concurrent delivery made; None when the address may not become an alias."""
    existing = await alias_by_key(conn, email_key)
    if existing is not None:
        return int(existing.id) if existing.user_id == user_id else None
    if not mailbox_ids or await is_deleted(conn, email_key):
        return None
    try:
        async with conn.begin_nested():
            return await alias_store.insert_alias(
                conn,
                user_id=user_id,
                email=email,
                email_key=email_key,
                mailbox_ids=mailbox_ids,
                created_ms=created_ms,
                custom_domain_id=domain_id,
            )
    except (IntegrityError, address_claims.AddressClaimed):
        existing = await alias_by_key(conn, email_key)
        return int(existing.id) if existing is not None and existing.user_id == user_id else None
