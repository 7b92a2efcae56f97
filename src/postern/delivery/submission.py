"""Mail submitted by an authenticated user: checked, copied to Sent, delivered to
local recipients at once and queued for the others.

A user sends as one of their hosted addresses or as one of their enabled aliases
(never anyone else's). Mail to a reverse alias is a reply through it
(``aliases.replies``): authorised before anything is stored, then rewritten and
queued for the contact from the alias."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from postern.accounts.addressing import normalise_address
from postern.delivery.committer import GroupCommitter
from postern.delivery.inbound import Envelope, InboundDelivery
from postern.delivery.outbound import OutboundQueue
from postern.delivery.reply_route import ReplyRefused, ReverseAliasReplies
from postern.delivery.router import Recipient, RecipientRefused, Router
from postern.errors import InvalidInput
from postern.mailstore.service import AppendRequest, AppendResult
from postern.mime import header_fields
from postern.mime.senders import Senders, senders
from postern.storage import alias_routing as routing_store
from postern.storage import users as user_store
from postern.storage.database import Database

log = logging.getLogger("postern.submission")


class SubmissionRefused(Exception):
    def __init__(self, reply: str):
        super().__init__(reply)
        self.reply = reply


@dataclass(frozen=True, slots=True)
class Submitted:
    queue_id: str | None
    local: int
    remote: int


def address_key(value: str) -> str | None:
    try:
        return normalise_address(value).key
    except InvalidInput:
        return None


def from_header_addresses(raw: bytes) -> list[str]:
    """Every address the message's From, Sender, Resent-From and Resent-Sender name,
    as any reader of it would see them (``mime.senders``)."""
    return senders(raw).all()


def sender_refusal(found: Senders) -> str | None:
    """The 550 for a message whose author fields cannot be checked: not exactly one
    From (counting its obsolete spellings), or one that some reader finds no address
    in. None when the addresses are to be checked."""
    if found.from_fields != 1:
        return "550 5.7.1 The message must have exactly one From header"
    if found.unreadable:
        names = ", ".join(sorted(found.unreadable))
        return f"550 5.7.1 The {names} header must name one of your addresses"
    return None


class Submission:
    def __init__(self, db: Database, router: Router, committer: GroupCommitter, inbound: InboundDelivery, outbound: OutboundQueue):
        self.db = db
        self.router = router
        self.committer = committer
        self.inbound = inbound
        self.outbound = outbound
        # Set by the runtime: replies through reverse aliases.
        self.replies: ReverseAliasReplies | None = None
        # Set by the runtime: the route of mail sent as one of the user's remote
        # identities (remote/sending.py): ``remote_route(user_id, address_keys)`` is an
        # outbound target, or None when the addresses are not one such identity's.
        self.remote_route: Callable[[str, Sequence[str | None]], Awaitable[str | None]] | None = None

    async def owned_addresses(self, user_id: str) -> set[str]:
        async with self.db.read() as conn:
            return {row.address_key for row in await user_store.list_user_addresses(conn, user_id)}

    async def may_send_as(self, user_id: str, keys: Sequence[str | None], owned: set[str] | None = None) -> bool:
        """Whether every one of ``keys`` is a hosted address of the user or one of
        their enabled aliases."""
        if owned is None:
            owned = await self.owned_addresses(user_id)
        rest = [key for key in keys if key not in owned]
        if any(key is None for key in rest):
            return False
        if not rest:
            return True
        async with self.db.read() as conn:
            for key in rest:
                alias = await routing_store.alias_by_key(conn, key or "")
                if alias is None or alias.user_id != user_id or not alias.enabled:
                    return False
        return True

    async def check_sender(self, user_id: str, mail_from: str) -> None:
        key = address_key(mail_from)
        if key is not None and self.remote_route is not None and not await self.may_send_as(user_id, [key]):
            if await self.remote_route(user_id, [key]) is not None:
                return
        if key is None or not await self.may_send_as(user_id, [key]):
            raise SubmissionRefused("553 5.7.1 Sender address is not one of your addresses")

    async def check_recipient_limit(self, user_id: str, recipients: int) -> None:
        async with self.db.read() as conn:
            user = await user_store.get_user(conn, user_id)
        if user is None:
            raise SubmissionRefused("535 5.7.8 Account no longer exists")
        sent = await self.outbound.recipients_in_last_day(user_id)
        if sent + recipients > user.recipients_limit:
            raise SubmissionRefused(f"452 4.5.3 Limit of {user.recipients_limit} recipients in 24 hours reached, try again later")

    async def submit(
        self, *, user_id: str, mail_from: str, recipients: Sequence[str], data: bytes, client_ip: str, helo: str, transtype: str
    ) -> Submitted:
        # "From :" (obsolete syntax) becomes "From:": every reader, DKIM signing
        # included, then sees the fields the check below sees.
        data = header_fields.without_obsolete_space(data)
        # From, Sender and Resent-From/-Sender as every reader of the message sees
        # them (one header scanner, every address parser): all must be the user's.
        found = senders(data)
        refusal = sender_refusal(found)
        if refusal is not None:
            raise SubmissionRefused(refusal)
        keys = [address_key(address) for address in found.all()]
        route = None
        if not await self.may_send_as(user_id, keys):
            # Not hosted here: one of the user's remote identities, sent through its own server.
            route = await self.remote_route(user_id, keys) if self.remote_route is not None else None
            if route is None:
                raise SubmissionRefused("550 5.7.1 The From header must name one of your addresses")
        # Replies through reverse aliases are authorised before anything is stored.
        replies: list[Any] = []  # what the alias room prepared, for send_prepared
        others: list[str] = []
        for rcpt in recipients:
            contact = await self.replies.reverse_alias_of(rcpt) if self.replies is not None else None
            if contact is None:
                others.append(rcpt)
                continue
            assert self.replies is not None
            try:
                replies.append(await self.replies.prepare_submission(user_id=user_id, mail_from=mail_from, contact=contact, data=data))
            except ReplyRefused as refused:
                raise SubmissionRefused(refused.reply) from None
        # The copy in Sent is stored first: the user keeps what they sent even if a
        # later step fails, and its id ties the delivery events to it.
        event = {
            "source": "SUBMISSION",
            "origin": client_ip,
            "originhost": helo,
            "transtype": transtype,
            "from": mail_from,
            "to": list(recipients),
        }
        sent = await self.committer.append(
            [
                AppendRequest(
                    user_id, None, data, flags=("\\Seen",), folder_path=await self._sent_path(user_id), event=event, quota_grace=True
                )
            ]
        )
        sent_copy = sent[0] if isinstance(sent[0], AppendResult) else None
        if sent_copy is None:
            log.warning("could not store the Sent copy for user %s: %s", user_id, sent[0])
        local: list[Recipient] = []
        remote: list[str] = []
        for rcpt in others:
            try:
                local.append(await self.router.resolve(rcpt))
            except RecipientRefused:
                remote.append(rcpt)
        if local:
            outcomes = await self.inbound.deliver(
                Envelope(mail_from, local, data, source="LOCAL", client_ip=client_ip, helo=helo, transtype=transtype)
            )
            failed = [o for o in outcomes if not o.stored]
            if failed:
                raise SubmissionRefused(failed[0].reply)
            await self.outbound.record_local(
                user_id=user_id,
                mail_from=mail_from,
                recipients=[o.recipient.address for o in outcomes],
                blob_key=sent_copy.blob_key if sent_copy else "",
                message_mid=sent_copy.mid if sent_copy else None,
            )
        queue_id = None
        if remote:
            blob_key = sent_copy.blob_key if sent_copy else await self.committer.mailstore.blobs.put(data)
            queue_id = await self.outbound.enqueue(
                user_id=user_id,
                mail_from=mail_from,
                recipients=remote,
                blob_key=blob_key,
                size=len(data),
                message_mid=sent_copy.mid if sent_copy else None,
                target=route,
            )
        for prepared in replies:
            assert self.replies is not None
            reply = await self.replies.send_prepared(prepared, data, message_mid=sent_copy.mid if sent_copy else None)
            if not reply.startswith("2"):
                raise SubmissionRefused(reply)
            queue_id = queue_id or reply.rsplit(" ", 1)[-1]  # "... queued as <id>"
        return Submitted(queue_id, len(local), len(remote) + len(replies))

    async def _sent_path(self, user_id: str) -> str:
        folder = await self.committer.mailstore.folder_by_special_use(user_id, "\\Sent")
        return folder.path if folder is not None else "INBOX"
