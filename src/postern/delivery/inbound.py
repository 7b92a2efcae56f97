"""Delivery of mail received by SMTP (MX) or LMTP: into users' INBOXes, on to the
mailboxes of aliases (``aliases.forwarding``), back from a mailbox through a reverse
alias (``replies``), and the bounces of forwards (``aliases.bounces``)."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from postern.delivery.authentication import AuthenticationResults, authenticate
from postern.delivery.committer import GroupCommitter
from postern.delivery.dns import Resolver
from postern.delivery.filtering import Copy
from postern.delivery.router import (
    AliasRecipient,
    BounceRecipient,
    LocalRecipient,
    Recipient,
    ReverseAliasRecipient,
)
from postern.errors import DomainError, OverQuota, TooLarge
from postern.mailstore.service import AppendRequest, AppendResult
from postern.mime import header_writing
from postern.storage.ids import new_id

log = logging.getLogger("postern.delivery")

# A lone dot between line breaks of which one is not CRLF: what an SMTP smuggling
# attack hides in DATA, hoping that some server on the path ends the message there.
_LONE_DOT = re.compile(rb"(?:\r\n|\r|\n)\.(?:\r\n|\r|\n)")
# Control characters, and the lone surrogates that stand for undecodable bytes in
# SMTP arguments (aiosmtpd decodes them with surrogateescape).
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def strip_forged_results(data: bytes, authserv_id: str) -> bytes:
    """Remove Authentication-Results fields that claim to come from this server
    (RFC 8601 section 5): only the one postern adds itself may carry its name."""
    if data.startswith(b"\r\n"):
        return data  # no header section
    end = data.find(b"\r\n\r\n")
    head = data if end < 0 else data[: end + 2]
    if b"authentication-results" not in head.lower():
        return data
    # The whole field, unfolded or not: the authserv-id may follow a fold or a
    # comment, be quoted, and carry a version (RFC 8601 section 2.2).
    cfws = rb"(?:[ \t\r\n]|\([^()]*\))"
    name = re.escape(authserv_id.encode())
    ours = re.compile(
        rb"authentication-results[ \t]*:" + cfws + rb"*(?:" + name + rb'|"' + name + rb'")(?:' + cfws + rb"+[0-9]+)?" + cfws + rb"*(?:;|$)",
        re.IGNORECASE,
    )
    fields: list[list[bytes]] = []
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)
        else:
            fields.append([line])
    kept = b"".join(b"".join(f) for f in fields if not ours.match(b"".join(f)))
    return kept + (b"" if end < 0 else data[end + 2 :])


# A dot right after a line break; without one, _LONE_DOT cannot match. (For a
# two-byte literal starting with a byte as common as CR or LF, a regular expression
# scans a message faster than ``in``.)
_DOT_AFTER_LF = re.compile(rb"\n\.")
_DOT_AFTER_CR = re.compile(rb"\r\.")


def smuggling_attempt(data: bytes) -> bool:
    if _DOT_AFTER_LF.search(data) is None and _DOT_AFTER_CR.search(data) is None:
        return False  # no dot after a line break at all (most messages): no need to scan
    return any(match.group() != b"\r\n.\r\n" for match in _LONE_DOT.finditer(data))


def header_safe(value: str, limit: int = 256) -> str:
    """Client-supplied text (HELO, addresses) made safe to put in a header line."""
    return _UNSAFE.sub("?", value)[:limit]


@dataclass(frozen=True, slots=True)
class Envelope:
    mail_from: str
    recipients: Sequence[Recipient]
    data: bytes
    source: str  # "MX" or "LMTP"
    client_ip: str
    helo: str
    transtype: str  # SMTP, ESMTP, ESMTPS, ESMTPSA, LMTP ...
    queue_id: str = field(default_factory=new_id)


@dataclass(frozen=True, slots=True)
class Outcome:
    recipient: Recipient
    reply: str  # one SMTP reply line, e.g. "250 2.0.0 Ok: stored as ..."

    @property
    def stored(self) -> bool:
        return self.reply.startswith("2")


NO_REPLIES = "550 5.7.1 Replies through reverse aliases are not accepted here yet"
_DIAGNOSTIC = re.compile(rb"^Diagnostic-Code:[ \t]*([^\r\n]{0,500})", re.IGNORECASE | re.MULTILINE)


class InboundDelivery:
    def __init__(self, committer: GroupCommitter, resolver: Resolver, hostname: str, check_authentication: bool = True):
        self.committer = committer
        self.resolver = resolver
        self.hostname = hostname
        self.check_authentication = check_authentication
        # Set by the runtime: alias forwards (aliases.forwarding.Forwarder), bounces
        # of forwards (aliases.bounces.Bounces) and replies (aliases.replies.Replies).
        self.forwarder: Any = None
        self.bounces: Any = None
        self.replies: Any = None
        # Set by the runtime: filters and autoreplies (delivery.filtering.LocalRules).
        self.filtering: Any = None

    async def deliver(self, envelope: Envelope) -> list[Outcome]:
        """Store one copy per recipient; each recipient gets its own reply. A reply of
        2xx is given only once the copy is durable."""
        auth_header = b""
        auth_json = None
        results = None
        data = envelope.data
        if envelope.source == "MX":
            data = strip_forged_results(data, self.hostname)
        if envelope.source == "MX" and self.check_authentication:
            results = await self._authenticate(envelope)
            if results is not None:
                auth_header = results.header(self.hostname).encode("utf-8")
                auth_json = results.to_json()
        now = datetime.now(UTC)
        local = [r for r in envelope.recipients if isinstance(r, LocalRecipient)]
        replies: dict[int, str] = {}
        if local:
            for stored, reply in zip(local, await self._store_local(envelope, local, data, auth_header, auth_json, now)):
                replies[id(stored)] = reply
        for recipient in envelope.recipients:
            if not isinstance(recipient, LocalRecipient):
                replies[id(recipient)] = await self._deliver_other(envelope, recipient, data, auth_header, results, now)
        return [Outcome(r, replies[id(r)]) for r in envelope.recipients]

    async def _deliver_other(
        self, envelope: Envelope, recipient: Recipient, data: bytes, auth_header: bytes, auth: AuthenticationResults | None, now: datetime
    ) -> str:
        try:
            if isinstance(recipient, AliasRecipient):
                if self.forwarder is None:
                    return "451 4.3.0 Alias forwarding is not available, try again later"
                trace = self._received(envelope, recipient, now) + auth_header
                return await self.forwarder.forward(
                    recipient=recipient, data=data, trace=trace, mail_from=envelope.mail_from, auth=auth, queue_id=envelope.queue_id
                )
            if isinstance(recipient, ReverseAliasRecipient):
                if self.replies is None:
                    return NO_REPLIES
                return await self.replies.deliver_reply(
                    data=data,
                    mail_from=envelope.mail_from,
                    recipient=recipient,
                    auth=auth,
                    via=envelope.source,
                    client_ip=envelope.client_ip,
                    helo=envelope.helo,
                )
            if isinstance(recipient, BounceRecipient):
                if self.bounces is None:
                    return "451 4.3.0 Bounces are not handled now, try again later"
                if not _is_bounce(envelope.mail_from, data):
                    # An auto-reply or other mail to a forward's envelope sender: not a
                    # bounce, so it must not count toward disabling the alias.
                    return f"250 2.0.0 Ok: {envelope.queue_id} accepted (not a bounce, dropped)"
                found = _DIAGNOSTIC.search(data)
                reason = found.group(1).decode("utf-8", "replace").strip() if found else ""
                await self.bounces.bounced(activity_id=recipient.activity_id, mailbox_id=recipient.mailbox_id, reason=reason)
                return f"250 2.0.0 Ok: bounce recorded as {envelope.queue_id}"
        except Exception:
            log.exception("delivery of %s to %s failed", envelope.queue_id, recipient.key)
            return "451 4.3.0 Temporary failure, try again later"
        return "550 5.1.1 Recipient address rejected: no such user here"

    async def _store_local(
        self, envelope: Envelope, recipients: list[LocalRecipient], data: bytes, auth_header: bytes, auth_json: Any, now: datetime
    ) -> list[str]:
        copies = []
        for recipient in recipients:
            prefix = self._trace_headers(envelope, recipient, now) + auth_header
            event = {
                "source": envelope.source,
                "origin": envelope.client_ip,
                "originhost": header_safe(envelope.helo),
                "transtype": envelope.transtype,
                "from": envelope.mail_from,
                "to": [recipient.address],
                "queueId": envelope.queue_id,
            }
            if auth_json is not None:
                event["authentication"] = auth_json
            request = AppendRequest(
                recipient.user_id,
                None,
                data,
                prefix=prefix,
                event=event,
                quota_grace=envelope.source == "MX" and len(envelope.recipients) > 1,
            )
            # A forward copy keeps this recipient's Received line (not its Return-Path).
            copies.append(Copy(recipient.user_id, recipient.address, request, trace=prefix[max(prefix.find(b"Received: "), 0) :]))
        try:
            if self.filtering is not None:
                await self.filtering.apply(copies, mail_from=envelope.mail_from, data=data, trace=b"")
            kept = [c for c in copies if not c.dropped]
            results_ = await self.committer.append([c.request for c in kept])
            if self.filtering is not None:
                await self.filtering.queue_dropped(copies)
                self.filtering.wake_if(copies)
        except Exception:
            log.exception("delivery of %s failed", envelope.queue_id)
            return ["451 4.3.0 Temporary failure storing the message, try again later" for _ in recipients]
        outcome = {id(c): r for c, r in zip(kept, results_)}
        return [
            f"250 2.0.0 Ok: {envelope.queue_id} dropped by a filter" if c.dropped else _reply(outcome[id(c)], envelope.queue_id)
            for c in copies
        ]

    async def _authenticate(self, envelope: Envelope) -> AuthenticationResults | None:
        try:
            return await authenticate(
                self.resolver, envelope.data, client_ip=envelope.client_ip, helo=envelope.helo, mail_from=envelope.mail_from
            )
        except Exception:
            # The checks inform the user and the alias rules; a failure to run them
            # must not lose the message.
            log.exception("SPF/DKIM/DMARC evaluation failed for %s", envelope.queue_id)
            return None

    def _trace_headers(self, envelope: Envelope, recipient: LocalRecipient, now: datetime) -> bytes:
        lines = [
            f"Return-Path: <{header_safe(envelope.mail_from, 512)}>",
            f"Delivered-To: {header_writing.clean_address(recipient.address)}",
        ]
        return ("\r\n".join(lines) + "\r\n").encode("utf-8") + self._received(envelope, recipient, now)

    def _received(self, envelope: Envelope, recipient: Recipient, now: datetime) -> bytes:
        helo = header_safe(envelope.helo) or "unknown"
        return (
            f"Received: from {helo} ([{envelope.client_ip}])\r\n\tby {self.hostname} (postern) with {envelope.transtype}"
            f" id {envelope.queue_id}\r\n\tfor <{recipient.address}>; {_received_date(now)}\r\n"
        ).encode()


@functools.lru_cache(maxsize=4)
def _date_of_second(second: int) -> str:
    return format_datetime(datetime.fromtimestamp(second, UTC))


def _received_date(now: datetime) -> str:
    """The Received field's date, to the second (RFC 5322 has no finer), made once
    per second rather than once per message."""
    return _date_of_second(int(now.timestamp()))


_REPORT = re.compile(rb"report-type[ \t]*=[ \t]*\"?delivery-status", re.IGNORECASE)
_AUTO_REPLIED = re.compile(rb"^auto-submitted:[ \t]*auto-replied", re.IGNORECASE | re.MULTILINE)


def _is_bounce(mail_from: str, data: bytes) -> bool:
    """A delivery status notification (RFC 3464), or mail from the null sender that
    is no auto-reply (RFC 3834)."""
    head = data[:65536]
    if _REPORT.search(head):
        return True
    return not mail_from and not _AUTO_REPLIED.search(head.split(b"\r\n\r\n", 1)[0])


def _reply(result: AppendResult | DomainError, queue_id: str) -> str:
    if isinstance(result, AppendResult):
        return f"250 2.0.0 Ok: stored as {queue_id}"
    if isinstance(result, OverQuota):
        return "552 5.2.2 Mailbox full"
    if isinstance(result, TooLarge):
        return "552 5.3.4 Message too big for system"
    return "451 4.3.0 Temporary failure storing the message, try again later"
