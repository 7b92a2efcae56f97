"""The outbound queue: durable rows, delivery by MX or relay, retries, bounces.

A row per recipient lives in the database from the moment the message is accepted.
The worker claims due rows under a lease (a process that dies mid-delivery leaves
rows that come back when the lease runs out, or at once when the worker of the same
data directory starts again: see ``queue_owner``), delivers each message once per
destination domain, and records every attempt as a message event.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import ssl
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiosmtplib
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.accounts.addressing import normalise_domain
from postern.delivery import dkim_signing, dsn, mx
from postern.delivery.authentication import parse_header_from
from postern.delivery.committer import GroupCommitter
from postern.delivery.connections import IdleConnections
from postern.delivery.dkim_keys import key_from_row
from postern.delivery.dns import DnsError, Resolver
from postern.errors import InvalidInput
from postern.events import Event
from postern.mailstore.service import AppendRequest
from postern.storage import dkim_keys as dkim_store
from postern.storage import messages as message_store
from postern.storage import outbound as queue_store
from postern.storage.blobs import BlobNotFound, BlobStore
from postern.storage.database import Database
from postern.storage.ids import new_id, now_ms
from postern.storage.message_events import add_events
from postern.storage.shared_writes import WriteBatcher
from postern.telemetry import metrics

log = logging.getLogger("postern.outbound")

CLAIM_BATCH = 50
PARALLEL_DELIVERIES = 10
# The envelope senders of alias forwards (aliases.bounces' VERP addresses).
FORWARD_SENDER_PREFIX = "bounce+"
# How long a domain's DKIM key (or its absence) is remembered.
DKIM_KEY_TTL_S = 10.0
# How long a stopping worker waits for the deliveries in flight.
STOP_GRACE_S = 30.0
# Final rows are kept a while for the record, then purged.
KEEP_FINAL_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class OutboundSettings:
    hostname: str
    mx_port: int = 25
    relay: tuple[str, int] | None = None
    relay_tls: str = "starttls"  # starttls | tls | none
    relay_username: str | None = None
    relay_password: str | None = None
    connect_timeout: float = 30.0
    lease_seconds: float = 600.0
    lifetime_seconds: float = mx.MAX_QUEUE_LIFETIME_S


@dataclass(frozen=True, slots=True)
class QueueWakeup(Event):
    """Rows were queued in a mail worker process: the serving process's queue worker
    should look now (see ``mail_worker``, which sends it, and ``server``)."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one recipient's delivery attempt came to."""

    code: int
    response: str
    host: str | None

    @property
    def kind(self) -> str:
        return mx.classify_smtp_reply(self.code, self.response)


def _unverified_tls() -> ssl.SSLContext:
    # Opportunistic TLS to MX hosts: encrypt when offered, as every MTA does, without
    # insisting on a certificate that most MX hosts do not have for their names.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _log_outcome(row: Any, attempt: Attempt, state: str, next_ms: int | None) -> None:
    """One line per recipient's attempt (deferrals and bounces at warning), and the counters."""
    if state == "delivered":
        metrics.M.delivered.inc()
        level = logging.INFO
    else:
        (metrics.M.deferred if state == "deferred" else metrics.M.bounced).inc()
        level = logging.WARNING
    if not log.isEnabledFor(level):
        return
    retry = datetime.fromtimestamp(next_ms / 1000, UTC).isoformat(timespec="seconds") if next_ms else None
    log.log(
        level,
        "outbound %s: %s to %s via %s: %s%s",
        row.queue_id,
        state,
        row.rcpt,
        attempt.host or "-",
        attempt.response,
        f" (next retry {retry})" if retry else "",
        extra={
            "queue_id": row.queue_id,
            "rcpt": row.rcpt,
            "host": attempt.host,
            "result": state,
            "code": attempt.code,
            "attempt": row.attempts,
            "next_retry": retry,
        },
    )


