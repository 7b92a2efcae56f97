"""Aliases and the mailboxes they forward to."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, delete, false, func, or_, select, true, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage import address_claims
from postern.storage.dialect import insert_for, like_pattern
from postern.storage.schema import alias_activities, alias_mailboxes, aliases, contacts, deleted_aliases, mailboxes


async def insert_alias(
    conn: AsyncConnection,
    *,
    user_id: str,
    email: str,
    email_key: str,
    mailbox_ids: Sequence[int],
    created_ms: int,
    custom_domain_id: int | None = None,
    name: str | None = None,
    note: str | None = None,
    hostname: str | None = None,
    enabled: bool = True,
) -> int:
    """A new alias forwarding to ``mailbox_ids`` (the first is its ``mailbox``); the
    caller has checked that the mailboxes are the user's. The address is claimed in
    the one namespace of addresses first (``address_claims.AddressClaimed`` when
    something holds it)."""
    await address_claims.claim(conn, email_key, address_claims.ALIAS, user_id)
    stmt = aliases.insert().values(
        user_id=user_id,
        email=email,
        email_key=email_key,
        custom_domain_id=custom_domain_id,
        mailbox_id=mailbox_ids[0],
        name=name,
        note=note,
        hostname=hostname,
        enabled=enabled,
        latest_activity_ms=created_ms,
        created_ms=created_ms,
    )
    alias_id = int((await conn.execute(stmt.returning(aliases.c.id))).scalar_one())
    await conn.execute(
        alias_mailboxes.insert(), [{"alias_id": alias_id, "mailbox_id": m, "user_id": user_id} for m in dict.fromkeys(mailbox_ids)]
    )
    return alias_id


# Reading ---------------------------------------------------------------------------------

# The listing's order, which the index (user_id, pinned, latest_activity_ms, id) serves
# read backwards: a deep page skips index entries only.
LISTING_ORDER = (aliases.c.pinned.desc(), aliases.c.latest_activity_ms.desc(), aliases.c.id.desc())


async def count_of_user(conn: AsyncConnection, user_id: str) -> int:
    return int(await conn.scalar(select(func.count()).select_from(aliases).where(aliases.c.user_id == user_id)) or 0)


async def get(conn: AsyncConnection, user_id: str, alias_id: int) -> Row | None:
    stmt = select(aliases).where(aliases.c.id == alias_id, aliases.c.user_id == user_id)
    return (await conn.execute(stmt)).first()


def _page_of_ids(
    user_id: str, *, offset: int, limit: int, pinned: bool = False, enabled: bool | None = None, query: str | None = None
) -> Select[Any]:
    """The ids of one page of the user's aliases, in the listing's order: without a
    query, read from the covering index alone."""
    stmt = select(aliases.c.id).where(aliases.c.user_id == user_id)
    if pinned:
        stmt = stmt.where(aliases.c.pinned == true())
    if enabled is not None:
        stmt = stmt.where(aliases.c.enabled == (true() if enabled else false()))
    if query:
        pattern = like_pattern(query)
        stmt = stmt.where(
            or_(
                aliases.c.email.ilike(pattern, escape="\\"),
                aliases.c.note.ilike(pattern, escape="\\"),
                aliases.c.name.ilike(pattern, escape="\\"),
            )
        )
    return stmt.order_by(*LISTING_ORDER).offset(offset).limit(limit)


_latest_contact = contacts.alias("latest_contact")
_primary_mailbox = mailboxes.alias("primary_mailbox")


async def views(conn: AsyncConnection, alias_ids: Sequence[int]) -> list[Row]:
    """The aliases of ``alias_ids`` (in the listing's order) with what the user API
    shows of them: the primary mailbox's email (``mailbox_email``) and the contact of
    the latest activity (``contact_email``, ``contact_name``, ``contact_reverse_alias``)."""
    if not alias_ids:
        return []
    return await _views(conn, aliases.c.id.in_(list(alias_ids)))


async def page_views(conn: AsyncConnection, user_id: str, **page: Any) -> list[Row]:
    """One page of the user's aliases as ``views`` gives them, in one statement: the
    page's ids picked from the covering index (a deep page skips index entries
    only), then those rows joined (see _page_of_ids for the arguments)."""
    return await _views(conn, aliases.c.id.in_(_page_of_ids(user_id, **page)))


async def _views(conn: AsyncConnection, condition: Any) -> list[Row]:
    stmt = (
        select(
            aliases,
            _primary_mailbox.c.email.label("mailbox_email"),
            _latest_contact.c.email.label("contact_email"),
            _latest_contact.c.name.label("contact_name"),
            _latest_contact.c.reverse_alias.label("contact_reverse_alias"),
        )
        .select_from(
            aliases.join(_primary_mailbox, _primary_mailbox.c.id == aliases.c.mailbox_id).outerjoin(
                _latest_contact, _latest_contact.c.id == aliases.c.latest_contact_id
            )
        )
        .where(condition)
        .order_by(*LISTING_ORDER)
    )
    return list((await conn.execute(stmt)).all())


async def mailboxes_of(conn: AsyncConnection, alias_ids: Sequence[int]) -> dict[int, list[tuple[int, str]]]:
    """Each alias's mailboxes as (id, email), by mailbox id (the caller puts the
    primary one first)."""
    found: dict[int, list[tuple[int, str]]] = {a: [] for a in alias_ids}
    if not alias_ids:
        return found
    stmt = (
        select(alias_mailboxes.c.alias_id, mailboxes.c.id, mailboxes.c.email)
        .select_from(alias_mailboxes.join(mailboxes, mailboxes.c.id == alias_mailboxes.c.mailbox_id))
        .where(alias_mailboxes.c.alias_id.in_(list(alias_ids)))
        .order_by(alias_mailboxes.c.alias_id, mailboxes.c.id)
    )
    for row in (await conn.execute(stmt)).all():
        found.setdefault(row.alias_id, []).append((row.id, row.email))
    return found


async def latest_for_hostname(conn: AsyncConnection, user_id: str, hostname: str) -> Row | None:
    stmt = (
        select(aliases.c.email, aliases.c.hostname)
        .where(aliases.c.user_id == user_id, aliases.c.hostname == hostname)
        .order_by(aliases.c.created_ms.desc(), aliases.c.id.desc())
        .limit(1)
    )
    return (await conn.execute(stmt)).first()


async def stats(conn: AsyncConnection, user_id: str) -> Row:
    stmt = select(
        func.count().label("nb_alias"),
        func.coalesce(func.sum(aliases.c.nb_forward), 0).label("nb_forward"),
        func.coalesce(func.sum(aliases.c.nb_reply), 0).label("nb_reply"),
        func.coalesce(func.sum(aliases.c.nb_block), 0).label("nb_block"),
    ).where(aliases.c.user_id == user_id)
    return (await conn.execute(stmt)).one()


async def all_of_user(conn: AsyncConnection, user_id: str) -> list[Row]:
    """Every alias of the user (for the export), oldest first."""
    stmt = select(aliases).where(aliases.c.user_id == user_id).order_by(aliases.c.id)
    return list((await conn.execute(stmt)).all())


async def mailboxes_of_user(conn: AsyncConnection, user_id: str) -> dict[int, str]:
    """Every mailbox of the user (for the export): id → email."""
    stmt = select(mailboxes.c.id, mailboxes.c.email).where(mailboxes.c.user_id == user_id)
    return {r.id: r.email for r in (await conn.execute(stmt)).all()}


async def alias_mailbox_pairs(conn: AsyncConnection, user_id: str) -> list[Row]:
    stmt = select(alias_mailboxes.c.alias_id, alias_mailboxes.c.mailbox_id).where(alias_mailboxes.c.user_id == user_id)
    return list((await conn.execute(stmt)).all())


async def user_mailboxes(conn: AsyncConnection, user_id: str, mailbox_ids: Sequence[int]) -> dict[int, Row]:
    """The user's mailboxes among ``mailbox_ids`` (others' are simply absent)."""
    if not mailbox_ids:
        return {}
    stmt = select(mailboxes.c.id, mailboxes.c.email, mailboxes.c.verified).where(
        mailboxes.c.user_id == user_id, mailboxes.c.id.in_(list(mailbox_ids))
    )
    return {r.id: r for r in (await conn.execute(stmt)).all()}


async def verified_mailboxes(conn: AsyncConnection, user_id: str) -> list[Row]:
    """The user's verified mailboxes, the default one first."""
    stmt = (
        select(mailboxes.c.id, mailboxes.c.email, mailboxes.c.email_key, mailboxes.c.is_default)
        .where(mailboxes.c.user_id == user_id, mailboxes.c.verified == true())
        .order_by(mailboxes.c.is_default.desc(), mailboxes.c.id)
    )
    return list((await conn.execute(stmt)).all())


