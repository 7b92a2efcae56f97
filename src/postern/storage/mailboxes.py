"""Forwarding targets of aliases (the user API's "mailboxes")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, exists, func, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage import address_claims
from postern.storage.schema import (
    account_codes,
    addresses,
    alias_mailboxes,
    aliases,
    contacts,
    custom_domain_mailboxes,
    custom_domains,
    deleted_aliases,
    mailboxes,
)


async def insert(conn: AsyncConnection, values: dict[str, Any]) -> int:
    result = await conn.execute(mailboxes.insert().values(**values).returning(mailboxes.c.id))
    return int(result.scalar_one())


async def get_by_email_key(conn: AsyncConnection, user_id: str, email_key: str) -> Row | None:
    stmt = select(mailboxes).where(mailboxes.c.user_id == user_id, mailboxes.c.email_key == email_key)
    return (await conn.execute(stmt)).first()


async def has_default(conn: AsyncConnection, user_id: str) -> bool:
    stmt = select(mailboxes.c.id).where(mailboxes.c.user_id == user_id, mailboxes.c.is_default).limit(1)
    return (await conn.scalar(stmt)) is not None


async def set_verified(conn: AsyncConnection, mailbox_id: int) -> None:
    await conn.execute(update(mailboxes).where(mailboxes.c.id == mailbox_id).values(verified=True))


# The user API's mailboxes ----------------------------------------------------------------


def _nb_alias() -> Any:
    """The aliases forwarding to the mailbox of the enclosing query (as one of
    theirs, or as their first)."""
    linked = (
        exists()
        .where(alias_mailboxes.c.alias_id == aliases.c.id, alias_mailboxes.c.mailbox_id == mailboxes.c.id)
        .correlate(aliases, mailboxes)
    )
    return (
        select(func.count())
        .select_from(aliases)
        .where(or_(aliases.c.mailbox_id == mailboxes.c.id, linked))
        .correlate(mailboxes)
        .scalar_subquery()
    )


async def list_for(conn: AsyncConnection, user_id: str, *, verified_only: bool = False) -> Sequence[Row]:
    """The user's mailboxes with ``nb_alias``, oldest first."""
    stmt = select(mailboxes, _nb_alias().label("nb_alias")).where(mailboxes.c.user_id == user_id)
    if verified_only:
        stmt = stmt.where(mailboxes.c.verified)
    return (await conn.execute(stmt.order_by(mailboxes.c.id))).all()


async def get(conn: AsyncConnection, user_id: str, mailbox_id: int) -> Row | None:
    """One of the user's mailboxes with ``nb_alias`` (None for anyone else's)."""
    stmt = select(mailboxes, _nb_alias().label("nb_alias")).where(mailboxes.c.user_id == user_id, mailboxes.c.id == mailbox_id)
    return (await conn.execute(stmt)).first()


async def get_by_id(conn: AsyncConnection, mailbox_id: int) -> Row | None:
    return (await conn.execute(select(mailboxes).where(mailboxes.c.id == mailbox_id))).first()


async def default_of(conn: AsyncConnection, user_id: str) -> Row | None:
    stmt = select(mailboxes).where(mailboxes.c.user_id == user_id, mailboxes.c.is_default)
    return (await conn.execute(stmt)).first()


async def email_key_used(conn: AsyncConnection, user_id: str, email_key: str, *, besides: int | None = None) -> bool:
    """Whether one of the user's mailboxes has this address, or waits to change to it."""
    stmt = select(mailboxes.c.id).where(
        mailboxes.c.user_id == user_id, or_(mailboxes.c.email_key == email_key, mailboxes.c.pending_email_key == email_key)
    )
    if besides is not None:
        stmt = stmt.where(mailboxes.c.id != besides)
    return (await conn.scalar(stmt.limit(1))) is not None


async def set_fields(conn: AsyncConnection, mailbox_id: int, **values: Any) -> None:
    await conn.execute(update(mailboxes).where(mailboxes.c.id == mailbox_id).values(**values))


async def make_default(conn: AsyncConnection, user_id: str, mailbox_id: int) -> None:
    """``mailbox_id`` becomes the user's only default (cleared first: the database
    allows one default per user)."""
    await conn.execute(update(mailboxes).where(mailboxes.c.user_id == user_id, mailboxes.c.is_default).values(is_default=False))
    await conn.execute(update(mailboxes).where(mailboxes.c.id == mailbox_id).values(is_default=True))


