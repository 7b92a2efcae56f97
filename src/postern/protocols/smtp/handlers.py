"""Policy for the SMTP doors: who may send what to whom. The protocol state machine
is aiosmtpd's (see ``session``); these hooks answer MAIL, RCPT and DATA by asking
the delivery services."""

from __future__ import annotations

import logging
import time
from typing import Any, cast

from aiosmtpd.smtp import SMTP, Session
from aiosmtpd.smtp import Envelope as SmtpEnvelope

from postern.delivery.inbound import Envelope, InboundDelivery, smuggling_attempt
from postern.delivery.router import LocalRecipient, Recipient, RecipientRefused, ReverseAliasRecipient, Router, normalised
from postern.delivery.submission import Submission, SubmissionRefused
from postern.errors import InvalidInput
from postern.telemetry import metrics

log = logging.getLogger("postern.smtp")
log_transactions = logging.getLogger("postern.smtp.transactions")

SMUGGLING = "554 5.5.2 Message refused: a bare CR or LF next to a lone dot (SMTP smuggling)"
TEMPORARY = "451 4.3.0 Temporary failure, try again later"
NULL_SENDER = "<>"


def declared_size(options: list[str]) -> int:
    for option in options:
        name, _, value = option.partition("=")
        if name.upper() == "SIZE" and value.isdigit():
            return int(value)
    return 0


def transtype(server: SMTP, session: Session, lmtp: bool = False) -> str:
    if lmtp:
        return "LMTP"
    base = "ESMTP" if session.extended_smtp else "SMTP"
    return base + ("S" if session.ssl else "") + ("A" if session.authenticated else "")


class _Base:
    def __init__(self, max_recipients: int):
        self.max_recipients = max_recipients

    @staticmethod
    def _recipients(envelope: SmtpEnvelope) -> list[Any]:
        found = getattr(envelope, "postern_recipients", None)
        if found is None:
            found = []
            envelope.postern_recipients = found  # type: ignore[attr-defined]
        return found

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: SmtpEnvelope, hostname: str, responses: list[str]) -> list[str]:
        # aiosmtpd's state machine handles pipelined commands but does not say so
        # (RFC 2920; LMTP servers must offer it, RFC 2033), and it advertises an empty
        # "AUTH" where no mechanism is offered (MX, LMTP).
        session.host_name = hostname  # a hook of this form must set it itself
        kept = [r for r in responses if r.strip() != "250-AUTH"]
        return [*kept[:-1], "250-PIPELINING", kept[-1]]

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: SmtpEnvelope, address: str, options: list[str]) -> str:
        # aiosmtpd gives the null reverse-path (bounces) as "<>", and keeps it so: an
        # empty mail_from would read as "no MAIL yet" to its RCPT and nesting checks.
        if address and address != NULL_SENDER and not _plausible(address):
            return "553 5.1.7 Sender address syntax is invalid"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Ok"

    def _too_many(self, envelope: SmtpEnvelope) -> bool:
        return len(envelope.rcpt_tos) >= self.max_recipients


class InboundHandler(_Base):
    """MX (``lmtp=False``) and LMTP: mail for the users of this server."""

    def __init__(self, router: Router, inbound: InboundDelivery, *, lmtp: bool, max_recipients: int):
        super().__init__(max_recipients)
        self.router = router
        self.inbound = inbound
        self.lmtp = lmtp

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: SmtpEnvelope, address: str, options: list[str]) -> str:
        if self._too_many(envelope):
            return "452 4.5.3 Too many recipients"
        try:
            recipient = await self.router.resolve(address, size=declared_size(envelope.mail_options))
        except RecipientRefused as refusal:
            return refusal.reply
        except Exception:
            log.exception("resolving a recipient failed")
            return TEMPORARY
        # Every RCPT that gets 250 gets its reply after DATA in LMTP (RFC 2033 4.2),
        # a duplicate too (the same as its first's); the message is stored once.
        accepted = self._recipients(envelope)
        if any(r.key == recipient.key for r in accepted):
            _rcpt_keys(envelope).append(recipient.key)
            return "250 2.1.5 Ok (duplicate recipient)"
        if not self.lmtp and accepted and (_fate(recipient) is None or _fate(recipient) != _fate(accepted[0])):
            # SMTP has one reply after DATA for all recipients: a 250 while one of them
            # failed would lose its copy. So only recipients that succeed or fail
            # together share a transaction; the sender sends the others in another
            # one (RFC 5321 4.5.3.1.10).
            return "452 4.5.3 Too many recipients, send this one in another transaction"
        _rcpt_keys(envelope).append(recipient.key)
        envelope.rcpt_tos.append(address)
        self._recipients(envelope).append(recipient)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: SmtpEnvelope) -> str:
        start = time.perf_counter()
        door = "lmtp" if self.lmtp else "smtp"
        queue_id, reply = await self._data(server, session, envelope)
        log_transaction(door, start, queue_id, session, envelope, reply)
        return reply

    async def _data(self, server: SMTP, session: Session, envelope: SmtpEnvelope) -> tuple[str | None, str]:
        recipients: list[Recipient] = self._recipients(envelope)
        data = envelope.original_content or b""
        if smuggling_attempt(data) or getattr(server, "lone_dot_in_data", False):
            return None, "\r\n".join([SMUGGLING] * len(_rcpt_keys(envelope))) if self.lmtp else SMUGGLING
        peer = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer)
        inbound = Envelope(
            _reverse_path(envelope),
            recipients,
            data,
            source="LMTP" if self.lmtp else "MX",
            client_ip=str(peer),
            helo=session.host_name or "",
            transtype=transtype(server, session, self.lmtp),
        )
        return inbound.queue_id, await self._replies(envelope, inbound)

    async def _replies(self, envelope: SmtpEnvelope, inbound: Envelope) -> str:
        outcomes = await self.inbound.deliver(inbound)
        if self.lmtp:
            # One reply per accepted RCPT, in RCPT order (RFC 2033).
            replies = {o.recipient.key: o.reply for o in outcomes}
            return "\r\n".join(replies[key] for key in _rcpt_keys(envelope))
        stored = [o for o in outcomes if o.stored]
        if stored:
            return stored[0].reply
        return outcomes[0].reply if outcomes else "554 5.5.1 No valid recipients"