@dataclass(frozen=True, slots=True)
class Queued:
    """A message to queue: its envelope, its stored bytes and its Sent copy, if any.
    ``user_id`` None: mail of no user (the identity service's), never bounced."""

    user_id: str | None
    mail_from: str
    recipients: Sequence[str]
    blob_key: str
    size: int
    message_mid: str | None = None
    # Not to the recipients' MX: through this smtp(s):// relay, or by POST to this
    # http(s):// URL (a filter's forward target; see rules/).
    target: str | None = None


@dataclass
class _Outcomes:
    """What one delivery's results change: rows' states, message events, blob references."""

    updates: list[dict[str, Any]]
    events: list[tuple[str, str, str, dict[str, Any], int]]
    finished_blobs: list[str]


class _OutcomeWriter(WriteBatcher[_Outcomes]):
    """Writes the outcomes of concurrent deliveries together, in a few bulk
    statements for all of them (a busy queue finishes dozens of deliveries while one
    commit runs). If the write fails, every delivery of the batch hears it and its
    rows stay "sending" until their lease ends."""

    max_batch = CLAIM_BATCH * 4

    async def _write_batch(self, conn: AsyncConnection, items: Sequence[_Outcomes]) -> list[Any]:
        await queue_store.set_states(conn, [u for outcomes in items for u in outcomes.updates])
        await add_events(conn, [e for outcomes in items for e in outcomes.events])
        await message_store.release_blobs(conn, [k for outcomes in items for k in outcomes.finished_blobs])
        return [None] * len(items)


