"""Fetching a POP3 account by UIDL: a message is known by its unique id, whatever
its number today (servers renumber and reorder), newest (highest number) first.
``from_now`` takes the UIDLs present at the first connection as the mail before."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from postern.errors import DomainError
from postern.mailstore.service import AppendResult
from postern.remote.deliver import FetchedDelivery, Position
from postern.remote.imap_fetch import Cancelled
from postern.remote.pop3_client import Pop3Client
from postern.remote.wire import RemoteError
from postern.storage import remote_identities as store
from postern.storage.database import Database

BASELINE = ""  # the remote_folders row that says the first listing was taken


class Pop3Fetch:
    def __init__(self, db: Database, delivery: FetchedDelivery, client: Pop3Client, identity: Any, check: Callable[[], Awaitable[Any]]):
        self.db, self.delivery, self.client, self.identity, self.check = db, delivery, client, identity, check
        self.errors: list[str] = []

    async def run(self, only: list[str] | None = None) -> int:
        identity = self.identity
        listing = await self.client.uidl()
        async with self.db.read() as conn:
            baseline = await store.folder_state(conn, identity.id, BASELINE)
            done = await store.fetched_uidls(conn, identity.id)
        if baseline is None:
            if identity.fetch_method == "from_now":
                await self.delivery.pass_over(identity, [(Position("", 0, 0, u), None, None, None) for _, u in listing if u not in done])
                done |= {u for _, u in listing}
            async with self.db.write() as conn:
                await store.set_folder_state(conn, identity.id, identity.user_id, BASELINE, 0, 0)
        todo = sorted(((n, u) for n, u in listing if u not in done), reverse=True)
        if todo:
            async with self.db.write() as conn:
                await store.add_history_total(conn, identity.id, len(todo))
        stored = 0
        try:
            for number, uidl in todo:
                await self.check()
                data = await self.client.retrieve(number)
                position = Position("", 0, 0, uidl)
                if data is None:
                    self.errors.append(f"message {uidl} is larger than allowed; skipped")
                    await self.delivery.pass_over(identity, [(position, None, None, None)])
                    continue
                result = await self.delivery.deliver(identity, position, data, "POP3")
                if isinstance(result, DomainError):
                    raise RemoteError(f"a message could not be stored: {result}")
                if isinstance(result, AppendResult):
                    stored += 1
                done.add(uidl)
        except Cancelled as cancelled:
            if cancelled.reason == "cancel":
                rest: list[tuple[Position, str | None, str | None, str | None]] = [
                    (Position("", 0, 0, u), None, None, None) for _, u in todo if u not in done
                ]
                await self.delivery.pass_over(identity, rest)
            raise
        if not identity.keep_on_server:
            for number, uidl in listing:
                if uidl in done:
                    await self.client.delete(number)
        return stored
