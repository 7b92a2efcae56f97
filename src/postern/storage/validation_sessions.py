"""Email validation sessions, proven addresses, and the identity service's accounts
and access tokens (the SQL of ``postern.verification``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, literal, select, union_all, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage.schema import (
    addresses,
    aliases,
    identity_accounts,
    identity_tokens,
    mailboxes,
    proven_addresses,
    validation_sessions,
)

# Sessions -----------------------------------------------------------------------------


async def get_session(conn: AsyncConnection, sid: int) -> Row | None:
    return (await conn.execute(select(validation_sessions).where(validation_sessions.c.id == sid))).first()


async def find_session(conn: AsyncConnection, address_key: str, client_secret: str) -> Row | None:
    stmt = select(validation_sessions).where(
        validation_sessions.c.address_key == address_key,
        validation_sessions.c.client_secret == client_secret,
    )
    return (await conn.execute(stmt)).first()


async def insert_session(conn: AsyncConnection, values: dict[str, Any]) -> int:
    result = await conn.execute(validation_sessions.insert().values(**values).returning(validation_sessions.c.id))
    return int(result.scalar_one())


async def update_session(conn: AsyncConnection, sid: int, values: dict[str, Any]) -> None:
    await conn.execute(update(validation_sessions).where(validation_sessions.c.id == sid).values(**values))


async def mark_validated(conn: AsyncConnection, sid: int, now: int) -> None:
    """Validated now, unless it already was (two submits at once: the first wins)."""
    await conn.execute(
        update(validation_sessions)
        .where(
            validation_sessions.c.id == sid,
            validation_sessions.c.validated_ms.is_(None),
        )
        .values(validated_ms=now, mtime_ms=now)
    )


async def delete_session(conn: AsyncConnection, sid: int) -> None:
    await conn.execute(delete(validation_sessions).where(validation_sessions.c.id == sid))


async def delete_sessions_changed_before(conn: AsyncConnection, before_ms: int) -> int:
    result = await conn.execute(delete(validation_sessions).where(validation_sessions.c.mtime_ms < before_ms))
    return int(result.rowcount or 0)


async def pending_for_user(conn: AsyncConnection, user_id: str) -> Sequence[Row]:
    stmt = (
        select(validation_sessions)
        .where(
            validation_sessions.c.user_id == user_id,
            validation_sessions.c.validated_ms.is_(None),
        )
        .order_by(validation_sessions.c.id)
    )
    return (await conn.execute(stmt)).all()


async def delete_user_sessions_for(conn: AsyncConnection, user_id: str, address_key: str) -> None:
    await conn.execute(
        delete(validation_sessions).where(
            validation_sessions.c.user_id == user_id,
            validation_sessions.c.address_key == address_key,
        )
    )


# Proven addresses -------------------------------------------------------------------------


async def add_proven(conn: AsyncConnection, values: dict[str, Any]) -> None:
    """Record a proof; one already there keeps its first date."""
    existing = await conn.scalar(
        select(proven_addresses.c.id).where(
            proven_addresses.c.user_id == values["user_id"],
            proven_addresses.c.address_key == values["address_key"],
        )
    )
    if existing is None:
        await conn.execute(proven_addresses.insert().values(**values))


async def delete_proven(conn: AsyncConnection, user_id: str, address_key: str) -> bool:
    result = await conn.execute(
        delete(proven_addresses).where(
            proven_addresses.c.user_id == user_id,
            proven_addresses.c.address_key == address_key,
        )
    )
    return bool(result.rowcount)


async def every_proof(conn: AsyncConnection, user_id: str) -> Sequence[Row]:
    """(address, address_key, method, proven_ms) of every address the user holds:
    hosted addresses, aliases, verified mailboxes (the user API's, proven by a mailed
    code) and addresses proven by a validation session."""
    hosted = select(
        addresses.c.address,
        addresses.c.address_key,
        literal("hosted").label("method"),
        addresses.c.created_ms.label("proven_ms"),
    ).where(addresses.c.user_id == user_id)
    alias = select(
        aliases.c.email.label("address"),
        aliases.c.email_key.label("address_key"),
        literal("alias").label("method"),
        aliases.c.created_ms.label("proven_ms"),
    ).where(aliases.c.user_id == user_id)
    mailbox = select(
        mailboxes.c.email.label("address"),
        mailboxes.c.email_key.label("address_key"),
        literal("mailbox").label("method"),
        mailboxes.c.created_ms.label("proven_ms"),
    ).where(mailboxes.c.user_id == user_id, mailboxes.c.verified)
    proven = select(
        proven_addresses.c.address,
        proven_addresses.c.address_key,
        proven_addresses.c.method,
        proven_addresses.c.proven_ms,
    ).where(proven_addresses.c.user_id == user_id)
    return (await conn.execute(union_all(hosted, alias, mailbox, proven))).all()


async def holds_address(conn: AsyncConnection, user_id: str, address_key: str) -> bool:
    for table, user_column, key_column, *more in (
        (addresses, addresses.c.user_id, addresses.c.address_key),
        (aliases, aliases.c.user_id, aliases.c.email_key),
        (proven_addresses, proven_addresses.c.user_id, proven_addresses.c.address_key),
        (mailboxes, mailboxes.c.user_id, mailboxes.c.email_key, mailboxes.c.verified),
    ):
        stmt = select(literal(1)).select_from(table).where(user_column == user_id, key_column == address_key, *more).limit(1)
        if await conn.scalar(stmt) is not None:
            return True
    return False


# The identity service's accounts ---------------------------------------------------------


async def ensure_account(conn: AsyncConnection, matrix_user_id: str, now: int) -> None:
    exists = await conn.scalar(select(identity_accounts.c.matrix_user_id).where(identity_accounts.c.matrix_user_id == matrix_user_id))
    if exists is None:
        await conn.execute(identity_accounts.insert().values(matrix_user_id=matrix_user_id, accepted_terms="", created_ms=now))


async def get_account(conn: AsyncConnection, matrix_user_id: str) -> Row | None:
    return (await conn.execute(select(identity_accounts).where(identity_accounts.c.matrix_user_id == matrix_user_id))).first()


async def insert_token(conn: AsyncConnection, token_digest: str, matrix_user_id: str, now: int) -> None:
    await conn.execute(identity_tokens.insert().values(token_digest=token_digest, matrix_user_id=matrix_user_id, created_ms=now))


async def account_of_token(conn: AsyncConnection, token_digest: str) -> Row | None:
    stmt = (
        select(identity_accounts).select_from(identity_tokens.join(identity_accounts)).where(identity_tokens.c.token_digest == token_digest)
    )
    return (await conn.execute(stmt)).first()


async def delete_token(conn: AsyncConnection, token_digest: str) -> None:
    await conn.execute(delete(identity_tokens).where(identity_tokens.c.token_digest == token_digest))


async def set_accepted_terms(conn: AsyncConnection, matrix_user_id: str, accepted: str) -> None:
    await conn.execute(
        update(identity_accounts).where(identity_accounts.c.matrix_user_id == matrix_user_id).values(accepted_terms=accepted)
    )
