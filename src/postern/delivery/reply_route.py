"""What submission asks of the alias room when a user sends to a reverse alias (a
reply from one of an alias's mailboxes). Delivery defines it and ``aliases.replies``
fills it in (the runtime hands ``Replies`` to ``Submission``), so that the arrow
points from aliases to delivery."""

from __future__ import annotations

from typing import Any, Protocol


class ReplyRefused(Exception):
    """A reply that may not go out: ``reply`` is the SMTP reply line."""

    def __init__(self, reply: str):
        super().__init__(reply)
        self.reply = reply


class ReverseAliasReplies(Protocol):
    async def reverse_alias_of(self, rcpt: str) -> Any | None:
        """The contact whose reverse alias ``rcpt`` is, if it is one."""
        ...

    async def prepare_submission(self, *, user_id: str, mail_from: str, contact: Any, data: bytes) -> Any:
        """Authorise a reply that ``user_id`` submitted to ``contact``'s reverse alias
        (raises ReplyRefused); what ``send_prepared`` takes."""
        ...

    async def send_prepared(self, prepared: Any, data: bytes, *, message_mid: str | None = None) -> str:
        """Rewrite and send a reply authorised by ``prepare_submission``; one SMTP reply."""
        ...
