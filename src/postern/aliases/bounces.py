"""Bounces of forwarded mail.

A forward leaves with a signed VERP envelope sender,
``bounce+<activity id>-<mailbox id>+<signature>@<reverse alias domain>``: a remote
MX's delivery status notification comes back to that address (``Router`` accepts it
only with a valid signature), and so does our own queue's permanent failure of a
forwarded row (see ``OutboundQueue``). Either becomes a ``bounced`` activity on the
alias and a notification; enough bounces within a week disable the alias.

The signature is the first 16 hex digits of an HMAC-SHA256 (with the server key) of
the payload: short enough for a 64-character local part, lowercase so that it
survives case-folding on the way back, and without an expiry (a DSN may come days
later; a signature only proves that we made the address).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from postern.accounts.addressing import normalise_address
from postern.accounts.server_key import ServerKey
from postern.aliases.notifications import Notifications, quote

# The VERP forms live in delivery, whose router reads them; named here too for the alias room.
from postern.delivery.address_forms import VERP_PREFIX, BadVerpSignature, is_verp_local, parse_verp, verp_address  # noqa: F401
from postern.errors import InvalidInput
from postern.storage import alias_activities as activity_store
from postern.storage import alias_routing as routing_store
from postern.storage.database import Database
from postern.storage.ids import now_ms

log = logging.getLogger("postern.aliases")

WEEK_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class BounceOutcome:
    alias_id: int
    disabled: bool


class Bounces:
    def __init__(
        self, db: Database, notifications: Notifications, server_key: ServerKey, *, reverse_alias_domain: str, bounces_to_disable: int
    ):
        self.db = db
        self.notifications = notifications
        self.server_key = server_key
        self.reverse_alias_domain = reverse_alias_domain.lower()
        self.bounces_to_disable = bounces_to_disable

    async def queue_failure(self, mail_from: str, response: str) -> bool:
        """Our outbound queue failed a row for good: when the row is a forward (its
        envelope sender one of our VERP addresses), record the bounce and say True."""
        local, _, domain = mail_from.rpartition("@")
        if domain.lower() != self.reverse_alias_domain or not is_verp_local(local.lower()):
            await self._reply_failed(mail_from, response)
            return False
        try:
            activity_id, mailbox_id = parse_verp(self.server_key, local.lower())
        except BadVerpSignature:
            return False
        await self.bounced(activity_id=activity_id, mailbox_id=mailbox_id, reason=response)
        return True

    async def _reply_failed(self, mail_from: str, response: str) -> None:
        """A reply (or mail sent as an alias) failed for good: its user hears it in a
        notification, since an alias user's own mailbox is elsewhere (the bounce
        report still goes to the hosted INBOX, as for any sent mail)."""
        try:
            key = normalise_address(mail_from).key
        except InvalidInput:
            return
        async with self.db.read() as conn:
            alias = await routing_store.alias_by_key(conn, key)
        if alias is None:
            return
        await self.notifications.notify(
            alias.user_id,
            f"A message from your alias {alias.email} could not be delivered",
            f"<p>A message you sent from your alias <b>{quote(alias.email)}</b> was refused for good by the recipient's "
            f"mail server.</p><p>Reason: {quote(response[:500])}</p>",
        )

    async def bounced(self, *, activity_id: int, mailbox_id: int, reason: str = "") -> BounceOutcome | None:
        """Record that the forward ``activity_id`` to ``mailbox_id`` bounced: a
        ``bounced`` activity, a notification, and the alias disabled when it bounced
        often enough this week. None when the forward's alias is gone."""
        async with self.db.write() as conn:
            forward = await activity_store.get(conn, activity_id)
            if forward is None:
                return None
            alias = await routing_store.alias_by_id(conn, forward.alias_id)
            if alias is None:
                return None
            mailbox = await routing_store.mailbox_by_id(conn, alias.user_id, mailbox_id)
            mailbox_email = mailbox.email if mailbox is not None else "(a removed mailbox)"
            now = now_ms()
            await activity_store.record(
                conn,
                user_id=alias.user_id,
                alias_id=alias.id,
                action="bounced",
                contact_id=forward.contact_id,
                mailbox_id=mailbox.id if mailbox is not None else None,
                created_ms=now,
            )
            detail = f"<p>Reason: {quote(reason[:500])}</p>" if reason else ""
            await self.notifications.notify(
                alias.user_id,
                f"Mail to your mailbox {mailbox_email} from alias {alias.email} bounced",
                f"<p>A message sent to your alias <b>{quote(alias.email)}</b> could not be forwarded to your mailbox "
                f"<b>{quote(mailbox_email)}</b>: the mailbox's mail server refused it.</p>{detail}",
                conn=conn,
            )
            disabled = False
            if alias.enabled:
                recent = await activity_store.count_since(conn, alias.id, "bounced", now - WEEK_MS)
                if recent >= self.bounces_to_disable:
                    await routing_store.set_alias_enabled(conn, alias.id, False)
                    disabled = True
                    await self.notifications.notify(
                        alias.user_id,
                        f"Alias {alias.email} has been disabled",
                        f"<p>Mail forwarded from your alias <b>{quote(alias.email)}</b> bounced {recent} times in the last 7 days, "
                        "so the alias has been disabled. Enable it again once your mailboxes accept mail.</p>",
                        conn=conn,
                    )
        if disabled:
            log.info("alias %s disabled after %d bounces", alias.id, self.bounces_to_disable)
        return BounceOutcome(alias.id, disabled)
