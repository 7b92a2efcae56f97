"""Aliases and the mailboxes they forward to."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage.schema import alias_mailboxes, aliases


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
    caller has checked that the address is free and the mailboxes are the user's."""
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
