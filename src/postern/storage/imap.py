"""The statements behind the IMAP view of a folder (``mailstore.imap_view``): message
metadata by UID range, changes and expunges since a MODSEQ, and the tombstones of
expunged UIDs. What SELECT reads is in ``mailbox_state``, what STORE writes in
``flag_writes``."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage.messages import UidRanges, _uid_filter
from postern.storage.schema import folders, message_tombstones, messages

# What IMAP needs of a message besides its bytes.
META_COLUMNS = (
    messages.c.uid,
    messages.c.modseq,
    messages.c.size,
    messages.c.internal_ms,
    messages.c.seen,
    messages.c.flagged,
    messages.c.draft,
    messages.c.deleted,
    messages.c.answered,
    messages.c.keywords,
    messages.c.blob_key,
    messages.c.prefix,
)

_CHUNK = 500


async def message_meta(conn: AsyncConnection, folder_id: str, uids: UidRanges) -> list[Row]:
    stmt = select(*META_COLUMNS).where(messages.c.folder_id == folder_id, _uid_filter(uids)).order_by(messages.c.uid)
    return list(await conn.execute(stmt))


async def message_meta_by_uid(conn: AsyncConnection, folder_id: str, uids: Sequence[int]) -> list[Row]:
    found: list[Row] = []
    wanted = sorted(set(uids))
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        stmt = select(*META_COLUMNS).where(messages.c.folder_id == folder_id, messages.c.uid.in_(chunk)).order_by(messages.c.uid)
        found.extend(await conn.execute(stmt))
    return found


async def changed_since(conn: AsyncConnection, folder_id: str, modseq: int) -> list[Row]:
    stmt = select(*META_COLUMNS).where(messages.c.folder_id == folder_id, messages.c.modseq > modseq).order_by(messages.c.uid)
    return list(await conn.execute(stmt))


async def deleted_uids(conn: AsyncConnection, folder_id: str) -> list[int]:
    stmt = select(messages.c.uid).where(messages.c.folder_id == folder_id, messages.c.deleted.is_(True)).order_by(messages.c.uid)
    return [int(u) for u in (await conn.scalars(stmt)).all()]


async def count_deleted(conn: AsyncConnection, folder_id: str) -> int:
    stmt = select(func.count()).where(messages.c.folder_id == folder_id, messages.c.deleted.is_(True))
    return int((await conn.execute(stmt)).scalar_one())


async def set_special_use(conn: AsyncConnection, folder_id: str, special_use: str | None) -> None:
    await conn.execute(update(folders).where(folders.c.id == folder_id).values(special_use=special_use))


# Tombstones -----------------------------------------------------------------------------


async def add_tombstones(conn: AsyncConnection, user_id: str, folder_id: str, uids: Sequence[int], modseq: int) -> None:
    if not uids:
        return
    await conn.execute(
        message_tombstones.insert(),
        [{"folder_id": folder_id, "uid": int(uid), "user_id": user_id, "modseq": modseq} for uid in sorted(set(uids))],
    )


async def tombstones_since(conn: AsyncConnection, folder_id: str, modseq: int) -> list[int]:
    """UIDs expunged from the folder with a MODSEQ above ``modseq``, ascending."""
    stmt = (
        select(message_tombstones.c.uid)
        .where(message_tombstones.c.folder_id == folder_id, message_tombstones.c.modseq > modseq)
        .order_by(message_tombstones.c.uid)
    )
    return [int(u) for u in (await conn.scalars(stmt)).all()]


async def delete_tombstones(conn: AsyncConnection, folder_id: str) -> None:
    await conn.execute(delete(message_tombstones).where(message_tombstones.c.folder_id == folder_id))


__all__ = [
    "META_COLUMNS",
    "add_tombstones",
    "changed_since",
    "count_deleted",
    "deleted_uids",
    "message_meta",
    "message_meta_by_uid",
    "set_special_use",
    "tombstones_since",
]
