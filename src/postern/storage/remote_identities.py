"""Remote identities' rows: the accounts, their leases, their folders' UIDVALIDITY, and
the remote position of each message fetched (written with the local copy)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage.schema import remote_folders, remote_identities, remote_messages


async def insert(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(remote_identities.insert().values(**values))


async def get(conn: AsyncConnection, identity_id: str, user_id: str | None = None) -> Row | None:
    stmt = select(remote_identities).where(remote_identities.c.id == identity_id)
    if user_id is not None:
        stmt = stmt.where(remote_identities.c.user_id == user_id)
    return (await conn.execute(stmt)).first()


async def list_for_user(conn: AsyncConnection, user_id: str) -> list[Row]:
    stmt = (
        select(remote_identities)
        .where(remote_identities.c.user_id == user_id)
        .order_by(remote_identities.c.created_ms, remote_identities.c.id)
    )
    return list(await conn.execute(stmt))


async def count_for_user(conn: AsyncConnection, user_id: str) -> int:
    return int(
        (await conn.execute(select(func.count()).select_from(remote_identities).where(remote_identities.c.user_id == user_id))).scalar_one()
    )


async def update_row(
    conn: AsyncConnection,
    identity_id: str,
    values: dict[str, Any],
    *,
    owner: str | None = None,
) -> bool:
    """With ``owner``: only while that fetcher holds the lease."""
    stmt = update(remote_identities).where(remote_identities.c.id == identity_id)
    if owner is not None:
        stmt = stmt.where(remote_identities.c.lease_owner == owner)
    return (await conn.execute(stmt.values(**values))).rowcount > 0


async def delete_row(conn: AsyncConnection, user_id: str, identity_id: str) -> bool:
    await conn.execute(
        delete(remote_messages).where(
            remote_messages.c.identity_id == identity_id,
            remote_messages.c.user_id == user_id,
        )
    )
    await conn.execute(
        delete(remote_folders).where(
            remote_folders.c.identity_id == identity_id,
            remote_folders.c.user_id == user_id,
        )
    )
    result = await conn.execute(
        delete(remote_identities).where(
            remote_identities.c.id == identity_id,
            remote_identities.c.user_id == user_id,
        )
    )
    return result.rowcount > 0


# Leases ------------------------------------------------------------------------------------


def _free(now_ms: int) -> Any:
    return or_(
        remote_identities.c.lease_until_ms.is_(None),
        remote_identities.c.lease_until_ms <= now_ms,
    )


async def due(conn: AsyncConnection, now_ms: int, limit: int, exclude: Sequence[str] = ()) -> list[str]:
    stmt = (
        select(remote_identities.c.id)
        .where(
            remote_identities.c.connection_required.is_(True),
            remote_identities.c.stopped.is_(False),
            remote_identities.c.next_fetch_ms <= now_ms,
            _free(now_ms),
        )
        .order_by(remote_identities.c.next_fetch_ms)
        .limit(limit + len(exclude))
    )
    return [i for i in (await conn.scalars(stmt)).all() if i not in exclude][:limit]


async def claim(conn: AsyncConnection, identity_id: str, owner: str, now_ms: int, lease_ms: int) -> Row | None:
    """Take the identity's lease if it is free and the identity still due; the row."""
    stmt = (
        update(remote_identities)
        .where(
            remote_identities.c.id == identity_id,
            remote_identities.c.connection_required.is_(True),
            remote_identities.c.stopped.is_(False),
            _free(now_ms),
        )
        .values(lease_owner=owner, lease_until_ms=now_ms + lease_ms)
    )
    if (await conn.execute(stmt)).rowcount == 0:
        return None
    return await get(conn, identity_id)


async def renew(conn: AsyncConnection, identity_id: str, owner: str, until_ms: int) -> Row | None:
    """Extend the lease this owner holds; the row (None: the lease is lost, or the
    identity deleted)."""
    stmt = update(remote_identities).where(remote_identities.c.id == identity_id, remote_identities.c.lease_owner == owner)
    if (await conn.execute(stmt.values(lease_until_ms=until_ms))).rowcount == 0:
        return None
    return await get(conn, identity_id)