async def remove(conn: AsyncConnection, user_id: str, mailbox_id: int, default_id: int) -> None:
    """Delete a mailbox; whatever forwarded to it forwards to ``default_id`` instead
    when nothing else is left (aliases and custom domains). In the caller's
    transaction."""
    moved = select(alias_mailboxes.c.alias_id).where(alias_mailboxes.c.mailbox_id == mailbox_id)
    affected = [
        r.id
        for r in (
            await conn.execute(
                select(aliases.c.id).where(aliases.c.user_id == user_id, or_(aliases.c.mailbox_id == mailbox_id, aliases.c.id.in_(moved)))
            )
        ).all()
    ]
    await conn.execute(delete(alias_mailboxes).where(alias_mailboxes.c.mailbox_id == mailbox_id))
    if affected:
        still = {
            r.alias_id
            for r in (await conn.execute(select(alias_mailboxes.c.alias_id).where(alias_mailboxes.c.alias_id.in_(affected)))).all()
        }
        orphans = [a for a in affected if a not in still]
        if orphans:
            await conn.execute(alias_mailboxes.insert(), [{"alias_id": a, "mailbox_id": default_id, "user_id": user_id} for a in orphans])
        first_left = select(func.min(alias_mailboxes.c.mailbox_id)).where(alias_mailboxes.c.alias_id == aliases.c.id).scalar_subquery()
        await conn.execute(
            update(aliases).where(aliases.c.mailbox_id == mailbox_id).values(mailbox_id=func.coalesce(first_left, default_id))
        )
    domains = [
        r.domain_id
        for r in (
            await conn.execute(select(custom_domain_mailboxes.c.domain_id).where(custom_domain_mailboxes.c.mailbox_id == mailbox_id))
        ).all()
    ]
    await conn.execute(delete(custom_domain_mailboxes).where(custom_domain_mailboxes.c.mailbox_id == mailbox_id))
    if domains:
        kept = {
            r.domain_id
            for r in (
                await conn.execute(select(custom_domain_mailboxes.c.domain_id).where(custom_domain_mailboxes.c.domain_id.in_(domains)))
            ).all()
        }
        empty = [d for d in domains if d not in kept]
        if empty:
            await conn.execute(
                custom_domain_mailboxes.insert(), [{"domain_id": d, "mailbox_id": default_id, "user_id": user_id} for d in empty]
            )
    await delete_codes(conn, user_id, mailbox_id)
    await conn.execute(delete(mailboxes).where(mailboxes.c.id == mailbox_id, mailboxes.c.user_id == user_id))


# What may not be a mailbox ---------------------------------------------------------------


async def refusal(conn: AsyncConnection, key: str, ascii_domain: str, *, alias_domains: Sequence[str]) -> str | None:
    """Why an address cannot be a mailbox, or None: an alias, a deleted alias or a
    reverse alias (mail to it would loop), or an address on a domain of aliases that
    is not a hosted address. The one namespace of addresses (``address_claims``) is
    asked first; the tables themselves after it, for rows older than it."""
    held = await address_claims.kind_of(conn, key)
    if held is not None and held != address_claims.ADDRESS:
        return {"alias": "is an alias", "deleted_alias": "is a deleted alias"}.get(held, "is a reverse alias")
    if await conn.scalar(select(exists().where(aliases.c.email_key == key))):
        return "is an alias"
    if await conn.scalar(select(exists().where(deleted_aliases.c.email_key == key))):
        return "is a deleted alias"
    if await conn.scalar(select(exists().where(contacts.c.reverse_alias_key == key))):
        return "is a reverse alias"
    if await conn.scalar(select(exists().where(addresses.c.address_key == key))):
        return None
    if ascii_domain in alias_domains or await conn.scalar(select(exists().where(custom_domains.c.domain == ascii_domain))):
        return "is on a domain of aliases"
    return None


# Verification codes (account_codes rows with purpose and target) ------------------------

VERIFY_PURPOSE = "verify_mailbox"


async def insert_code(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(account_codes.insert().values(purpose=VERIFY_PURPOSE, **values))


async def latest_code(conn: AsyncConnection, user_id: str, mailbox_id: int) -> Row | None:
    stmt = (
        select(account_codes)
        .where(account_codes.c.user_id == user_id, account_codes.c.purpose == VERIFY_PURPOSE, account_codes.c.target == str(mailbox_id))
        .order_by(account_codes.c.created_ms.desc(), account_codes.c.id.desc())
        .limit(1)
    )
    return (await conn.execute(stmt)).first()


async def delete_codes(conn: AsyncConnection, user_id: str, mailbox_id: int) -> None:
    await conn.execute(
        delete(account_codes).where(
            account_codes.c.user_id == user_id, account_codes.c.purpose == VERIFY_PURPOSE, account_codes.c.target == str(mailbox_id)
        )
    )


async def add_attempt(conn: AsyncConnection, code_id: str) -> int:
    """One more wrong guess; returns the count."""
    await conn.execute(update(account_codes).where(account_codes.c.id == code_id).values(attempts=account_codes.c.attempts + 1))
    return int(await conn.scalar(select(account_codes.c.attempts).where(account_codes.c.id == code_id)) or 0)
