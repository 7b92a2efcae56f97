"""A user's second factors (TOTP)."""

from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage.dialect import insert_for
from postern.storage.schema import user_2fa


async def get(conn: AsyncConnection, user_id: str) -> Row | None:
    return (await conn.execute(select(user_2fa).where(user_2fa.c.user_id == user_id))).first()


async def totp_enabled(conn: AsyncConnection, user_id: str) -> bool:
    return bool(await conn.scalar(select(user_2fa.c.totp_enabled).where(user_2fa.c.user_id == user_id)))


async def set_secret(conn: AsyncConnection, user_id: str, encrypted_secret: str, now_ms: int) -> None:
    stmt = insert_for(conn, user_2fa).values(
        user_id=user_id, totp_secret=encrypted_secret, totp_enabled=False, totp_last_step=0, updated_ms=now_ms
    )
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["user_id"],
            set_={"totp_secret": encrypted_secret, "totp_enabled": False, "totp_last_step": 0, "updated_ms": now_ms},
        )
    )


async def enable(conn: AsyncConnection, user_id: str, now_ms: int) -> None:
    await conn.execute(update(user_2fa).where(user_2fa.c.user_id == user_id).values(totp_enabled=True, updated_ms=now_ms))


async def use_step(conn: AsyncConnection, user_id: str, step: int) -> bool:
    """Mark TOTP time step ``step`` used; False when it, or a later one, was used
    already (a replayed code), decided atomically by the UPDATE's condition."""
    result = await conn.execute(
        update(user_2fa).where(user_2fa.c.user_id == user_id, user_2fa.c.totp_last_step < step).values(totp_last_step=step)
    )
    return result.rowcount == 1


async def clear(conn: AsyncConnection, user_id: str) -> bool:
    result = await conn.execute(delete(user_2fa).where(user_2fa.c.user_id == user_id))
    return bool(result.rowcount)