class SubmissionHandler(_Base):
    def __init__(self, submission: Submission, *, max_recipients: int):
        super().__init__(max_recipients)
        self.submission = submission

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: SmtpEnvelope, address: str, options: list[str]) -> str:
        user_id = cast(str, session.auth_data)  # set by the authenticator: the user id
        if not address:
            return "553 5.7.1 A sender address is required"
        try:
            await self.submission.check_sender(user_id, address)
        except SubmissionRefused as refusal:
            return refusal.reply
        except Exception:
            log.exception("checking a sender failed")
            return TEMPORARY
        return await super().handle_MAIL(server, session, envelope, address, options)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: SmtpEnvelope, address: str, options: list[str]) -> str:
        if self._too_many(envelope):
            return "452 4.5.3 Too many recipients"
        if not _plausible(address):
            return "553 5.1.3 Recipient address syntax is invalid"
        try:
            await self.submission.check_recipient_limit(cast(str, session.auth_data), len(envelope.rcpt_tos) + 1)
        except SubmissionRefused as refusal:
            return refusal.reply
        except Exception:
            log.exception("checking the recipient limit failed")
            return TEMPORARY
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: SmtpEnvelope) -> str:
        start = time.perf_counter()
        queue_id, reply = await self._data(server, session, envelope)
        log_transaction("submission", start, queue_id, session, envelope, reply)
        return reply

    async def _data(self, server: SMTP, session: Session, envelope: SmtpEnvelope) -> tuple[str | None, str]:
        data = envelope.original_content or b""
        if smuggling_attempt(data) or getattr(server, "lone_dot_in_data", False):
            return None, SMUGGLING
        peer = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer)
        try:
            result = await self.submission.submit(
                user_id=cast(str, session.auth_data),
                mail_from=envelope.mail_from or "",
                recipients=list(envelope.rcpt_tos),
                data=data,
                client_ip=str(peer),
                helo=session.host_name or "",
                transtype=transtype(server, session),
            )
        except SubmissionRefused as refusal:
            return None, refusal.reply
        except Exception:
            log.exception("submission failed")
            return None, TEMPORARY
        return result.queue_id, f"250 2.0.0 Ok: queued as {result.queue_id or 'local'}"


def log_transaction(door: str, start: float, queue_id: str | None, session: Session, envelope: SmtpEnvelope, reply: str) -> None:
    """One line per DATA transaction (queue id, sender, recipients, size, result
    codes), its latency and the accepted-messages counter."""
    m = metrics.M
    m.smtp_duration(door).observe(time.perf_counter() - start)
    codes = [line[:3] for line in reply.split("\r\n")]
    if "250" in codes:
        m.accepted(door).inc()
    if not log_transactions.isEnabledFor(logging.INFO):
        return
    size = len(envelope.original_content or b"")
    peer = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer)
    result = ",".join(codes)
    log_transactions.info(
        "%s %s from=<%s> to=%s size=%d result=%s ip=%s",
        door,
        queue_id or "-",
        envelope.mail_from or "",
        ",".join(f"<{r}>" for r in envelope.rcpt_tos),
        size,
        result,
        peer,
        extra={
            "door": door,
            "queue_id": queue_id,
            "mail_from": envelope.mail_from or "",
            "rcpt": list(envelope.rcpt_tos),
            "size": size,
            "result": result,
            "ip": peer,
        },
    )


def _fate(recipient: Recipient) -> tuple[Any, ...] | None:
    """Recipients with the same fate at DATA: local copies (stored in one commit), or
    replies through one alias (the same checks decide them). None: alone."""
    if isinstance(recipient, LocalRecipient):
        return ("local",)
    if isinstance(recipient, ReverseAliasRecipient):
        return ("reply", recipient.alias_id)
    return None


def _reverse_path(envelope: SmtpEnvelope) -> str:
    """The envelope sender, "" for the null reverse-path."""
    mail_from = envelope.mail_from or ""
    return "" if mail_from == NULL_SENDER else mail_from


def _rcpt_keys(envelope: SmtpEnvelope) -> list[str]:
    """The recipients' keys, one per RCPT answered 250 (duplicates included)."""
    found = getattr(envelope, "postern_rcpt_keys", None)
    if found is None:
        found = []
        envelope.postern_rcpt_keys = found  # type: ignore[attr-defined]
    return found


def _plausible(address: str) -> bool:
    try:
        normalised(address)
    except InvalidInput:
        return False
    return True
