"""Filters and autoreplies at local delivery (MX, LMTP, and alias forwards delivered
to a user's own address): delivery asks ``rules`` what to do with each copy, then
files it there, in the same group commit that stores it, together with the queue
rows of its forward copies and autoreply. Never applied to IMAP APPEND or API uploads
(they do not come through here).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from postern.delivery.outbound import OutboundQueue, Queued
from postern.mailstore.service import AppendRequest, AppendResult
from postern.mime import header_writing
from postern.rules import autoreply
from postern.rules.engine import Message, UserRules, decide
from postern.rules.model import target_of
from postern.rules.service import Rules
from postern.storage.blobs import BlobStore
from postern.storage.database import Database
from postern.storage.ids import now_ms

log = logging.getLogger("postern.delivery.filtering")

# The header a forward copy carries, naming the address that forwarded it: a copy
# that comes back to that address is stored but not forwarded again.
LOOP_FIELD = "X-Postern-Loop"
MAX_HOPS = 5
DAY_S = 24 * 3600


@dataclass(slots=True)
class Copy:
    """One local copy to file: its user, the address it came to, its request."""

    user_id: str
    address: str
    request: AppendRequest
    dropped: bool = False
    queued: list[Queued] = field(default_factory=list)
    # The trace fields a forward copy starts with (this recipient's Received line).
    trace: bytes = b""


class LocalRules:
    def __init__(
        self,
        rules: Rules,
        outbound: OutboundQueue,
        blobs: BlobStore,
        db: Database,
        counters: Any,
        hostname: str,
    ):
        self.rules = rules
        self.outbound = outbound
        self.blobs = blobs
        self.db = db
        self.counters = counters  # rate-limit counters: the user's forwards per day
        self.hostname = hostname

    async def apply(
        self,
        copies: Sequence[Copy],
        *,
        mail_from: str,
        data: bytes,
        trace: bytes,
        autoreplies: bool = True,
    ) -> None:
        """Decide each copy: its folder and flags, dropped or not, and the queue rows
        that go with it (set as the request's ``along``, or in ``copy.queued`` for a
        dropped copy, which the caller writes with ``queue_dropped``). No autoreply
        for alias forwards (``autoreplies`` false): it would give the owner's own
        address away to the alias's contact."""
        rules_of = await self.rules.for_users([c.user_id for c in copies])
        message: Message | None = None
        for copy in copies:
            rules = rules_of.get(copy.user_id)
            if rules is None or rules.empty:
                continue
            if message is None:
                message = Message(data)
            message.delivered_to = copy.address.lower()
            decision = decide(rules, message)
            request = copy.request
            if decision.folder_id is not None:
                request.folder_id = decision.folder_id
                request.folder_path = "INBOX"
                request.fallback_to_path = True
            if decision.flags:
                request.flags = tuple(dict.fromkeys((*request.flags, *decision.flags)))
            copy.dropped = decision.drop
            if message.summary is not None:
                request.summary = message.summary  # parsed once: the mailstore needs it too
            if decision.targets:
                copy.queued.extend(await self._forwards(rules, copy, decision.targets, mail_from, message, trace))
            if (
                autoreplies
                and rules.autoreply is not None
                and autoreply.should_reply(
                    rules_autoreply=rules.autoreply,
                    sender=mail_from,
                    message=message,
                    spam=decision.spam,
                    now_ms=now_ms(),
                    own_addresses=rules.addresses,
                )
            ):
                queued = await self._autoreply(rules, copy, mail_from, message)
                if queued is not None:
                    copy.queued.append(queued)
            if copy.queued and not copy.dropped:
                request.along = _enqueue_with(self.outbound, copy.queued)

    async def queue_dropped(self, copies: Sequence[Copy]) -> None:
        """The queue rows of dropped copies (their forwards, their autoreplies)."""
        queued = [q for c in copies if c.dropped for q in c.queued]
        if queued:
            async with self.db.write() as conn:
                await self.outbound.enqueue_many_in(conn, queued)

    def wake_if(self, copies: Sequence[Copy]) -> None:
        if any(c.queued for c in copies):
            self.outbound.wake()

    async def _forwards(
        self,
        rules: UserRules,
        copy: Copy,
        targets: list[str],
        mail_from: str,
        message: Message,
        trace: bytes,
    ) -> list[Queued]:
        seen = message.headers.get(LOOP_FIELD.lower(), [])
        address = copy.address.lower()
        if len(seen) >= MAX_HOPS or any(address in value.lower() for value in seen):
            log.info(
                "not forwarding for %s: the message was forwarded here before",
                copy.user_id,
            )
            return []
        if rules.forwards_limit <= 0:
            return []
        count, _ = await self.counters.increment(f"forwards:{copy.user_id}", DAY_S)
        if count > rules.forwards_limit:
            log.info(
                "not forwarding for %s: %d forwards in 24 hours",
                copy.user_id,
                rules.forwards_limit,
            )
            return []
        copy_bytes = header_writing.field(LOOP_FIELD, header_writing.clean_address(copy.address)) + (copy.trace or trace) + message.data
        key = await self.blobs.put(copy_bytes)
        # A bounce keeps its null sender; anything else is forwarded from the address
        # that received it, so that failures come back to its owner.
        sender = copy.address if mail_from else ""
        queued: list[Queued] = []
        addresses = [t for t in targets if target_of(t).kind == "mail"]
        if addresses:
            queued.append(Queued(copy.user_id, sender, addresses, key, len(copy_bytes)))
        for target in targets:
            if target_of(target).kind != "mail":
                queued.append(
                    Queued(
                        copy.user_id,
                        sender,
                        [copy.address],
                        key,
                        len(copy_bytes),
                        target=target,
                    )
                )
        return queued

    async def _autoreply(self, rules: UserRules, copy: Copy, mail_from: str, message: Message) -> Queued | None:
        if not await self.rules.claim_autoreply(copy.user_id, mail_from):
            return None
        try:
            reply = autoreply.compose(
                rules_autoreply=rules.autoreply,
                user_name=rules.name,
                recipient=copy.address,
                sender=mail_from,
                message=message,
                hostname=self.hostname,
            )
        except Exception:
            log.exception("composing the autoreply of %s failed", copy.user_id)
            return None
        key = await self.blobs.put(reply)
        return Queued(copy.user_id, "", [mail_from], key, len(reply))


def _enqueue_with(outbound: OutboundQueue, queued: list[Queued]) -> Any:
    async def along(conn: AsyncConnection, _result: AppendResult) -> None:
        await outbound.enqueue_many_in(conn, queued)

    return along
