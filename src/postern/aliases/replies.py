"""Replies through reverse aliases (DESIGN.md, "How mail flows" 4).

A mailbox of an alias replies to a contact by writing to the contact's reverse alias.
The reply is accepted only from one of the alias's mailboxes:

* by MX (``deliver_reply``): the envelope sender and the header From are that
  mailbox, SPF did not fail for it, DMARC (or an aligned DKIM signature that failed
  with nothing aligned passing) does not show the From forged, and when the mailbox
  has ``require_reply_authentication``, SPF passed or an aligned DKIM signature did;
* by authenticated submission (``prepare_submission`` then ``send_prepared``): the
  user owns the alias, or sends from a hosted address of theirs that is one of its
  mailboxes.

A disabled alias sends nothing. Anything refused gets 550 5.7.1 and the alias's
user a notification; postern never relays.

An accepted reply is rewritten (``mime.reply_rewrite``: From the alias, reverse
aliases in To and Cc their contacts, the mailbox's address nowhere), then queued for
the contact with the alias as envelope sender (the queue worker signs it with the
alias domain's DKIM key), in the transaction that records the ``reply`` activity and
the contact's ``last_email_sent_ms``. A contact whose address is hosted here (or an
alias here) gets it by local delivery.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from postern.accounts.addressing import normalise_address
from postern.aliases.contacts import is_reverse_alias_local
from postern.aliases.notifications import Notifications, quote
from postern.delivery.authentication import AuthenticationResults, organizational_domain
from postern.delivery.committer import GroupCommitter
from postern.delivery.outbound import OutboundQueue
from postern.delivery.reply_route import ReplyRefused
from postern.errors import InvalidInput
from postern.mime.reply_rewrite import ReplyIdentity, addresses_in, rewrite_reply
from postern.mime.senders import senders
from postern.storage import alias_activities as activity_store
from postern.storage import alias_routing as routing_store
from postern.storage import contacts as contact_store
from postern.storage import users as user_store
from postern.storage.database import Database
from postern.storage.ids import new_id, now_ms

if TYPE_CHECKING:
    from postern.delivery.router import ReverseAliasRecipient, Router

log = logging.getLogger("postern.aliases.replies")

TEMPORARY = "451 4.3.0 Temporary failure sending the reply, try again later"
UNKNOWN = "550 5.1.1 Recipient address rejected: no such user here"
LOOP = "554 5.4.6 Routing loop: a reverse alias cannot reply to another reverse alias"
# Messages larger than this are rewritten in a worker thread.
_THREAD_ABOVE = 256 * 1024


@dataclass(frozen=True, slots=True)
class _Refusal:
    reply: str  # the SMTP reply line
    reason: str  # for the user's notification (plain text)


DISABLED = _Refusal("550 5.7.1 This alias is disabled and cannot send mail", "the alias is disabled")
NOT_A_MAILBOX = _Refusal(
    "550 5.7.1 Only the alias's owner may reply through this address", "the sender is not one of the alias's mailboxes"
)
FROM_MISMATCH = _Refusal("550 5.7.1 The From header must name the sending mailbox", "the From header does not name the sending mailbox")
SPF_FAIL = _Refusal("550 5.7.1 SPF check failed for the sender", "the sender's SPF check failed")
FORGED = _Refusal("550 5.7.1 The From header failed DMARC or DKIM verification", "the From header looks forged (DMARC or DKIM failed)")
UNAUTHENTICATED = _Refusal(
    "550 5.7.1 The sender could not be authenticated: SPF or DKIM must pass for this mailbox",
    "the mailbox requires SPF or DKIM to pass and neither did",
)


@dataclass(frozen=True, slots=True)
class _Context:
    alias: Any  # aliases row
    contact: Any  # contacts row
    mailboxes: Sequence[Any]  # mailboxes rows of the alias
    display_name: str | None  # the alias's name, else its custom domain's

    def mailbox_with(self, key: str | None) -> Any | None:
        return next((m for m in self.mailboxes if key is not None and m.email_key == key), None)


@dataclass(frozen=True, slots=True)
class PreparedReply:
    """A reply by submission, authorised, waiting for its message (see Submission)."""

    context: _Context
    mailbox_id: int | None
    hidden: tuple[str, ...]


def _key(address: str | None) -> str | None:
    if not address:
        return None
    try:
        return normalise_address(address).key
    except InvalidInput:
        return None


def _forms(addresses: Iterable[str | None]) -> tuple[str, ...]:
    """Every form of each address (as given, displayed, key) that must not leak."""
    found: dict[str, None] = {}
    for address in addresses:
        if not address:
            continue
        found[address.lower()] = None
        try:
            normalised = normalise_address(address)
        except InvalidInput:
            continue
        found[normalised.display] = None
        found[normalised.key] = None
    return tuple(found)


class Replies:
    def __init__(
        self,
        *,
        db: Database,
        router: Router,
        inbound: Any,  # delivery.inbound.InboundDelivery (not imported: it imports us indirectly)
        outbound: OutboundQueue,
        committer: GroupCommitter,
        notifications: Notifications,
        hostname: str,
    ):
        self.db = db
        self.router = router
        self.inbound = inbound
        self.outbound = outbound
        self.committer = committer
        self.notifications = notifications
        self.hostname = hostname

    # By MX ---------------------------------------------------------------------------

    async def deliver_reply(
        self,
        *,
        data: bytes,
        mail_from: str,
        recipient: ReverseAliasRecipient,
        auth: AuthenticationResults | None,
        via: str,
        client_ip: str,
        helo: str,
    ) -> str:
        """A reply that came by MX (or LMTP) to a reverse alias: checked, rewritten and
        queued for the contact. Returns one SMTP reply line."""
        try:
            context = await self._context(recipient.user_id, recipient.alias_id, recipient.contact_id)
            if context is None:
                return UNKNOWN  # the alias or the contact went away since RCPT
            sender_key = _key(mail_from)
            refusal = self._check_mx(context, data, sender_key, auth)
            if refusal is not None:
                await self._refused(context, refusal, mail_from, via)
                return refusal.reply
            mailbox = context.mailbox_with(sender_key)
            header_from = addresses_in(data, ("from",))
            hidden = _forms([*(m.email for m in context.mailboxes), *(m.email_key for m in context.mailboxes), mail_from, *header_from])
            return await self._send(context, data, hidden=hidden, mailbox_id=mailbox.id if mailbox else None, message_mid=None)
        except Exception:
            log.exception("reply through reverse alias %s failed", recipient.key)
            return TEMPORARY

    def _check_mx(self, context: _Context, data: bytes, sender_key: str | None, auth: AuthenticationResults | None) -> _Refusal | None:
        if not context.alias.enabled:
            return DISABLED
        mailbox = context.mailbox_with(sender_key)
        if mailbox is None:
            return NOT_A_MAILBOX
        # The same reading of the author fields as authenticated submission's
        # (mime.senders): one From, naming the mailbox for every reader of it.
        found = senders(data)
        if found.from_fields != 1 or "from" in found.unreadable:
            return FROM_MISMATCH
        if any(_key(address) != sender_key for address in found.addresses.get("from", [])):
            return FROM_MISMATCH
        if auth is None:
            # Not evaluated (the operator turned the checks off, or they failed):
            # enough unless the mailbox demands a pass.
            return UNAUTHENTICATED if mailbox.require_reply_authentication else None
        sender_domain = (sender_key or "").rpartition("@")[2]
        if auth.spf.result == "fail":
            return SPF_FAIL
        if auth.dmarc.result == "fail":
            return FORGED
        from_domain = (auth.header_from_domain or sender_domain).lower()
        aligned = [s for s in auth.dkim if s.domain and organizational_domain(s.domain) == organizational_domain(from_domain)]
        spf_passed = auth.spf.result == "pass" and auth.spf.domain.lower() == sender_domain
        if any(s.result == "fail" for s in aligned) and not any(s.result == "pass" for s in aligned) and not spf_passed:
            return FORGED  # signed by its domain, and the signature does not verify
        if mailbox.require_reply_authentication and not (spf_passed or auth.dmarc.dkim_aligned or any(s.result == "pass" for s in aligned)):
            return UNAUTHENTICATED
        return None

    # By submission ------------------------------------------------------------------

    async def reverse_alias_of(self, rcpt: str) -> Any | None:
        """The contact whose reverse alias ``rcpt`` is, if it is one."""
        try:
            address = normalise_address(rcpt)
        except InvalidInput:
            return None
        if not is_reverse_alias_local(address.local):
            return None
        async with self.db.read() as conn:
            return await contact_store.by_reverse_alias(conn, address.key)

    async def prepare_submission(self, *, user_id: str, mail_from: str, contact: Any, data: bytes) -> PreparedReply:
        """Authorise a reply that ``user_id`` submitted to ``contact``'s reverse alias;
        raises ReplyRefused."""
        context = await self._context(contact.user_id, contact.alias_id, contact.id)
        if context is None:
            raise ReplyRefused(UNKNOWN)
        sender_key = _key(mail_from)
        async with self.db.read() as conn:
            hosted = [row.address for row in await user_store.list_user_addresses(conn, user_id)]
        hosted_keys = {_key(address) for address in hosted}
        mailbox = context.mailbox_with(sender_key)
        if context.alias.user_id != user_id and (mailbox is None or sender_key not in hosted_keys):
            await self._refused(context, NOT_A_MAILBOX, mail_from, "SUBMISSION")
            raise ReplyRefused(NOT_A_MAILBOX.reply)
        if not context.alias.enabled:
            raise ReplyRefused(DISABLED.reply)
        header_from = addresses_in(data, ("from", "sender"))
        hidden = _forms(
            [*(m.email for m in context.mailboxes), *(m.email_key for m in context.mailboxes), mail_from, *header_from, *hosted]
        )
        # The alias itself may be the header From (sending "as" it): never hidden.
        hidden = tuple(h for h in hidden if _key(h) != context.alias.email_key)
        return PreparedReply(context, mailbox.id if mailbox else None, hidden)

    async def send_prepared(self, prepared: PreparedReply, data: bytes, *, message_mid: str | None = None) -> str:
        """Rewrite and send a reply authorised by ``prepare_submission``; one SMTP reply."""
        try:
            return await self._send(prepared.context, data, hidden=prepared.hidden, mailbox_id=prepared.mailbox_id, message_mid=message_mid)
        except Exception:
            log.exception("reply by submission to contact %s failed", prepared.context.contact.id)
            return TEMPORARY

    # Shared --------------------------------------------------------------------------

    async def _context(self, user_id: str, alias_id: int, contact_id: int) -> _Context | None:
        async with self.db.read() as conn:
            contact = await contact_store.get(conn, user_id, contact_id)
            alias = await routing_store.alias_by_id(conn, alias_id)
            if contact is None or alias is None or contact.alias_id != alias.id or alias.user_id != user_id:
                return None
            mailboxes = await routing_store.mailboxes_of_alias(conn, alias.id)
            name = alias.name
            if not name and alias.custom_domain_id is not None:
                domain = await routing_store.custom_domain(conn, alias.custom_domain_id)
                name = domain.name if domain is not None else None
        return _Context(alias, contact, mailboxes, name or None)

    async def _refused(self, context: _Context, refusal: _Refusal, mail_from: str, via: str) -> None:
        alias, contact = context.alias, context.contact
        title = f"An email from your alias {alias.email} was refused"
        message = (
            f"Someone tried to send an email from your alias <b>{quote(alias.email)}</b> to <b>{quote(contact.email)}</b>"
            f" (sender <b>{quote(mail_from or '<>')}</b>, by {quote(via)}). It was refused: {quote(refusal.reason)}."
            " If it was you, send from one of the alias's mailboxes."
        )
        try:
            await self.notifications.notify(alias.user_id, title, message)
        except Exception:
            log.exception("notifying user %s of a refused reply failed", alias.user_id)

    async def _send(self, context: _Context, data: bytes, *, hidden: Sequence[str], mailbox_id: int | None, message_mid: str | None) -> str:
        alias, contact = context.alias, context.contact
        contacts = await self._contacts_named(alias, contact, data)
        identity = ReplyIdentity(alias=alias.email_key, alias_name=context.display_name, hidden=tuple(hidden), contacts=contacts)
        if len(data) > _THREAD_ABOVE:
            message = await asyncio.to_thread(rewrite_reply, data, identity)
        else:
            message = rewrite_reply(data, identity)
        target = await self._local_target(contact.email)
        if isinstance(target, str):
            return target  # refused
        if target is not None:
            reply = await self._deliver_locally(alias.email_key, target, message)
            if not reply.startswith("2"):
                return reply
            async with self.db.write() as conn:
                await self._record(conn, context, mailbox_id)
            return reply
        blob_key = await self.committer.mailstore.blobs.put(message)
        async with self.db.write() as conn:
            queue_id = await self.outbound.enqueue_in(
                conn,
                user_id=alias.user_id,
                mail_from=alias.email_key,
                recipients=[contact.email],
                blob_key=blob_key,
                size=len(message),
                message_mid=message_mid,
            )
            await self._record(conn, context, mailbox_id)
        self.outbound.wake()
        return f"250 2.0.0 Ok: reply queued as {queue_id}"

    async def _record(self, conn: Any, context: _Context, mailbox_id: int | None) -> None:
        when = now_ms()
        await activity_store.record(
            conn,
            user_id=context.alias.user_id,
            alias_id=context.alias.id,
            action="reply",
            contact_id=context.contact.id,
            mailbox_id=mailbox_id,
            created_ms=when,
        )
        await contact_store.set_fields(conn, context.contact.id, last_email_sent_ms=when)

    async def _contacts_named(self, alias: Any, contact: Any, data: bytes) -> dict[str, tuple[str, str | None]]:
        """Reverse alias -> (contact, name) for the envelope's contact and each reverse
        alias of this user in To and Cc."""
        found = {contact.reverse_alias.lower(): (contact.email, contact.name), contact.reverse_alias_key: (contact.email, contact.name)}
        keys = []
        for address in addresses_in(data, ("to", "cc", "reply-to")):
            try:
                normalised = normalise_address(address)
            except InvalidInput:
                continue
            if is_reverse_alias_local(normalised.local) and normalised.key not in found:
                keys.append((address.lower(), normalised.key))
        if keys:
            async with self.db.read() as conn:
                for written, key in keys[:50]:
                    other = await contact_store.by_reverse_alias(conn, key)
                    if other is not None and other.user_id == alias.user_id:
                        found[written] = found[key] = (other.email, other.name)
        return found

    async def _local_target(self, address: str) -> Any | str | None:
        """What the router makes of the contact's address: a recipient here (hosted or
        alias), None for anyone elsewhere, or a refusal line."""
        from postern.delivery.router import BounceRecipient, RecipientRefused, ReverseAliasRecipient

        try:
            target = await self.router.resolve(address)
        except RecipientRefused as refusal:
            # Unknown here: elsewhere. A hosted address that cannot take it now: say so.
            return refusal.reply if refusal.reply.startswith("4") else None
        if isinstance(target, (ReverseAliasRecipient, BounceRecipient)):
            return LOOP
        return target

    async def _deliver_locally(self, alias_key: str, target: Any, message: bytes) -> str:
        from postern.delivery.inbound import Envelope

        envelope = Envelope(
            alias_key, [target], message, source="LOCAL", client_ip="127.0.0.1", helo=self.hostname, transtype="LOCAL", queue_id=new_id()
        )
        outcomes = await self.inbound.deliver(envelope)
        return outcomes[0].reply if outcomes else TEMPORARY
