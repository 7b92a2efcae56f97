"""One namespace for every address postern hosts or forwards: a row per normalised
address (``accounts.addressing``) in ``address_claims``, whose primary key is the
one place that decides who holds an address.

Every write that makes an address exist claims it in the same transaction: a hosted
address of the admin API (``address``), an alias (``alias``; it becomes
``deleted_alias`` when deleted, and stays claimed for ever), a contact's reverse alias
(``reverse_alias``). A claim that loses (the key is held) raises ``AddressClaimed``
before anything else is written, so neither API can take what the other holds, even
when two requests race.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage.dialect import insert_for
from postern.storage.ids import now_ms
from postern.storage.schema import address_claims

ADDRESS = "address"
ALIAS = "alias"
DELETED_ALIAS = "deleted_alias"
REVERSE_ALIAS = "reverse_alias"
KINDS = (ADDRESS, ALIAS, DELETED_ALIAS, REVERSE_ALIAS)


class AddressClaimed(Exception):
    """The address is held already (by ``kind``); nothing was written."""

    def __init__(self, key: str, kind: str | None):
        super().__init__(f"{key} is held already ({kind})")
        self.key = key
        self.kind = kind


async def claim(conn: AsyncConnection, key: str, kind: str, user_id: str | None) -> None:
    """Hold ``key`` for ``kind`` in the caller's transaction; AddressClaimed when it
    is held already (the transaction stays usable: nothing was written)."""
    stmt = (
        insert_for(conn, address_claims)
        .values(address_key=key, kind=kind, user_id=user_id, created_ms=now_ms())
        .on_conflict_do_nothing(index_elements=["address_key"])
    )
    result = await conn.execute(stmt)
    if not result.rowcount:
        raise AddressClaimed(key, await kind_of(conn, key))


async def kind_of(conn: AsyncConnection, key: str) -> str | None:
    """What holds ``key``: one of KINDS, or None when it is free."""
    return await conn.scalar(select(address_claims.c.kind).where(address_claims.c.address_key == key))


async def holder(conn: AsyncConnection, key: str) -> Row | None:
    return (await conn.execute(select(address_claims).where(address_claims.c.address_key == key))).first()


async def release(conn: AsyncConnection, key: str, kind: str) -> None:
    """``key`` is free again, if ``kind`` held it."""
    await conn.execute(delete(address_claims).where(address_claims.c.address_key == key, address_claims.c.kind == kind))


async def reclassify(conn: AsyncConnection, keys: Iterable[str], old: str, new: str) -> None:
    """The claims of ``keys`` held by ``old`` are now held by ``new``."""
    wanted = list(keys)
    if wanted:
        await conn.execute(
            update(address_claims).where(address_claims.c.address_key.in_(wanted), address_claims.c.kind == old).values(kind=new)
        )


async def release_user(conn: AsyncConnection, user_id: str) -> None:
    """A user goes: their hosted addresses are free again; their aliases' addresses
    stay held for ever, as deleted aliases (mail to them may come years later)."""
    await conn.execute(delete(address_claims).where(address_claims.c.user_id == user_id, address_claims.c.kind == ADDRESS))
    await conn.execute(
        update(address_claims).where(address_claims.c.user_id == user_id, address_claims.c.kind == ALIAS).values(kind=DELETED_ALIAS)
    )
