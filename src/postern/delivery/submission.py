"""Mail submitted by an authenticated user: checked, copied to Sent, delivered to
local recipients at once and queued for the others."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses

from postern.accounts.addressing import normalise_address
from postern.delivery.committer import GroupCommitter
from postern.delivery.inbound import Envelope, InboundDelivery
from postern.delivery.outbound import OutboundQueue
from postern.delivery.router import LocalRecipient, RecipientRefused, Router
from postern.errors import InvalidInput
from postern.mailstore.service import AppendRequest, AppendResult
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
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
    values = [str(v) for v in headers.get_all("From") or []] + [str(v) for v in headers.get_all("Sender") or []]
    return [address for _, address in getaddresses(values) if address]


class Submission:
    def __init__(self, db: Database, router: Router, committer: GroupCommitter, inbound: InboundDelivery, outbound: OutboundQueue):
        self.db = db
        self.router = router
        self.committer = committer
        self.inbound = inbound
        self.outbound = outbound

    async def owned_addresses(self, user_id: str) -> set[str]:
        async with self.db.read() as conn:
            return {row.address_key for row in await user_store.list_user_addresses(conn, user_id)}

    async def check_sender(self, user_id: str, mail_from: str) -> None:
        key = address_key(mail_from)
        if key is None or key not in await self.owned_addresses(user_id):
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
        owned = await self.owned_addresses(user_id)
        for address in from_header_addresses(data) or [""]:
            if address_key(address) not in owned:
                raise SubmissionRefused("550 5.7.1 The From header must name one of your addresses")
        # The copy in Sent is stored first: the user keeps what they sent even if a
        # later step fails, and its id ties the delivery events to it.
        event = {"source": "SUBMISSION", "origin": client_ip, "originhost": helo, "transtype": transtype, "from": mail_from, "to": list(recipients)}
        sent = await self.committer.append(
            [AppendRequest(user_id, None, data, flags=("\\Seen",), folder_path=await self._sent_path(user_id), event=event, quota_grace=True)]
        )
        sent_copy = sent[0] if isinstance(sent[0], AppendResult) else None
        if sent_copy is None:
            log.warning("could not store the Sent copy for user %s: %s", user_id, sent[0])
        local: list[LocalRecipient] = []
        remote: list[str] = []
        for rcpt in recipients:
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
            )
        return Submitted(queue_id, len(local), len(remote))

    async def _sent_path(self, user_id: str) -> str:
        folder = await self.committer.mailstore.folder_by_special_use(user_id, "\\Sent")
        return folder.path if folder is not None else "INBOX"