async def release(conn: AsyncConnection, identity_id: str, owner: str, values: dict[str, Any]) -> None:
    stmt = update(remote_identities).where(remote_identities.c.id == identity_id, remote_identities.c.lease_owner == owner)
    await conn.execute(stmt.values(lease_owner=None, lease_until_ms=None, is_fetching=False, **values))


async def end_leases_of(conn: AsyncConnection, owner: str) -> None:
    stmt = update(remote_identities).where(remote_identities.c.lease_owner == owner)
    await conn.execute(stmt.values(lease_owner=None, lease_until_ms=None, is_fetching=False))


# Folders and positions ----------------------------------------------------------------------


async def folder_state(conn: AsyncConnection, identity_id: str, path: str) -> Row | None:
    stmt = select(remote_folders).where(remote_folders.c.identity_id == identity_id, remote_folders.c.path == path)
    return (await conn.execute(stmt)).first()


async def set_folder_state(
    conn: AsyncConnection,
    identity_id: str,
    user_id: str,
    path: str,
    uidvalidity: int,
    first_uid: int,
) -> None:
    where = and_(remote_folders.c.identity_id == identity_id, remote_folders.c.path == path)
    result = await conn.execute(update(remote_folders).where(where).values(uidvalidity=uidvalidity, first_uid=first_uid))
    if result.rowcount == 0:
        await conn.execute(
            remote_folders.insert().values(
                identity_id=identity_id,
                user_id=user_id,
                path=path,
                uidvalidity=uidvalidity,
                first_uid=first_uid,
            )
        )


async def fetched_uids(conn: AsyncConnection, identity_id: str, folder: str, uidvalidity: int) -> set[int]:
    stmt = select(remote_messages.c.uid).where(
        remote_messages.c.identity_id == identity_id,
        remote_messages.c.folder == folder,
        remote_messages.c.uidvalidity == uidvalidity,
    )
    return set((await conn.scalars(stmt)).all())


async def fetched_uidls(conn: AsyncConnection, identity_id: str) -> set[str]:
    stmt = select(remote_messages.c.uidl).where(remote_messages.c.identity_id == identity_id, remote_messages.c.folder == "")
    return set((await conn.scalars(stmt)).all())


async def record(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(remote_messages.insert(), list(rows))


async def old_positions(conn: AsyncConnection, identity_id: str, folder: str, uidvalidity: int) -> list[Row]:
    """Messages recorded in ``folder`` under another UIDVALIDITY than ``uidvalidity``."""
    stmt = select(remote_messages).where(
        remote_messages.c.identity_id == identity_id,
        remote_messages.c.folder == folder,
        remote_messages.c.uidvalidity != uidvalidity,
    )
    return list(await conn.execute(stmt))


async def move_position(conn: AsyncConnection, row_id: int, uidvalidity: int, uid: int) -> None:
    await conn.execute(update(remote_messages).where(remote_messages.c.id == row_id).values(uidvalidity=uidvalidity, uid=uid))


async def forget_positions(conn: AsyncConnection, identity_id: str, folder: str, uidvalidity: int) -> None:
    """Drop the positions left under an old UIDVALIDITY that matched nothing any more."""
    await conn.execute(
        delete(remote_messages).where(
            remote_messages.c.identity_id == identity_id,
            remote_messages.c.folder == folder,
            remote_messages.c.uidvalidity != uidvalidity,
        )
    )


async def add_counts(conn: AsyncConnection, identity_id: str, fetched: int) -> None:
    values = {
        "fetched_count": remote_identities.c.fetched_count + fetched,
        "history_fetched": remote_identities.c.history_fetched + fetched,
    }
    await conn.execute(update(remote_identities).where(remote_identities.c.id == identity_id).values(**values))


async def add_history_total(conn: AsyncConnection, identity_id: str, count: int) -> None:
    stmt = update(remote_identities).where(remote_identities.c.id == identity_id)
    await conn.execute(stmt.values(history_total=remote_identities.c.history_total + count))


async def for_user_admin(conn: AsyncConnection, user_id: str) -> list[Row]:
    return await list_for_user(conn, user_id)


async def add_progress(conn: AsyncConnection, identity_id: str, count: int) -> None:
    """Messages of the current fetch dealt with without being stored."""
    stmt = update(remote_identities).where(remote_identities.c.id == identity_id)
    await conn.execute(stmt.values(history_fetched=remote_identities.c.history_fetched + count))