class OutboundQueue:
    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        committer: GroupCommitter,
        resolver: Resolver,
        settings: OutboundSettings,
    ):
        self.db = db
        self.blobs = blobs
        self.committer = committer
        self.resolver = resolver
        self.settings = settings
        self._wakeup = asyncio.Event()
        self._rng = random.Random()
        self._connections = IdleConnections()
        self._dkim_keys: dict[str, tuple[float, Any]] = {}
        self._outcome_writer = _OutcomeWriter(db)
        # Set by the runtime: takes over the permanent failure of a forwarded alias
        # message (recognised by its VERP envelope sender; see aliases.bounces) and
        # returns True, instead of a bounce into the sender's INBOX.
        self.forward_failures: Callable[[str, str], Awaitable[bool]] | None = None
        # Other rooms' routes, by the scheme of a row's target: e.g. "remote-identity:<id>"
        # goes out through that remote identity's own SMTP server (remote/sending.py).
        self.routes: dict[str, Callable[[str, str, list[str], bytes], Awaitable[dict[str, Attempt]]]] = {}

    # Queueing ------------------------------------------------------------------------

    async def enqueue(
        self,
        *,
        user_id: str | None,
        mail_from: str,
        recipients: Sequence[str],
        blob_key: str,
        size: int,
        message_mid: str | None,
        target: str | None = None,
    ) -> str:
        """``target``: not to the recipients' MX but along a route (see ``routes``)."""
        async with self.db.write() as conn:
            [queue_id] = await self.enqueue_many_in(conn, [Queued(user_id, mail_from, recipients, blob_key, size, message_mid, target)])
            if message_mid and user_id is not None:  # a message of a user's (system mail has none)
                event = {"queueId": queue_id, "from": mail_from, "to": list(dict.fromkeys(recipients))}
                await add_events(conn, [(user_id, message_mid, "QUEUED", event, now_ms())])
        self._wakeup.set()
        return queue_id

    async def enqueue_in(
        self,
        conn: AsyncConnection,
        *,
        user_id: str | None,
        mail_from: str,
        recipients: Sequence[str],
        blob_key: str,
        size: int,
        message_mid: str | None = None,
    ) -> str:
        """``enqueue`` in the caller's transaction (e.g. with the activity of an alias
        forward); call ``wake`` once it is committed."""
        [queue_id] = await self.enqueue_many_in(conn, [Queued(user_id, mail_from, recipients, blob_key, size, message_mid)])
        return queue_id

    async def enqueue_many_in(self, conn: AsyncConnection, messages: Sequence[Queued]) -> list[str]:
        """``enqueue_in`` for many messages, in bulk statements; their queue ids."""
        created = now_ms()
        queue_ids: list[str] = []
        rows: list[dict[str, Any]] = []
        refs: dict[str, tuple[int, int]] = {}
        for message in messages:
            queue_id = new_id()
            queue_ids.append(queue_id)
            recipients = list(dict.fromkeys(message.recipients))
            rows.extend(
                {
                    "id": new_id(),
                    "user_id": message.user_id,
                    "queue_id": queue_id,
                    "blob_key": message.blob_key,
                    "mail_from": message.mail_from,
                    "rcpt": rcpt,
                    "domain": _ascii_domain(rcpt),
                    "state": "queued",
                    "attempts": 0,
                    "next_attempt_ms": created,
                    "message_mid": message.message_mid,
                    "created_ms": created,
                    "updated_ms": created,
                    "expires_ms": created + int(self.settings.lifetime_seconds * 1000),
                    "target": message.target,
                }
                for rcpt in recipients
            )
            size, count = refs.get(message.blob_key, (message.size, 0))
            refs[message.blob_key] = (size, count + len(recipients))
        if rows:
            await message_store.add_blob_refs(conn, refs, created)
            await queue_store.insert_rows(conn, rows)
        return queue_ids

    def wake(self) -> None:
        """Tell this process's worker that rows are due (a worker of another process
        finds them at its next look, within 30 seconds)."""
        self._wakeup.set()

    async def record_local(
        self, *, user_id: str, mail_from: str, recipients: Sequence[str], blob_key: str, message_mid: str | None
    ) -> None:
        """Rows for recipients delivered locally at submission: already final, so
        they hold no blob reference, but they count toward the sender's daily limit
        and show in the sent message's timeline."""
        now = now_ms()
        queue_id = new_id()
        rows = [
            {
                "id": new_id(),
                "user_id": user_id,
                "queue_id": queue_id,
                "blob_key": blob_key,
                "mail_from": mail_from,
                "rcpt": rcpt,
                "domain": _ascii_domain(rcpt),
                "state": "delivered",
                "attempts": 1,
                "next_attempt_ms": now,
                "last_response": "250 2.0.0 Delivered locally",
                "message_mid": message_mid,
                "created_ms": now,
                "updated_ms": now,
                "expires_ms": now,
                "target": None,
            }
            for rcpt in dict.fromkeys(recipients)
        ]
        async with self.db.write() as conn:
            await queue_store.insert_rows(conn, rows)
            if message_mid:
                events = [
                    (
                        user_id,
                        message_mid,
                        "ACCEPTED",
                        {
                            "queueId": queue_id,
                            "seq": f"{i:03d}",
                            "from": mail_from,
                            "to": [r["rcpt"]],
                            "dst": "local",
                            "response": r["last_response"],
                        },
                        now,
                    )
                    for i, r in enumerate(rows, start=1)
                ]
                await add_events(conn, events)

    async def recipients_in_last_day(self, user_id: str) -> int:
        """What the user sent in the last 24 hours: alias forwards (queued under the
        alias owner, from a FORWARD_SENDER_PREFIX address) are mail they received."""
        async with self.db.read() as conn:
            return await queue_store.recipients_since(conn, user_id, now_ms() - 24 * 3600 * 1000, not_from_prefix=FORWARD_SENDER_PREFIX)

    async def stats(self) -> tuple[int, float | None]:
        """Rows waiting or being sent, and the oldest one's age in seconds (/metrics)."""
        async with self.db.read() as conn:
            depth, oldest_ms = await queue_store.queue_stats(conn)
        return depth, (max(0.0, (now_ms() - oldest_ms) / 1000) if oldest_ms is not None else None)

    # The worker ----------------------------------------------------------------------

    async def run(self, owner: str | None = None) -> None:
        """Deliver due rows until cancelled.

        ``owner`` is an identity that no other live process uses (see ``queue_owner``):
        rows a previous life of this worker left "sending" under it (it was killed
        mid-delivery) are retried at once rather than when their lease runs out.
        Without one, the worker leases rows under a random id.

        When cancelled, deliveries in flight get up to ``STOP_GRACE_S`` to finish and
        record their outcome: a message a server has just accepted must not stay
        "sending", to be sent again after the restart."""
        running: set[asyncio.Task[None]] = set()
        try:
            await self._run(owner, running)
        finally:
            if running:
                await asyncio.wait(set(running), timeout=STOP_GRACE_S)
            self._connections.close_all()

    async def _run(self, owner: str | None, running: set[asyncio.Task[None]]) -> None:
        parallel = asyncio.Semaphore(PARALLEL_DELIVERIES)
        purged_at = 0.0
        lease_owner = owner or new_id()
        if owner is not None:
            try:
                async with self.db.write() as conn:
                    taken = await queue_store.end_leases_of(conn, owner, now_ms())
                if taken:
                    log.info("outbound queue: retrying %d deliveries in flight when the previous run stopped", taken)
            except Exception:
                log.exception("outbound queue: taking back the previous run's deliveries failed; they come back when their lease ends")
        while True:
            try:
                async with self.db.write() as conn:
                    rows = await queue_store.claim_due(
                        conn, now_ms(), int(self.settings.lease_seconds * 1000), CLAIM_BATCH, owner=lease_owner
                    )
                if time.monotonic() - purged_at > 3600:
                    purged_at = time.monotonic()
                    async with self.db.write() as conn:
                        await queue_store.purge_final(conn, now_ms() - KEEP_FINAL_MS)
            except Exception:
                log.exception("outbound queue: claiming rows failed")
                rows = []
                await asyncio.sleep(5)
            groups: dict[tuple[str, str, str | None], list] = defaultdict(list)
            for row in rows:
                groups[(row.queue_id, row.domain, row.target)].append(row)
            for group in groups.values():
                await parallel.acquire()
                task = asyncio.create_task(self._deliver_group(group))
                running.add(task)
                task.add_done_callback(running.discard)
                task.add_done_callback(lambda _t: parallel.release())
            if len(rows) == CLAIM_BATCH:
                continue
            await self._sleep_until_due()

    async def _sleep_until_due(self) -> None:
        self._wakeup.clear()
        try:
            async with self.db.read() as conn:
                due = await queue_store.next_due_ms(conn)
        except Exception:
            due = None
        delay = 30.0 if due is None else max(0.05, min(30.0, (due - now_ms()) / 1000))
        try:
            await asyncio.wait_for(self._wakeup.wait(), delay)
        except TimeoutError:
            pass

    async def _deliver_group(self, rows: list) -> None:
        try:
            attempts = await self._attempt(rows)
        except Exception as error:
            log.exception("outbound queue: delivery of %s crashed", rows[0].queue_id)
            attempts = {row.rcpt: Attempt(451, f"451 4.3.0 Local error: {type(error).__name__}", None) for row in rows}
        try:
            await self._record(rows, attempts)
        except Exception:
            # The rows stay "sending" and come back when their lease ends.
            log.exception("outbound queue: recording the results of %s failed", rows[0].queue_id)

    async def _attempt(self, rows: list) -> dict[str, Attempt]:
        first = rows[0]
        try:
            raw = await self.blobs.get(first.blob_key)
        except BlobNotFound:
            return {row.rcpt: Attempt(554, "554 5.3.0 The message contents are missing", None) for row in rows}
        message = await self._signed(raw, first.mail_from)
        recipients = [row.rcpt for row in rows]
        if first.target:
            route = self.routes.get(first.target.partition(":")[0])
            if route is not None:
                return await route(first.target, first.mail_from, recipients, message)
            return await self._to_target(first.target, first.mail_from, recipients, message)
        if self.settings.relay is not None:
            host, port = self.settings.relay
            return await self._send(host, port, first.mail_from, recipients, message, relay=True)
        try:
            records = await self.resolver.mx(first.domain)
        except DnsError as error:
            code = 451 if error.temporary else 550
            return {
                r: Attempt(code, f"{code} {'4.4.3' if code == 451 else '5.1.2'} DNS lookup failed for {first.domain}: {error}", None)
                for r in recipients
            }
        if mx.is_null_mx(records):
            return {r: Attempt(556, f"556 5.1.10 {first.domain} does not accept mail (null MX)", None) for r in recipients}
        hosts = mx.order_mx(records, first.domain, rng=self._rng)
        last: dict[str, Attempt] = {}
        for host in hosts:
            for address in await self._addresses(host):
                last = await self._send(address, self.settings.mx_port, first.mail_from, recipients, message, relay=False, name=host)
                # Try the next address or MX only when this one could not take the message at all.
                if not all(a.code == 0 for a in last.values()):
                    return last
        if not last:
            return {r: Attempt(451, f"451 4.4.4 No mail exchanger found for {first.domain}", None) for r in recipients}
        return {r: Attempt(451, a.response or "451 4.4.1 Connection failed", a.host) for r, a in last.items()}

    async def _to_target(self, target: str, mail_from: str, recipients: list[str], message: bytes) -> dict[str, Attempt]:
        """A filter's forward target: an smtp(s):// relay, or an http(s):// URL that
        receives the message by POST (any 2xx answer delivers it)."""
        parts = urlsplit(target)
        scheme = parts.scheme.lower()
        host = parts.hostname or ""
        if scheme in ("http", "https"):
            try:
                status = await asyncio.to_thread(_post_message, target, message, mail_from, recipients, self.settings.connect_timeout)
            except (OSError, ValueError) as error:
                return {r: Attempt(451, f"451 4.4.1 POST to {host} failed: {error}", host) for r in recipients}
            if 200 <= status < 300:
                return {r: Attempt(250, f"250 2.0.0 {host} answered HTTP {status}", host) for r in recipients}
            code = 451 if status >= 500 or status in (408, 429) else 550
            return {
                r: Attempt(code, f"{code} {'4.4.0' if code == 451 else '5.0.0'} {host} answered HTTP {status}", host) for r in recipients
            }
        port = parts.port or (465 if scheme == "smtps" else 25)
        return await self._send_via(host, port, scheme == "smtps", mail_from, recipients, message)

    async def _send_via(
        self, host: str, port: int, use_tls: bool, mail_from: str, recipients: list[str], message: bytes
    ) -> dict[str, Attempt]:
        """One SMTP transaction with a filter's relay (opportunistic STARTTLS)."""
        client = aiosmtplib.SMTP(
            hostname=host, port=port, local_hostname=self.settings.hostname, timeout=self.settings.connect_timeout,
            use_tls=use_tls, start_tls=False, validate_certs=False,
        )  # fmt: skip
        try:
            await client.connect()
            await client.ehlo()
            if not use_tls and client.supports_extension("starttls"):
                await client.starttls(tls_context=_unverified_tls())
            errors, response = await client.sendmail(mail_from, recipients, message)
            results = {r: Attempt(250, response, host) for r in recipients}
            for rcpt, (code, text) in errors.items():
                results[rcpt] = Attempt(code, f"{code} {text}", host)
            return results
        except aiosmtplib.SMTPRecipientsRefused as error:
            return {r.recipient: Attempt(r.code, f"{r.code} {r.message}", host) for r in error.recipients} | {
                r: Attempt(550, "550 5.1.1 Refused", host) for r in recipients if r not in {x.recipient for x in error.recipients}
            }
        except aiosmtplib.SMTPResponseException as error:
            return {r: Attempt(error.code, f"{error.code} {error.message}", host) for r in recipients}
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            return {r: Attempt(451, f"451 4.4.1 Connection to {host} failed: {error}", host) for r in recipients}
        finally:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                client.close()

    async def _addresses(self, host: str) -> list[str]:
        """The host's IPv4 then IPv6 addresses, through our resolver (never the system's)."""
        try:
            ipaddress.ip_address(host)
            return [host]
        except ValueError:
            pass
        found: list[str] = []
        for lookup in (self.resolver.a, self.resolver.aaaa):
            try:
                found.extend(await lookup(host))
            except DnsError:
                continue
        return found

    async def _send(
        self, host: str, port: int, mail_from: str, recipients: list[str], message: bytes, *, relay: bool, name: str | None = None
    ) -> dict[str, Attempt]:
        """One SMTP transaction with ``host`` (an address, or the relay's name); ``name``
        is what the events report. A code of 0 means the host could not be reached."""
        label = name or host
        key = (host, port, relay)
        client = self._connections.take(key)
        reused = client is not None
        if client is None:
            opened = await self._open(host, port, relay=relay, label=label)
            if isinstance(opened, Attempt):
                return {r: opened for r in recipients}
            client = opened
        keep = False
        try:
            options = []
            if not message.isascii() and client.supports_extension("8bitmime"):
                options.append("BODY=8BITMIME")
            if not (mail_from + "".join(recipients)).isascii():
                if not client.supports_extension("smtputf8"):
                    keep = True
                    return {r: Attempt(553, f"553 5.6.7 {label} does not support SMTPUTF8 addresses", label) for r in recipients}
                options.append("SMTPUTF8")
            if client.supports_extension("size"):
                options.append(f"SIZE={len(message)}")
            # SMTPUTF8 addresses go on the wire as UTF-8 (RFC 6531).
            encoding = "utf-8" if "SMTPUTF8" in options else "ascii"
            try:
                await client.mail(mail_from, options=options, encoding=encoding)
            except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPConnectError, OSError):
                if not reused:
                    raise
                # A kept connection the server closed meanwhile: nothing was sent on
                # it yet, so the message goes on a new one.
                client.close()
                opened = await self._open(host, port, relay=relay, label=label)
                if isinstance(opened, Attempt):
                    return {r: opened for r in recipients}
                client = opened
                await client.mail(mail_from, options=options, encoding=encoding)
            results: dict[str, Attempt] = {}
            accepted = []
            for rcpt in recipients:
                try:
                    response = await client.rcpt(rcpt, encoding=encoding)
                    accepted.append(rcpt)
                    results[rcpt] = Attempt(response.code, f"{response.code} {response.message}", label)
                except aiosmtplib.SMTPRecipientRefused as error:
                    results[rcpt] = Attempt(error.code, f"{error.code} {error.message}", label)
            if accepted:
                # A refused DATA answers for the accepted recipients only: those
                # refused at RCPT keep their own reply (a 451 there is retried).
                reply: aiosmtplib.SMTPResponse | aiosmtplib.SMTPResponseException
                try:
                    reply = await client.data(message)
                except aiosmtplib.SMTPResponseException as error:
                    reply = error
                for rcpt in accepted:
                    results[rcpt] = Attempt(reply.code, f"{reply.code} {reply.message}", label)
            else:
                await client.rset()  # every recipient refused: end the transaction
            keep = True
            return results
        except aiosmtplib.SMTPResponseException as error:
            return {r: Attempt(error.code, f"{error.code} {error.message}", label) for r in recipients}
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            return {r: Attempt(451, f"451 4.4.2 Connection to {label} broke: {error}", label) for r in recipients}
        finally:
            if keep and client.is_connected:
                self._connections.give(key, client)
            else:
                try:
                    await client.quit()
                except Exception:
                    client.close()

    async def _open(self, host: str, port: int, *, relay: bool, label: str) -> aiosmtplib.SMTP | Attempt:
        """A connection ready for MAIL (greeted, EHLO, STARTTLS and AUTH as set), or
        the Attempt that says why there is none (a code of 0: unreachable)."""
        use_tls = relay and self.settings.relay_tls == "tls"
        client = aiosmtplib.SMTP(
            hostname=host,
            port=port,
            local_hostname=self.settings.hostname,
            timeout=self.settings.connect_timeout,
            use_tls=use_tls,
            start_tls=False,
            validate_certs=relay,
        )
        try:
            await client.connect()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            return Attempt(0, f"451 4.4.1 Connection to {label} failed: {error}", label)
        try:
            await client.ehlo()
            if not use_tls and client.supports_extension("starttls") and not (relay and self.settings.relay_tls == "none"):
                await client.starttls(tls_context=None if relay else _unverified_tls())
            elif relay and self.settings.relay_tls == "starttls":
                raise aiosmtplib.SMTPException(f"relay {host} does not offer STARTTLS")
            if relay and self.settings.relay_username:
                await client.login(self.settings.relay_username, self.settings.relay_password or "")
        except aiosmtplib.SMTPResponseException as error:
            client.close()
            return Attempt(error.code, f"{error.code} {error.message}", label)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            client.close()
            return Attempt(451, f"451 4.4.2 Connection to {label} broke: {error}", label)
        return client

    async def _signed(self, raw: bytes, mail_from: str) -> bytes:
        """Signed with the key of the From header's domain (what DMARC aligns with),
        else of the envelope sender's domain; unsigned when neither has a key."""
        status, from_domain = parse_header_from(raw)
        candidates = [from_domain if status == "ok" and from_domain else "", mail_from.rpartition("@")[2] if "@" in mail_from else ""]
        row = None
        for domain in dict.fromkeys(_ascii_domain("@" + d) for d in candidates if d):
            row = await self._dkim_key(domain)
            if row is not None:
                break
        if row is None:
            return raw
        key = key_from_row(row)
        try:
            return await asyncio.to_thread(dkim_signing.sign, raw, key) + raw
        except dkim_signing.DkimSigningError:
            log.warning("DKIM signing failed for a message from %s; sent unsigned", row.domain)
            return raw

    async def _dkim_key(self, domain: str) -> Any:
        """The domain's DKIM key row, or None; remembered for DKIM_KEY_TTL_S, as every
        message of a busy queue asks (a new key is used from then on)."""
        now = time.monotonic()
        known = self._dkim_keys.get(domain)
        if known is not None and now - known[0] < DKIM_KEY_TTL_S:
            return known[1]
        async with self.db.read() as conn:
            row = await dkim_store.get_key(conn, domain)
        if len(self._dkim_keys) > 10_000:
            self._dkim_keys.clear()
        self._dkim_keys[domain] = (now, row)
        return row

    async def _record(self, rows: list, attempts: dict[str, Attempt]) -> None:
        now = now_ms()
        outcomes: list[tuple[Any, Attempt, str]] = []
        for row in rows:
            attempt = attempts[row.rcpt]
            kind = attempt.kind if attempt.code else "temporary"
            if kind == "ok":
                outcomes.append((row, attempt, "delivered"))
            elif kind == "temporary" and now < row.expires_ms:
                outcomes.append((row, attempt, "deferred"))
            else:
                outcomes.append((row, attempt, "bounced"))
        failed = [(row, attempt) for row, attempt, state in outcomes if state == "bounced"]
        if failed and self.forward_failures is not None:
            kept = []
            for row, attempt in failed:
                try:
                    handled = await self.forward_failures(row.mail_from, attempt.response)
                except Exception:
                    log.exception("outbound queue: recording the bounce of a forward failed")
                    handled = True  # a forward's failure never becomes a DSN to its user
                if not handled:
                    kept.append((row, attempt))
            failed = kept
        if failed:
            # The bounce is stored before the rows become final: a crash in between
            # retries the rows (and may bounce twice) rather than lose the bounce.
            await self._bounce(rows[0], failed)

        updates: list[dict[str, Any]] = []
        events = []
        finished_blobs: list[str] = []
        for seq, (row, attempt, state) in enumerate(outcomes, start=1):
            event = {"queueId": row.queue_id, "seq": f"{seq:03d}", "from": row.mail_from, "to": [row.rcpt], "response": attempt.response}
            if attempt.host:
                event["dst"] = attempt.host
            update = {"id": row.id, "state": state, "response": attempt.response, "now_ms": now, "next_attempt_ms": None}
            if state == "deferred":
                update["next_attempt_ms"] = now + int(mx.retry_delay(row.attempts, rng=self._rng) * 1000)
                event["nextAttempt"] = datetime.fromtimestamp(update["next_attempt_ms"] / 1000, UTC).isoformat()
            else:
                finished_blobs.append(row.blob_key)  # final rows hold no reference to the message any more
            updates.append(update)
            _log_outcome(row, attempt, state, update["next_attempt_ms"])
            if row.message_mid:
                action = {"delivered": "ACCEPTED", "deferred": "DEFERRED", "bounced": "REJECTED"}[state]
                events.append((row.user_id, row.message_mid, action, event, now))
        await self._outcome_writer.submit(_Outcomes(updates, events, finished_blobs))

    async def _bounce(self, first: Any, failed: list[tuple[Any, Attempt]]) -> None:
        """A delivery status notification into the sender's INBOX."""
        if first.user_id is None:  # mail of no user (validation mail): nobody to tell
            return
        try:
            original = await self.blobs.get(first.blob_key)
        except BlobNotFound:
            original = b""
        headers = original.split(b"\r\n\r\n", 1)[0]
        if not dsn.is_bounce_worthy(first.mail_from, headers):
            return
        now = datetime.now(UTC)
        recipients = [
            dsn.FailedRecipient(
                address=row.rcpt,
                status=mx.enhanced_status(attempt.code or 451, attempt.response),
                action="failed",
                diagnostic=attempt.response,
                remote_mta=attempt.host,
                last_attempt=now,
            )
            for row, attempt in failed
        ]
        report = dsn.build_dsn(
            original=original,
            envelope_from=first.mail_from,
            recipients=recipients,
            reporting_mta=self.settings.hostname,
            arrival_date=datetime.fromtimestamp(first.created_ms / 1000, UTC),
            envelope_id=first.queue_id,
            message_id_domain=self.settings.hostname,
        )
        event = {
            "source": "BOUNCE",
            "origin": self.settings.hostname,
            "transtype": "LOCAL",
            "from": "",
            "to": [first.mail_from],
            "queueId": first.queue_id,
        }
        await self.committer.append(
            [AppendRequest(first.user_id, None, report, prefix=b"Return-Path: <>\r\n", event=event, quota_grace=True)]
        )


def _post_message(url: str, message: bytes, mail_from: str, recipients: list[str], timeout: float) -> int:
    """POST the message to a web hook; its HTTP status (blocking: run in a thread)."""
    request = urllib.request.Request(  # noqa: S310 (http(s) only: _to_target checks the scheme)
        url,
        data=message,
        method="POST",
        headers={
            "Content-Type": "message/rfc822",
            "X-Envelope-From": mail_from.encode("ascii", "replace").decode(),
            "X-Envelope-To": ",".join(recipients).encode("ascii", "replace").decode(),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http(s) only: _to_target checks the scheme)
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _ascii_domain(address: str) -> str:
    domain = address.rpartition("@")[2]
    try:
        return normalise_domain(domain)[0]
    except InvalidInput:
        return domain.lower()
