"""The rows of users' message filters (``rules``), and what delivery reads with them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage.pagination import Cursor
from postern.storage.schema import addresses, autoreplies, filters, folders, users


async def usage(conn: AsyncConnection, user_id: str) -> tuple[int, int]:
    """How many filters the user has, and the latest creation time among them."""
    row = (await conn.execute(select(func.count(), func.max(filters.c.created_ms)).where(filters.c.user_id == user_id))).one()
    return int(row[0] or 0), int(row[1] or 0)


async def insert(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(filters.insert().values(**row))


async def of_user(conn: AsyncConnection, user_id: str) -> list[Row]:
    """The user's filters in creation order (the order delivery applies them)."""
    stmt = select(filters).where(filters.c.user_id == user_id).order_by(filters.c.created_ms, filters.c.id)
    return list(await conn.execute(stmt))


async def get(conn: AsyncConnection, user_id: str, filter_id: str) -> Row | None:
    return (await conn.execute(select(filters).where(filters.c.id == filter_id, filters.c.user_id == user_id))).first()


async def update_one(conn: AsyncConnection, user_id: str, filter_id: str, values: dict[str, Any]) -> bool:
    result = await conn.execute(update(filters).where(filters.c.id == filter_id, filters.c.user_id == user_id).values(**values))
    return bool(result.rowcount)


async def delete_one(conn: AsyncConnection, user_id: str, filter_id: str) -> bool:
    result = await conn.execute(delete(filters).where(filters.c.id == filter_id, filters.c.user_id == user_id))
    return bool(result.rowcount)


async def page_all(conn: AsyncConnection, *, forward: str | None, limit: int, cursor: Cursor | None) -> tuple[list[Row], int]:
    """Every user's filters by id (``limit + 1`` rows), optionally those whose action
    names ``forward`` (a substring of the stored JSON: targets are in it)."""
    where: list[Any] = []
    if forward:
        escaped = forward.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append(filters.c.action.like(f"%{escaped}%", escape="\\"))
    total = await conn.scalar(select(func.count()).select_from(filters).where(*where))
    stmt = select(filters).where(*where)
    if cursor is not None and cursor.direction == "previous":
        stmt = stmt.where(filters.c.id < cursor.key[0]).order_by(filters.c.id.desc())
    else:
        if cursor is not None:
            stmt = stmt.where(filters.c.id > cursor.key[0])
        stmt = stmt.order_by(filters.c.id)
    return list(await conn.execute(stmt.limit(limit + 1))), int(total or 0)


async def folder_paths(conn: AsyncConnection, folder_ids: Sequence[str]) -> dict[str, str]:
    if not folder_ids:
        return {}
    rows = await conn.execute(select(folders.c.id, folders.c.path).where(folders.c.id.in_(sorted(set(folder_ids)))))
    return {r.id: r.path for r in rows}


# What delivery reads: one snapshot of a user's rules --------------------------------


async def delivery_rows(conn: AsyncConnection, user_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """For each user: its enabled filters (creation order), its folders (id -> special
    use), its addresses, its name and forward limit, and its autoreply row. Four
    queries whatever the number of users; users without filters or autoreply skip the
    folder and address queries."""
    wanted = sorted(set(user_ids))
    found: dict[str, dict[str, Any]] = {
        u: {
            "filters": [],
            "folders": {},
            "addresses": [],
            "name": "",
            "forwards": 0,
            "autoreply": None,
        }
        for u in wanted
    }
    if not wanted:
        return found
    stmt = (
        select(filters.c.user_id, filters.c.id, filters.c.query, filters.c.action)
        .where(filters.c.user_id.in_(wanted), filters.c.disabled.is_(False))
        .order_by(filters.c.user_id, filters.c.created_ms, filters.c.id)
    )
    for row in await conn.execute(stmt):
        found[row.user_id]["filters"].append(row)
    stmt = select(autoreplies).where(autoreplies.c.user_id.in_(wanted), autoreplies.c.status.is_(True))
    for row in await conn.execute(stmt):
        found[row.user_id]["autoreply"] = row
    busy = [u for u in wanted if found[u]["filters"] or found[u]["autoreply"] is not None]
    if not busy:
        return found
    for folder in await conn.execute(select(folders.c.id, folders.c.user_id, folders.c.special_use).where(folders.c.user_id.in_(busy))):
        found[folder.user_id]["folders"][folder.id] = folder.special_use
    stmt = select(users.c.id, users.c.name, users.c.forwards_limit, addresses.c.address_key).select_from(
        users.outerjoin(addresses, addresses.c.user_id == users.c.id)
    )
    for row in await conn.execute(stmt.where(users.c.id.in_(busy))):
        entry = found[row.id]
        entry["name"] = row.name or ""
        entry["forwards"] = int(row.forwards_limit)
        if row.address_key:
            entry["addresses"].append(row.address_key)
    return found
