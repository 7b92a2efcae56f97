"""Mail postern writes itself to a user's contact email: activation codes, password
resets, account notices.

A hosted recipient gets it at once through local delivery (the router and the group
committer, as submission does); any other goes into the outbound queue, which signs
it with the From domain's DKIM key when there is one.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr

from postern.delivery.inbound import Envelope, InboundDelivery
from postern.delivery.outbound import OutboundQueue
from postern.delivery.router import RecipientRefused, Router
from postern.mime import header_writing

log = logging.getLogger("postern.system_mail")


def compose(*, sender: str, to: str, subject: str, text: str, message_id_domain: str) -> bytes:
    """A plain-text message with the headers every receiver expects. The header
    fields are written by ``mime.header_writing`` (the stdlib's folding of encoded
    words loses spaces, and no value must ever carry a line break); the body part by
    the stdlib."""
    sender_name, sender_address = parseaddr(header_writing.clean(sender))
    to_name, to_address = parseaddr(header_writing.clean(to))
    fields = [
        header_writing.field("From", header_writing.mailbox(sender_name, sender_address or header_writing.clean(sender))),
        header_writing.field("To", header_writing.mailbox(to_name, to_address or header_writing.clean(to))),
        header_writing.field("Subject", header_writing.unstructured(subject)),
        header_writing.field("Date", format_datetime(datetime.now(UTC))),
        header_writing.field("Message-ID", f"<{secrets.token_hex(16)}@{header_writing.clean_address(message_id_domain)}>"),
        # RFC 3834: an automatic message; vacation responders must not answer it.
        header_writing.field("Auto-Submitted", "auto-generated"),
    ]
    body = EmailMessage(policy=SMTP)
    body.set_content(text, charset="utf-8")
    return b"".join(fields) + body.as_bytes()


class SystemMail:
    def __init__(self, *, sender: str, hostname: str, router: Router, inbound: InboundDelivery, outbound: OutboundQueue):
        self.sender = sender
        self.hostname = hostname
        self.router = router
        self.inbound = inbound
        self.outbound = outbound

    @property
    def envelope_sender(self) -> str:
        return parseaddr(self.sender)[1]

    async def send(self, *, user_id: str, to: str, subject: str, text: str) -> None:
        """Deliver or queue one message to ``to`` on behalf of ``user_id`` (whose
        queue rows and bounces they are). Never raises for a delivery problem: the
        caller's answer must not depend on it (nor tell anything by it)."""
        raw = compose(sender=self.sender, to=to, subject=subject, text=text, message_id_domain=self.hostname)
        mail_from = self.envelope_sender
        try:
            try:
                local = await self.router.resolve(to)
            except RecipientRefused:
                local = None
            if local is not None:
                outcomes = await self.inbound.deliver(
                    Envelope(mail_from, [local], raw, source="LOCAL", client_ip="127.0.0.1", helo=self.hostname, transtype="LOCAL")
                )
                if all(o.stored for o in outcomes):
                    return
                log.warning("system mail for user %s could not be stored locally: %s", user_id, outcomes[0].reply)
                return
            blob_key = await self.outbound.blobs.put(raw)
            await self.outbound.enqueue(
                user_id=user_id, mail_from=mail_from, recipients=[to], blob_key=blob_key, size=len(raw), message_mid=None
            )
        except Exception:
            log.exception("system mail for user %s could not be sent", user_id)
