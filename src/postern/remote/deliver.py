"""Local delivery of a fetched message, exactly once: the normal path (filters and
autoreplies through ``delivery.filtering``, the group commit), with the message's
remote position written in the same transaction as the local copy (the append's
``along``). A crash before that commit leaves neither; after it, both."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from postern.delivery.committer import GroupCommitter
from postern.delivery.filtering import Copy
from postern.delivery.inbound import header_safe
from postern.errors import Conflict, DomainError, InvalidInput, NotFound
from postern.mailstore.service import AppendRequest, AppendResult
from postern.storage import remote_identities as store
from postern.storage.database import Database
from postern.storage.ids import new_id, now_ms

_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*((?:[^\r\n]|\r?\n[ \t])*)", re.IGNORECASE | re.MULTILINE)


def message_id_of(data: bytes) -> str | None:
    head = data.split(b"\r\n\r\n", 1)[0][:65536]
    found = _MESSAGE_ID.search(head)
    if not found:
        return None
    value = re.sub(rb"\s+", b"", found.group(1)).decode("utf-8", "replace")
    return value[:255] or None


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class Position:
    """Where a message was on the remote server."""

    folder: str  # IMAP folder; "" for POP3
    uidvalidity: int
    uid: int
    uidl: str  # POP3; "" for IMAP

    def row(self, identity: Any, message_id: str | None, digest: str | None, local_mid: str | None) -> dict[str, Any]:
        return {
            "identity_id": identity.id,
            "user_id": identity.user_id,
            "folder": self.folder,
            "uidvalidity": self.uidvalidity,
            "uid": self.uid,
            "uidl": self.uidl,
            "message_id": message_id,
            "content_hash": digest,
            "local_mid": local_mid,
            "created_ms": now_ms(),
        }


Along = Callable[[AsyncConnection, AppendResult], Awaitable[None]]


class FetchedDelivery:
    def __init__(self, db: Database, committer: GroupCommitter, filtering: Any, hostname: str):
        self.db, self.committer, self.filtering, self.hostname = db, committer, filtering, hostname

    def trace(self, identity: Any, via: str) -> bytes:
        now = datetime.now(UTC)
        return (
            f"Received: from {header_safe(identity.host)} by {self.hostname} (postern) with {via}"
            f" id {new_id()}\r\n\tfor <{header_safe(identity.address, 512)}>; {format_datetime(now)}\r\n"
        ).encode()

    async def deliver(
        self, identity: Any, position: Position, data: bytes, via: str, internal_ms: int | None = None, folder_path: str = "INBOX"
    ) -> AppendResult | DomainError | None:
        """Store the message in the identity's user's folders; None when a filter
        dropped it (its position is recorded all the same)."""
        message_id, digest = message_id_of(data), content_hash(data)
        trace = self.trace(identity, via)
        request = AppendRequest(
            identity.user_id,
            None,
            data,
            prefix=trace,
            internal_ms=internal_ms,
            folder_path=folder_path,
            event={"source": "REMOTE", "origin": header_safe(identity.host), "transtype": via, "from": "", "to": [identity.address]},
        )
        copy = Copy(identity.user_id, identity.address, request)
        if self.filtering is not None and folder_path == "INBOX":  # filters act on what comes to the INBOX
            await self.filtering.apply([copy], mail_from="", data=data, trace=trace)
        if copy.dropped:
            if self.filtering is not None:
                await self.filtering.queue_dropped([copy])
            async with self.db.write() as conn:
                await store.record(conn, [position.row(identity, message_id, digest, None)])
                await store.add_counts(conn, identity.id, 1)
            return None
        earlier = request.along

        async def along(conn: AsyncConnection, result: AppendResult) -> None:
            if earlier is not None:
                await earlier(conn, result)
            await store.record(conn, [position.row(identity, message_id, digest, result.mid)])
            await store.add_counts(conn, identity.id, 1)

        request.along = along
        result = (await self.committer.append([request]))[0]
        if self.filtering is not None:
            self.filtering.wake_if([copy])
        return result

    async def local_folder(self, identity: Any, remote_folder: str) -> str:
        """Where a remote folder's mail goes: the INBOX for the INBOX, others under a
        folder named after the identity ("me@isp.example/Archive"), made when needed."""
        if remote_folder.upper() == "INBOX":
            return "INBOX"
        path = f"{identity.address}/{remote_folder}"
        mailstore = self.committer.mailstore
        try:
            await mailstore.folder_by_path(identity.user_id, path)
        except NotFound:
            try:
                await mailstore.create_folder(identity.user_id, path)
            except Conflict:
                pass  # made meanwhile
            except InvalidInput:
                return "INBOX"  # a name postern cannot hold: into the INBOX rather than lost
        except InvalidInput:
            return "INBOX"
        return path

    async def pass_over(self, identity: Any, positions: list[tuple[Position, str | None, str | None, str | None]]) -> None:
        """Record positions without delivering: mail there before a from_now identity,
        a message too large, one recognised after a UIDVALIDITY change (position,
        message id, content hash, the local copy's mid if known)."""
        if not positions:
            return
        async with self.db.write() as conn:
            await store.record(conn, [p.row(identity, m, h, mid) for p, m, h, mid in positions])
            await store.add_progress(conn, identity.id, len(positions))
