"""Users, their tags and their addresses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, exists, func, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.errors import NotFound
from postern.storage import address_claims
from postern.storage.dialect import like_pattern
from postern.storage.ids import is_id
from postern.storage.outbound import FINAL as FINAL_STATES
from postern.storage.pagination import Cursor
from postern.storage.schema import (
    addresses,
    blobs,
    custom_domains,
    folders,
    message_events,
    messages,
    outbound,
    thread_refs,
    threads,
    user_tags,
    users,
)


async def insert_user(conn: AsyncConnection, values: dict[str, Any], tags: Sequence[str]) -> None:
    await conn.execute(users.insert().values(**values))
    await set_tags(conn, values["id"], tags)


async def set_tags(conn: AsyncConnection, user_id: str, tags: Sequence[str]) -> None:
    await conn.execute(delete(user_tags).where(user_tags.c.user_id == user_id))
    if tags:
        await conn.execute(user_tags.insert(), [{"user_id": user_id, "tag": t} for t in tags])


async def require_user(conn: Any, user_id: str, *, lock: bool = False) -> Row:
    """The user row inside the caller's transaction (locked for update if asked), or
    NotFound: what every service checks first."""
    user = await get_user(conn, user_id, for_update=lock) if is_id(user_id) else None
    if user is None:
        raise NotFound("This user does not exist", code="UserNotFound")
    return user


async def get_user(conn: AsyncConnection, user_id: str, *, for_update: bool = False) -> Row | None:
    stmt = select(users).where(users.c.id == user_id)
    if for_update:
        # Row lock on PostgreSQL (SQLite's writers take turns anyway): serialises the
        # changes that must see each other, such as which address is the main one.
        stmt = stmt.with_for_update()
    return (await conn.execute(stmt)).first()


async def get_user_by_username(conn: AsyncConnection, username: str) -> Row | None:
    return (await conn.execute(select(users).where(users.c.username == username))).first()


async def get_user_by_email_key(conn: AsyncConnection, email_key: str) -> Row | None:
    """The user whose contact email (``users.email_key``, the user API's login) is this."""
    return (await conn.execute(select(users).where(users.c.email_key == email_key))).first()


async def get_user_by_address_key(conn: AsyncConnection, address_key: str) -> Row | None:
    stmt = select(users).join(addresses, addresses.c.user_id == users.c.id).where(addresses.c.address_key == address_key)
    return (await conn.execute(stmt)).first()


async def tags_of(conn: AsyncConnection, user_ids: Sequence[str]) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {uid: [] for uid in user_ids}
    if not user_ids:
        return result
    rows = await conn.execute(
        select(user_tags.c.user_id, user_tags.c.tag).where(user_tags.c.user_id.in_(user_ids)).order_by(user_tags.c.tag)
    )
    for user_id, tag in rows:
        result[user_id].append(tag)
    return result


def _user_filters(query: str | None, any_tags: Sequence[str], all_tags: Sequence[str]) -> list[Any]:
    filters: list[Any] = []
    if query:
        pattern = like_pattern(query.lower())
        filters.append(or_(users.c.username.like(pattern, escape="\\"), func.lower(users.c.address).like(pattern, escape="\\")))
    if any_tags:
        filters.append(exists().where(and_(user_tags.c.user_id == users.c.id, user_tags.c.tag.in_(any_tags))))
    for tag in all_tags:
        filters.append(exists().where(and_(user_tags.c.user_id == users.c.id, user_tags.c.tag == tag)))
    return filters


async def list_users(
    conn: AsyncConnection,
    *,
    query: str | None,
    any_tags: Sequence[str],
    all_tags: Sequence[str],
    limit: int,
    cursor: Cursor | None,
) -> tuple[list[Row], int]:
    """Users ordered by username; fetches ``limit + 1`` rows to tell whether more follow."""
    filters = _user_filters(query, any_tags, all_tags)
    total = await conn.scalar(select(func.count()).select_from(users).where(*filters))
    stmt = select(users).where(*filters)
    if cursor is not None and cursor.direction == "previous":
        stmt = stmt.where(users.c.username < cursor.key[0]).order_by(users.c.username.desc())
    else:
        if cursor is not None:
            stmt = stmt.where(users.c.username > cursor.key[0])
        stmt = stmt.order_by(users.c.username)
    rows = list(await conn.execute(stmt.limit(limit + 1)))
    return rows, int(total or 0)


async def update_user(conn: AsyncConnection, user_id: str, values: dict[str, Any]) -> None:
    if values:
        await conn.execute(update(users).where(users.c.id == user_id).values(**values))


async def replace_password_hash(conn: AsyncConnection, user_id: str, old_hash: str, new_hash: str) -> None:
    """Replace the hash only if it is still ``old_hash`` (a password changed meanwhile wins)."""
    await conn.execute(update(users).where(users.c.id == user_id, users.c.password_hash == old_hash).values(password_hash=new_hash))


async def lock_user(conn: AsyncConnection, user_id: str) -> None:
    """Lock the user's row until the transaction ends (a no-op on SQLite, whose writers
    take turns anyway). Mailstore writes take this lock first, as the append path's
    quota update does, so that concurrent writes of one user cannot deadlock on
    PostgreSQL by locking folders, messages and blobs in different orders."""
    if conn.dialect.name == "sqlite":
        return
    await conn.execute(select(users.c.id).where(users.c.id == user_id).with_for_update())


async def add_storage_used(conn: AsyncConnection, user_id: str, delta: int) -> None:
    if delta:
        await conn.execute(
            update(users)
            .where(users.c.id == user_id)
            .values(storage_used=case((users.c.storage_used + delta < 0, 0), else_=users.c.storage_used + delta))
        )


async def lock_usage(
    conn: AsyncConnection, user_ids: Sequence[str], read: dict[str, tuple[int, int]] | None = None
) -> dict[str, tuple[int, int]]:
    """Lock the users' rows (in id order, see ``lock_user``); (storage_used,
    quota_allowed) by id. ``read``: the values this transaction has read already; on
    SQLite, whose writers take turns (``BEGIN IMMEDIATE``), they are current, and no
    query is needed."""
    if read is not None and conn.dialect.name == "sqlite" and set(user_ids) <= read.keys():
        return {u: read[u] for u in user_ids}
    stmt = (
        select(users.c.id, users.c.storage_used, users.c.quota_allowed)
        .where(users.c.id.in_(sorted(set(user_ids))))
        .order_by(users.c.id)
        .with_for_update()
    )
    return {r.id: (int(r.storage_used), int(r.quota_allowed)) for r in await conn.execute(stmt)}


async def add_storage_used_many(conn: AsyncConnection, deltas: dict[str, int]) -> None:
    """``add_storage_used`` for several users in one statement."""
    params = [{"b_id": u, "b_delta": d} for u, d in sorted(deltas.items()) if d]
    if params:
        delta: Any = bindparam("b_delta")
        await conn.execute(
            update(users)
            .where(users.c.id == bindparam("b_id"))
            .values(storage_used=case((users.c.storage_used + delta < 0, 0), else_=users.c.storage_used + delta)),
            params,
        )


async def delete_user(conn: AsyncConnection, user_id: str) -> bool:
    """Delete the user and everything it owns; its blobs lose one reference per message."""
    refs = (
        select(messages.c.blob_key, func.count().label("n")).where(messages.c.user_id == user_id).group_by(messages.c.blob_key).subquery()
    )
    await conn.execute(update(blobs).where(blobs.c.key == refs.c.blob_key).values(refcount=blobs.c.refcount - refs.c.n))
    # Mail still waiting in the outbound queue holds references of its own.
    pending = (
        select(outbound.c.blob_key, func.count().label("n"))
        .where(outbound.c.user_id == user_id, outbound.c.state.not_in(FINAL_STATES))
        .group_by(outbound.c.blob_key)
        .subquery()
    )
    await conn.execute(update(blobs).where(blobs.c.key == pending.c.blob_key).values(refcount=blobs.c.refcount - pending.c.n))
    # Children first: explicit deletes keep the order obvious on both databases.
    for table in (message_events, outbound, messages, thread_refs, threads, folders, addresses, user_tags):
        await conn.execute(delete(table).where(table.c.user_id == user_id))
    await address_claims.release_user(conn, user_id)
    result = await conn.execute(delete(users).where(users.c.id == user_id))
    return result.rowcount == 1


# Addresses ---------------------------------------------------------------------------


async def insert_address(conn: AsyncConnection, values: dict[str, Any]) -> None:
    """A hosted address, claimed in the one namespace of addresses first
    (``address_claims.AddressClaimed`` when an alias or anything else holds it, or
    when its domain is a user's custom domain, whose addresses are that user's)."""
    domain = values["address_key"].rpartition("@")[2]
    if await conn.scalar(select(exists().where(custom_domains.c.domain == domain))):
        raise address_claims.AddressClaimed(values["address_key"], "custom_domain")
    await address_claims.claim(conn, values["address_key"], address_claims.ADDRESS, values["user_id"])
    await conn.execute(addresses.insert().values(**values))


async def address_key_taken(conn: AsyncConnection, address_key: str) -> bool:
    return bool(await conn.scalar(select(exists().where(addresses.c.address_key == address_key))))


async def list_user_addresses(conn: AsyncConnection, user_id: str) -> list[Row]:
    stmt = select(addresses).where(addresses.c.user_id == user_id).order_by(addresses.c.created_ms, addresses.c.id)
    return list(await conn.execute(stmt))


async def get_address(conn: AsyncConnection, user_id: str, address_id: str) -> Row | None:
    stmt = select(addresses).where(addresses.c.id == address_id, addresses.c.user_id == user_id)
    return (await conn.execute(stmt)).first()


async def set_main_address(conn: AsyncConnection, user_id: str, address_id: str, address: str) -> None:
    # Clear the old main first: the partial unique index allows one main at a time.
    await conn.execute(update(addresses).where(addresses.c.user_id == user_id, addresses.c.main).values(main=False))
    await conn.execute(update(addresses).where(addresses.c.id == address_id).values(main=True))
    await conn.execute(update(users).where(users.c.id == user_id).values(address=address))


async def delete_address(conn: AsyncConnection, address_id: str) -> None:
    key = await conn.scalar(select(addresses.c.address_key).where(addresses.c.id == address_id))
    await conn.execute(delete(addresses).where(addresses.c.id == address_id))
    if key is not None:
        await address_claims.release(conn, key, address_claims.ADDRESS)


async def search_addresses(conn: AsyncConnection, *, query: str | None, limit: int, cursor: Cursor | None) -> tuple[list[Row], int]:
    filters: list[Any] = []
    if query:
        # Both forms are stored in lowercase (the display form's domain in Unicode).
        pattern = like_pattern(query.lower())
        filters.append(addresses.c.address_key.like(pattern, escape="\\") | addresses.c.address.like(pattern, escape="\\"))
    total = await conn.scalar(select(func.count()).select_from(addresses).where(*filters))
    stmt = select(addresses).where(*filters)
    if cursor is not None and cursor.direction == "previous":
        stmt = stmt.where(addresses.c.address_key < cursor.key[0]).order_by(addresses.c.address_key.desc())
    else:
        if cursor is not None:
            stmt = stmt.where(addresses.c.address_key > cursor.key[0])
        stmt = stmt.order_by(addresses.c.address_key)
    return list(await conn.execute(stmt.limit(limit + 1))), int(total or 0)
