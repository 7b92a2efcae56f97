"""A user's data as ``GET /api/export/data`` gives it: the account, its aliases,
custom domains and mailboxes, read in one consistent snapshot."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.engine import Row

from postern.errors import NotFound
from postern.storage import alias_settings as settings_store
from postern.storage import mailboxes as mailbox_store
from postern.storage.database import Database


@dataclass(frozen=True, slots=True)
class ExportedData:
    email: str
    name: str
    aliases: Sequence[Row]  # email, enabled
    custom_domains: list[str]
    mailboxes: Sequence[Row]  # as storage.mailboxes.list_for gives them


async def export_data(db: Database, user_id: str) -> ExportedData:
    async with db.read() as conn:
        user = await settings_store.get(conn, user_id)
        if user is None:
            raise NotFound("This user does not exist")
        return ExportedData(
            email=user.email or user.address or user.username,
            name=user.name or "",
            aliases=await settings_store.alias_states(conn, user_id),
            custom_domains=await settings_store.custom_domain_names(conn, user_id),
            mailboxes=await mailbox_store.list_for(conn, user_id),
        )
