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

log = logging.getLogger("postern.system_mail")


def compose(*, sender: str, to: str, subject: str, text: str, message_id_domain: str) -> bytes:
    """A plain-text message with the headers every receiver expects."""
    # Internationalised addresses need SMTPUTF8 headers (RFC 6532).
    message = EmailMessage(policy=SMTP if (sender + to).isascii() else SMTP.clone(utf8=True))
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = f"<{secrets.token_hex(16)}@{message_id_domain}>"
    # RFC 3834: an automatic message; vacation responders must not answer it.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text, charset="utf-8")
    return message.as_bytes()


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
            await self.outbound.enqueue(user_id=user_id, mail_from=mail_from, recipients=[to], blob_key=blob_key, size=len(raw), message_mid=None)
        except Exception:
            log.exception("system mail for user %s could not be sent", user_id)
