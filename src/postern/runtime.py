"""Composition: the services of one postern process, built from its settings."""

from __future__ import annotations

from dataclasses import dataclass

from postern.accounts.admin_token import AdminToken
from postern.accounts.passwords import Passwords
from postern.accounts.service import Accounts
from postern.config import Settings
from postern.events import EventBus
from postern.mailstore.service import MailStore
from postern.storage.blobs import BlobStore, open_blob_store
from postern.storage.database import Database, migrate


@dataclass
class Runtime:
    settings: Settings
    db: Database
    blobs: BlobStore
    bus: EventBus
    accounts: Accounts
    mailstore: MailStore
    admin_token: AdminToken

    @classmethod
    def build(cls, settings: Settings, passwords: Passwords | None = None) -> Runtime:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.resolved_database_url, schema=settings.database_schema, fsync=settings.fsync)
        blobs = open_blob_store(settings.resolved_blob_store, fsync=settings.fsync)
        bus = EventBus()
        passwords = passwords or Passwords(settings.argon2_time_cost, settings.argon2_memory_kib)
        return cls(
            settings=settings,
            db=db,
            blobs=blobs,
            bus=bus,
            accounts=Accounts(db, settings, passwords, bus),
            mailstore=MailStore(db, blobs, bus, settings.max_message_size),
            admin_token=AdminToken(db, settings),
        )

    async def start(self) -> str | None:
        """Apply migrations and load the admin token; returns a token created now."""
        await migrate(self.db)
        return await self.admin_token.ensure()

    async def close(self) -> None:
        await self.blobs.close()
        await self.db.close()