async def activities_page(conn: AsyncConnection, alias_id: int, offset: int, limit: int) -> list[Row]:
    """An alias's activities, newest first, with their contact (activities whose
    contact was deleted are left out: there is nobody to show)."""
    stmt = (
        select(
            alias_activities.c.action,
            alias_activities.c.created_ms,
            contacts.c.email.label("contact_email"),
            contacts.c.name.label("contact_name"),
            contacts.c.reverse_alias.label("contact_reverse_alias"),
        )
        .select_from(alias_activities.join(contacts, contacts.c.id == alias_activities.c.contact_id))
        .where(alias_activities.c.alias_id == alias_id)
        .order_by(alias_activities.c.created_ms.desc(), alias_activities.c.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return list((await conn.execute(stmt)).all())


# Writing ---------------------------------------------------------------------------------


async def update_alias(conn: AsyncConnection, user_id: str, alias_id: int, values: dict[str, Any]) -> bool:
    stmt = update(aliases).where(aliases.c.id == alias_id, aliases.c.user_id == user_id).values(**values)
    return (await conn.execute(stmt)).rowcount > 0


async def set_mailboxes(conn: AsyncConnection, user_id: str, alias_id: int, mailbox_ids: Sequence[int]) -> None:
    """The alias now forwards to ``mailbox_ids`` (the first is its ``mailbox``)."""
    unique = list(dict.fromkeys(mailbox_ids))
    await conn.execute(update(aliases).where(aliases.c.id == alias_id).values(mailbox_id=unique[0]))
    await conn.execute(delete(alias_mailboxes).where(alias_mailboxes.c.alias_id == alias_id))
    await conn.execute(alias_mailboxes.insert(), [{"alias_id": alias_id, "mailbox_id": m, "user_id": user_id} for m in unique])


async def delete_to_trash(conn: AsyncConnection, alias: Row, deleted_ms: int) -> None:
    """Reserve the alias's address for ever (``deleted_aliases``), then delete it;
    its contacts and activities go with it."""
    stmt = (
        insert_for(conn, deleted_aliases)
        .values(
            email_key=alias.email_key,
            email=alias.email,
            user_id=alias.user_id,
            custom_domain_id=alias.custom_domain_id,
            deleted_ms=deleted_ms,
        )
        .on_conflict_do_nothing(index_elements=["email_key"])
    )
    await conn.execute(stmt)
    await conn.execute(delete(aliases).where(aliases.c.id == alias.id))
    await address_claims.reclassify(conn, [alias.email_key], address_claims.ALIAS, address_claims.DELETED_ALIAS)
