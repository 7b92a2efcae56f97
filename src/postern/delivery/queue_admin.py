"""The operator's view of the outbound queue: list, show, retry now, cancel.

Used by `postern queue` and the admin API's /queue. A cancelled message's waiting rows
end as ``cancelled`` (final, like delivered and bounced) and give back their hold on
the message's blob; a row being sent at that moment finishes its attempt."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from postern.errors import InvalidInput, NotFound
from postern.storage import messages as message_store
from postern.storage import outbound as store
from postern.storage.database import Database
from postern.storage.ids import now_ms

STATES = ("queued", "sending", "deferred", "delivered", "bounced", "cancelled")
WAITING = ("queued", "sending", "deferred")


@dataclass(frozen=True, slots=True)
class QueuedRecipient:
    id: str
    rcpt: str
    state: str
    attempts: int
    next_attempt_ms: int
    last_response: str | None
    target: str | None


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    queue_id: str
    user_id: str | None
    mail_from: str
    created_ms: int
    expires_ms: int
    blob_key: str
    recipients: list[QueuedRecipient]

    @property
    def state(self) -> str:
        """The message's state: its least advanced recipient's."""
        states = {r.state for r in self.recipients}
        for state in STATES:
            if state in states:
                return state
        return "delivered"

    def as_dict(self) -> dict[str, Any]:
        return {
            "queueId": self.queue_id,
            "user": self.user_id,
            "from": self.mail_from,
            "state": self.state,
            "created": self.created_ms,
            "expires": self.expires_ms,
            "recipients": [
                {
                    "id": r.id,
                    "to": r.rcpt,
                    "state": r.state,
                    "attempts": r.attempts,
                    "nextAttempt": r.next_attempt_ms if r.state in ("queued", "deferred") else None,
                    "lastResponse": r.last_response,
                    "target": r.target,
                }
                for r in self.recipients
            ],
        }


def _messages(rows: Sequence[Any]) -> list[QueuedMessage]:
    grouped: dict[str, list[Any]] = {}
    for row in rows:
        grouped.setdefault(row.queue_id, []).append(row)
    return [
        QueuedMessage(
            queue_id=queue_id,
            user_id=group[0].user_id,
            mail_from=group[0].mail_from,
            created_ms=group[0].created_ms,
            expires_ms=group[0].expires_ms,
            blob_key=group[0].blob_key,
            recipients=[QueuedRecipient(r.id, r.rcpt, r.state, r.attempts, r.next_attempt_ms, r.last_response, r.target) for r in group],
        )
        for queue_id, group in grouped.items()
    ]


def _states(states: Sequence[str] | None) -> list[str] | None:
    if not states:
        return None
    unknown = [s for s in states if s not in STATES]
    if unknown:
        raise InvalidInput(f"state must be one of {', '.join(STATES)}", field="state")
    return list(states)


class QueueAdmin:
    def __init__(self, db: Database, wake: Any = None):
        self.db = db
        self._wake = wake  # the queue's wake(), in the process that runs the queue

    async def messages(
        self, *, states: Sequence[str] | None = WAITING, user_id: str | None = None, limit: int = 1000
    ) -> list[QueuedMessage]:
        """Messages oldest first (by default those still waiting)."""
        async with self.db.read() as conn:
            rows = await store.list_rows(conn, states=_states(states), user_id=user_id, limit=limit)
        return _messages(rows)

    async def show(self, queue_id: str) -> QueuedMessage:
        async with self.db.read() as conn:
            rows = await store.rows_of(conn, queue_id)
        if not rows:
            raise NotFound("This message is not in the queue", code="QueueEntryNotFound")
        return _messages(rows)[0]

    async def summary(self) -> dict[str, tuple[int, int | None]]:
        """Rows and the oldest row's creation time per state."""
        async with self.db.read() as conn:
            return await store.state_counts(conn)

    async def retry(self, queue_id: str) -> int:
        """Makes the message's waiting recipients due now; how many."""
        await self.show(queue_id)
        async with self.db.write() as conn:
            count = await store.retry_now(conn, queue_id, now_ms())
        if count and self._wake is not None:
            self._wake()
        return count

    async def cancel(self, queue_id: str) -> int:
        """Stops the message's waiting recipients; how many."""
        await self.show(queue_id)
        async with self.db.write() as conn:
            released = await store.cancel(conn, queue_id, "cancelled by the operator", now_ms())
            await message_store.release_blobs(conn, released)
        return len(released)
