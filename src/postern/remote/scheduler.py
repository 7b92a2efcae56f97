"""The remote fetch scheduler: which identity is fetched when, by whom.

- One fetch per identity at a time across every process and node: a lease in the
  database (``lease_owner``, ``lease_until_ms``), renewed while the fetch runs; a
  process killed mid-fetch leaves a lease that runs out (or that its next life on the
  same data directory takes back at once, see ``delivery.queue_owner``).
- A bounded number of fetches at once per process (``remote_concurrency``); an IMAP
  session waiting in IDLE on INBOX holds no fetch slot.
- Failing accounts back off exponentially; one failing for ``remote_stop_after``
  (3 days) stops, and its user is notified.
- The state the API shows (``is_fetching``, ``connected``, ``last_connection``,
  ``last_error``) is written as things happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from postern.aliases.notifications import Notifications, quote
from postern.config import Settings
from postern.remote.deliver import FetchedDelivery
from postern.remote.imap_client import ImapClient
from postern.remote.imap_fetch import Cancelled, ImapFetch
from postern.remote.pop3_fetch import Pop3Fetch
from postern.remote.service import RemoteIdentities
from postern.remote.wire import AuthenticationFailed, RemoteError
from postern.storage import remote_identities as store
from postern.storage.database import Database
from postern.storage.ids import new_id, now_ms

log = logging.getLogger("postern.remote")

LEASE_MS = 120_000
MAX_BACKOFF_S = 3600
IDLE_CHUNK_S = 240.0


class Restart(Exception):
    """The identity changed while its session waited: end it; it starts again at once."""


class RemoteScheduler:
    def __init__(
        self, db: Database, settings: Settings, service: RemoteIdentities, delivery: FetchedDelivery, notifications: Notifications
    ):
        self.db, self.settings, self.service, self.delivery, self.notifications = db, settings, service, delivery, notifications
        self.owner = new_id()
        self.slots = asyncio.Semaphore(settings.remote_concurrency)
        self.sessions: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._changed: dict[str, asyncio.Event] = {}
        self.backoff_base_s = 30.0
        self.idle_chunk_s = IDLE_CHUNK_S
        service.on_change = self.wake

    def wake(self, identity_id: str | None = None) -> None:
        """An identity changed (created, paused, edited, deleted through this process):
        start what is due, and let its session, if waiting in IDLE, look at its row."""
        self._wake.set()
        event = self._changed.get(identity_id or "")
        if event is not None:
            event.set()

    async def run(self, owner: str | None = None, exclusive: bool = False) -> None:
        if owner is not None:
            self.owner = owner
            if exclusive:
                # No live process holds leases under this id: its previous life died.
                async with self.db.write() as conn:
                    await store.end_leases_of(conn, owner)
        try:
            while True:
                await self.tick()
                self._wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 1.0)
        finally:
            await self.close()

    async def tick(self) -> None:
        """Start a session for every due identity this process may take."""
        free = self.settings.remote_concurrency * 4 - len(self.sessions)
        if free <= 0:
            return
        async with self.db.read() as conn:
            due = await store.due(conn, now_ms(), free, exclude=list(self.sessions))
        for identity_id in due:
            async with self.db.write() as conn:
                row = await store.claim(conn, identity_id, self.owner, now_ms(), LEASE_MS)
                if row is not None:
                    await store.update_row(
                        conn, identity_id, {"is_fetching": True, "history_total": 0, "history_fetched": 0}, owner=self.owner
                    )
            if row is None:
                continue  # another process took it
            task = asyncio.create_task(self._session(row), name=f"remote {identity_id}")
            self.sessions[identity_id] = task
            task.add_done_callback(lambda _t, i=identity_id: self.sessions.pop(i, None))  # type: ignore[misc]

    async def close(self) -> None:
        tasks = list(self.sessions.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def fetch_once(self, identity_id: str) -> None:
        """Claim and run one session now (tests, ``postern`` commands); waits for it."""
        async with self.db.write() as conn:
            row = await store.claim(conn, identity_id, self.owner, now_ms(), LEASE_MS)
            if row is not None:
                await store.update_row(conn, identity_id, {"is_fetching": True, "history_total": 0, "history_fetched": 0}, owner=self.owner)
        if row is None:
            raise RuntimeError("the identity is not due or is being fetched elsewhere")
        await self._session(row, idle=False)

    # One identity ----------------------------------------------------------------------

    async def _session(self, row: Any, idle: bool = True) -> None:
        renewer = asyncio.create_task(self._renew(row.id, asyncio.current_task()))
        client: Any = None
        errors: list[str] = []
        try:
            async with self.slots:
                client = await self._connect(row)
                fetch = self._fetcher(row, client)
                await fetch.run()
                errors = fetch.errors
            await self._succeeded(row, errors)
            if idle and isinstance(client, ImapClient) and b"IDLE" in client.capabilities and "INBOX" in self._folders(row):
                await self._idle(row, client)
            await self._release(row, {"next_fetch_ms": now_ms() + row.poll_interval_s * 1000})
        except Restart:
            await self._release(row, {"next_fetch_ms": now_ms()})
        except Cancelled as cancelled:
            values: dict[str, Any] = {"next_fetch_ms": now_ms() + row.poll_interval_s * 1000}
            if cancelled.reason == "cancel":
                values["cancel_fetch_required"] = False
            await self._release(row, values)
        except RemoteError as error:
            await self._failed(row, str(error), connected=client is not None and not isinstance(error, AuthenticationFailed))
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._release(row, {"next_fetch_ms": now_ms()}))
            raise
        except Exception:
            log.exception("remote identity %s: the fetch failed", row.id)
            await self._failed(row, "internal error while fetching (see the server log)", connected=client is not None)
        finally:
            self._changed.pop(row.id, None)
            renewer.cancel()
            if client is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.close(), 10)

    def _folders(self, row: Any) -> list[str]:
        folders = json.loads(row.folders)
        return ["INBOX"] if folders == ["*"] else folders

    async def _connect(self, row: Any) -> Any:
        try:
            return await self.service.connector.open(row)
        finally:
            async with self.db.write() as conn:
                await store.update_row(conn, row.id, {"last_connection_ms": now_ms()}, owner=self.owner)

    def _fetcher(self, row: Any, client: Any) -> ImapFetch | Pop3Fetch:
        async def check() -> Any:
            async with self.db.read() as conn:
                current = await store.get(conn, row.id)
            if current is None or current.lease_owner != self.owner or not current.connection_required:
                raise Cancelled("stop")
            if current.cancel_fetch_required:
                raise Cancelled("cancel")
            return current

        if isinstance(client, ImapClient):
            return ImapFetch(self.db, self.delivery, client, row, check)
        return Pop3Fetch(self.db, self.delivery, client, row, check)

    async def _idle(self, row: Any, client: ImapClient) -> None:
        """Wait on INBOX for new mail; fetch INBOX when it comes, every folder each
        poll interval; until the user stops it or the connection fails."""
        fetch = self._fetcher(row, client)
        last_full = time.monotonic()
        selected = "INBOX"
        await client.select(selected, readonly=bool(row.keep_on_server))
        while True:
            await fetch.check()
            changed = self._changed.setdefault(row.id, asyncio.Event())
            changed.clear()
            waiting = asyncio.create_task(client.idle(min(self.idle_chunk_s, float(row.poll_interval_s))))
            noticed = asyncio.create_task(changed.wait())
            try:
                await asyncio.wait({waiting, noticed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                noticed.cancel()
            if not waiting.done():
                # Changed meanwhile: stop waiting (the connection, left in IDLE, ends with
                # this session); check() says whether to stop or come back at once.
                waiting.cancel()
                await asyncio.gather(waiting, return_exceptions=True)
                await fetch.check()
                raise Restart()
            news = waiting.result()
            due_full = time.monotonic() - last_full >= row.poll_interval_s
            if not news and not due_full:
                continue
            async with self.slots:
                fetch.identity = await fetch.check()
                fetch.errors = []
                if due_full:
                    await fetch.run()
                    last_full = time.monotonic()
                else:
                    await fetch.run(only=["INBOX"])
            await self._succeeded(row, fetch.errors)
            await client.select(selected, readonly=bool(row.keep_on_server))

    async def _renew(self, identity_id: str, session: asyncio.Task[Any] | None) -> None:
        while True:
            await asyncio.sleep(LEASE_MS / 3000)
            async with self.db.write() as conn:
                renewed = await store.renew(conn, identity_id, self.owner, now_ms() + LEASE_MS)
            if renewed is None and session is not None:
                session.cancel()  # the lease is lost (deleted, or taken after a stall)
                return

    async def _succeeded(self, row: Any, errors: list[str]) -> None:
        async with self.db.write() as conn:
            await store.update_row(
                conn,
                row.id,
                {
                    "connected": True,
                    "last_connection_ms": now_ms(),
                    "last_error": "; ".join(errors)[:1000] or None,
                    "failures": 0,
                    "failing_since_ms": None,
                },
                owner=self.owner,
            )

    async def _release(self, row: Any, values: dict[str, Any]) -> None:
        async with self.db.write() as conn:
            await store.release(conn, row.id, self.owner, values)

    async def _failed(self, row: Any, error: str, connected: bool) -> None:
        now = now_ms()
        async with self.db.read() as conn:
            current = await store.get(conn, row.id)
        if current is None:
            return
        failures = int(current.failures) + 1
        since = current.failing_since_ms or now
        values: dict[str, Any] = {
            "connected": False,
            "last_error": error[:1000],
            "failures": failures,
            "failing_since_ms": since,
            "next_fetch_ms": now + int(min(MAX_BACKOFF_S, self.backoff_base_s * 2 ** min(failures - 1, 20)) * 1000),
        }
        stop = now - since >= self.settings.remote_stop_after * 1000
        if stop:
            values.update(stopped=True, connection_required=False)
        log.info("remote identity %s: fetch failed (%d in a row): %s", row.id, failures, error)
        async with self.db.write() as conn:
            await store.release(conn, row.id, self.owner, values)
            if stop:
                await self.notifications.notify(
                    current.user_id,
                    "A remote account stopped",
                    f"Fetching mail for <b>{quote(current.address)}</b> from {quote(current.host)} failed for days and has stopped. "
                    f"The last error was: {quote(error)}. Fix its settings and set connection_required to start it again.",
                    conn=conn,
                )
