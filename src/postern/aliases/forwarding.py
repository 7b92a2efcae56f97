"""Alias forwards (DESIGN.md, "How mail flows" 3): mail to an alias goes on to its
mailboxes, From rewritten to the contact's reverse alias so that a reply goes back
through us, and the mailboxes never shown to the sender.

For each message to an alias:
1. A loop (our own X-Postern-Loop field naming this alias, more than MAX_RECEIVED
   Received fields, or an envelope sender that is one of our reverse alias or bounce
   addresses) is accepted and dropped: a ``block`` activity, nothing forwarded.
2. DMARC fail with p=reject or p=quarantine: not forwarded but stored in the alias
   owner's "Quarantine" folder, and the user is told (a ``block`` activity).
3. The contact (and its reverse alias) is found or made from the From field (or the
   envelope sender when From has no usable address); Reply-To, To and Cc addresses
   get contacts of the same alias too. A disabled alias or a blocked contact: a
   ``block`` activity, nothing forwarded (the sender hears 250 all the same).
4. The headers are rewritten (``mime.rewrite``; the body is kept byte for byte), and
   each mailbox gets the message: a hosted address by local delivery, any other by
   the outbound queue with a signed VERP envelope sender (``aliases.bounces``), in
   the transaction that records the ``forward`` activity.

A catch-all custom domain's alias is made here, at DATA, so that a refused message
never makes one. A temporary failure after it was made leaves it (the retry uses it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from postern.accounts.server_key import ServerKey
from postern.aliases import contacts as contact_service
from postern.aliases.bounces import is_verp_local, verp_address
from postern.aliases.notifications import Notifications, quote
from postern.delivery.authentication import AuthenticationResults
from postern.delivery.committer import GroupCommitter
from postern.delivery.filtering import Copy
from postern.delivery.outbound import OutboundQueue, Queued

# ``normalised`` is remembered (lru_cache): a header's addresses recur from message to message.
from postern.delivery.router import AliasRecipient, normalised
from postern.errors import Conflict, DomainError, InvalidInput, OverQuota, TooLarge
from postern.mailstore.service import AppendRequest, AppendResult
from postern.mime import header_writing, rewrite
from postern.storage import alias_activities as activity_store
from postern.storage import alias_routing as routing_store
from postern.storage import contacts as contact_store
from postern.storage.database import Database
from postern.storage.ids import now_ms
from postern.storage.shared_writes import WriteBatcher

log = logging.getLogger("postern.aliases")

LOOP_FIELD = "X-Postern-Loop"
ALIAS_FIELD = "X-Postern-Alias"
MAX_RECEIVED = 30
# To and Cc addresses that get reverse aliases; any beyond are dropped from the forward.
MAX_OTHER_CONTACTS = 50
QUARANTINE = "Quarantine"
TEMPORARY = "451 4.3.0 Temporary failure forwarding the message, try again later"


@dataclass(frozen=True, slots=True)
class _Party:
    name: str
    address: str


@dataclass
class _Plan:
    alias: Any  # with its owner's sender_format
    sender: Any | None  # the From contact
    reply_to: Any | None
    others: dict[str, Any]  # address key -> contact, for To and Cc
    mailboxes: list[Any]
    owners: list[str | None] = field(default_factory=list)  # per mailbox: the hosting user, or None
    new_contacts: list[_NewContact] = field(default_factory=list)  # not saved yet
    existing: dict[str, Any] = field(default_factory=dict)  # the parties' contacts that exist, by address key


@dataclass
class _NewContact:
    """A contact this forward makes; ``id`` is set once it is saved."""

    user_id: str
    alias_id: int
    email: str
    email_key: str
    name: str | None
    reverse_alias: str
    reverse_alias_key: str
    id: int | None = None
    block_forward: bool = False


class _ContactRace(Exception):
    """A contact this forward meant to make was made meanwhile by another."""


async def _save_new_contacts(conn: Any, plan: _Plan) -> None:
    """Insert the plan's new contacts (once), in the caller's transaction."""
    created = now_ms()
    for new in plan.new_contacts:
        if new.id is not None:
            continue
        contact_id = await contact_store.insert_returning_id(
            conn,
            {
                "user_id": new.user_id,
                "alias_id": new.alias_id,
                "email": new.email,
                "email_key": new.email_key,
                "name": new.name,
                "reverse_alias": new.reverse_alias,
                "reverse_alias_key": new.reverse_alias_key,
                "created_ms": created,
            },
        )
        if contact_id is None:
            raise _ContactRace()
        new.id = contact_id


class Forwarder:
    def __init__(
        self,
        *,
        db: Database,
        committer: GroupCommitter,
        outbound: OutboundQueue,
        server_key: ServerKey,
        notifications: Notifications,
        reverse_alias_domain: str,
    ):
        self.db = db
        self.committer = committer
        self.outbound = outbound
        self.server_key = server_key
        self.notifications = notifications
        self.reverse_alias_domain = reverse_alias_domain
        self._recorder = _ForwardRecorder(db, outbound, server_key, reverse_alias_domain)
        # Set by the runtime: the owners' filters and autoreplies for copies delivered
        # to their own addresses (delivery.filtering.LocalRules).
        self.filtering: Any = None

    async def forward(
        self, *, recipient: AliasRecipient, data: bytes, trace: bytes, mail_from: str, auth: AuthenticationResults | None, queue_id: str
    ) -> str:
        """Forward one message to one alias; returns the SMTP reply line for it.
        ``trace`` is the Received (and Authentication-Results) fields we add on top."""
        try:
            try:
                return await self._forward(recipient, data, trace, mail_from, auth, queue_id)
            except _ContactRace:
                # A concurrent message from the same new sender made the contact first:
                # nothing of this attempt was kept; the second finds the contact.
                return await self._forward(recipient, data, trace, mail_from, auth, queue_id)
        except Exception:
            log.exception("forwarding %s to alias %s failed", queue_id, recipient.key)
            return TEMPORARY

    async def _forward(
        self, recipient: AliasRecipient, data: bytes, trace: bytes, mail_from: str, auth: AuthenticationResults | None, queue_id: str
    ) -> str:
        parsed = rewrite.split(data)
        loop = self._is_loop(parsed, recipient.key, mail_from)
        quarantined = auth is not None and auth.dmarc.result == "fail" and auth.dmarc.policy in ("reject", "quarantine")
        sender = self._sender(parsed, mail_from)
        reply_to = self._first(rewrite.values(parsed, "reply-to"))
        others = self._others(parsed, recipient.key)
        alias_id = recipient.alias_id
        if alias_id is None:
            async with self.db.write() as conn:
                alias_id = await self._catch_all_alias(conn, recipient)
            if alias_id is None:
                return "550 5.1.1 Recipient address rejected: no such user here"
        # Reads first, in a read transaction: on SQLite the single writer is the
        # bottleneck of a busy server, and most forwards come from known contacts.
        plan: _Plan | None = None
        async with self.db.read() as conn:
            alias = await routing_store.alias_for_forward(conn, alias_id)
            if alias is None:
                return "550 5.1.1 Recipient address rejected: no such user here"
            # A disabled alias wants no mail at all: not even a quarantined copy.
            quarantined = quarantined and alias.enabled
            if not (loop or quarantined):
                plan = await self._plan(conn, alias, sender, reply_to, others)
        if plan is None or (plan.sender is not None and plan.sender.block_forward) or not alias.enabled or not plan.mailboxes:
            if plan is not None and not plan.mailboxes and alias.enabled and not (plan.sender is not None and plan.sender.block_forward):
                log.warning("alias %s has no verified mailbox: mail %s kept nowhere", alias.id, queue_id)

            async def record_block(conn: Any) -> None:
                if plan is not None:
                    await _save_new_contacts(conn, plan)
                contact_id = contact_id_of(plan.sender) if plan is not None else None
                await activity_store.record(conn, user_id=alias.user_id, alias_id=alias.id, action="block", contact_id=contact_id)

            await self.db.write_shared(record_block)
            if loop:
                log.info("mail %s to alias %s dropped: a mail loop", queue_id, alias.id)
                return f"250 2.0.0 Ok: {queue_id} accepted (mail loop, dropped)"
            if quarantined:
                return await self._quarantine(alias, sender, data, trace, auth, queue_id)
            return f"250 2.0.0 Ok: {queue_id} accepted"
        return await self._deliver(plan, parsed, data, trace, mail_from, queue_id)

    # Deciding -----------------------------------------------------------------------

    def _is_loop(self, parsed: rewrite.Split, alias_key: str, mail_from: str) -> bool:
        if any(_key_or_none(v.strip().strip("<>")) == alias_key for v in rewrite.values(parsed, LOOP_FIELD.lower())):
            return True
        if rewrite.count(parsed, "received") > MAX_RECEIVED:
            return True
        local, _, domain = mail_from.lower().rpartition("@")
        ours = domain == self.reverse_alias_domain.lower()
        return ours and (is_verp_local(local) or contact_service.is_reverse_alias_local(local))

    @staticmethod
    def _first(values: list[str]) -> _Party | None:
        for value in values:
            for name, address in rewrite.addresses(value):
                if _valid(address):
                    return _Party(name, address)
        return None

    def _sender(self, parsed: rewrite.Split, mail_from: str) -> _Party | None:
        found = self._first(rewrite.values(parsed, "from"))
        if found is None and mail_from and _valid(mail_from):
            return _Party("", mail_from)
        return found

    @staticmethod
    def _others(parsed: rewrite.Split, alias_key: str) -> list[_Party]:
        out: list[_Party] = []
        for value in rewrite.values(parsed, "to") + rewrite.values(parsed, "cc"):
            for name, address in rewrite.addresses(value):
                if _valid(address) and _key(address) != alias_key:
                    out.append(_Party(name, address))
        return out[:MAX_OTHER_CONTACTS]

    async def _catch_all_alias(self, conn: Any, recipient: AliasRecipient) -> int | None:
        domain_id = recipient.custom_domain_id
        if domain_id is None:
            return None
        mailbox_ids = await routing_store.catch_all_mailbox_ids(conn, domain_id, recipient.user_id)
        return await routing_store.create_catch_all_alias(
            conn,
            user_id=recipient.user_id,
            email=recipient.address,
            email_key=recipient.key,
            domain_id=domain_id,
            mailbox_ids=mailbox_ids,
            created_ms=now_ms(),
        )

    def _contact(self, plan: _Plan, party: _Party | None) -> Any | None:
        """The alias's contact for ``party``: the one that exists, or a new one whose
        reverse alias is chosen now (the rewrite needs it) and which is saved with
        the forward's activity (``_save_new_contacts``)."""
        if party is None:
            return None
        try:
            key = normalised(party.address).key
        except InvalidInput:
            return None
        found = plan.existing.get(key)
        if found is not None:
            return found
        for new in plan.new_contacts:
            if new.email_key == key:
                return new
        reverse_alias = contact_service.new_reverse_alias(self.reverse_alias_domain)
        new = _NewContact(
            user_id=plan.alias.user_id,
            alias_id=plan.alias.id,
            email=normalised(party.address).display,
            email_key=key,
            name=party.name or None,
            reverse_alias=reverse_alias,
            reverse_alias_key=normalised(reverse_alias).key,
        )
        plan.new_contacts.append(new)
        return new

    async def _plan(self, conn: Any, alias: Any, sender: _Party | None, reply_to: _Party | None, others: list[_Party]) -> _Plan:
        plan = _Plan(alias, None, None, {}, [])
        parties = [p for p in (sender, reply_to, *others) if p is not None]
        plan.existing = await contact_store.by_alias_and_emails(
            conn, alias.id, [k for k in map(_key_or_none, (p.address for p in parties)) if k]
        )
        plan.sender = self._contact(plan, sender)
        if not alias.enabled or (plan.sender is not None and plan.sender.block_forward):
            return plan
        if reply_to is not None:
            plan.reply_to = self._contact(plan, reply_to)
        for party in others:
            key = _key(party.address)
            if key not in plan.others:
                contact = self._contact(plan, party)
                if contact is not None:
                    plan.others[key] = contact
        for mailbox, owner in await routing_store.forward_targets(conn, alias):
            plan.mailboxes.append(mailbox)
            plan.owners.append(owner)
        return plan

    # Rewriting ----------------------------------------------------------------------

    def _rewritten(self, plan: _Plan, parsed: rewrite.Split, data: bytes) -> bytes:
        fmt = plan.alias.sender_format or "AT"

        def shown(contact: Any, name: str | None = None) -> str:
            return rewrite.sender_value(fmt, (name if name is not None else contact.name) or "", contact.email, contact.reverse_alias)

        replace: dict[str, str | None] = {}
        if plan.sender is not None:
            # The name this message gives (the contact keeps the one of its first mail).
            written = self._first(rewrite.values(parsed, "from"))
            name = written.name if written is not None and _key(written.address) == plan.sender.email_key else None
            replace["from"] = shown(plan.sender, name or None)
        else:
            replace["from"] = rewrite.mailbox("Unknown sender", f"no-reply@{self.reverse_alias_domain}")
        if rewrite.count(parsed, "reply-to"):
            replace["reply-to"] = shown(plan.reply_to) if plan.reply_to is not None else None
        for name in ("to", "cc"):
            if not rewrite.count(parsed, name):
                continue
            shown_list = []
            for value in rewrite.values(parsed, name):
                for display, address in rewrite.addresses(value):
                    key = _key(address) if _valid(address) else None
                    if key == plan.alias.email_key:
                        shown_list.append(rewrite.mailbox(display, plan.alias.email))
                    elif key in plan.others:
                        shown_list.append(shown(plan.others[key], display))
            replace[name] = ", ".join(shown_list) if shown_list else None
        if "to" not in replace or replace["to"] is None:
            replace["to"] = plan.alias.email  # a forward always says which alias it came to
        prepend = [(ALIAS_FIELD, plan.alias.email), (LOOP_FIELD, plan.alias.email)]
        return rewrite.rewrite(data, remove=rewrite.PATH_FIELDS | {ALIAS_FIELD.lower()}, replace=replace, prepend=prepend)

    # Delivering ---------------------------------------------------------------------

    async def _deliver(self, plan: _Plan, parsed: rewrite.Split, data: bytes, trace: bytes, mail_from: str, queue_id: str) -> str:
        message = trace + self._rewritten(plan, parsed, data)
        local = [(mailbox, owner) for mailbox, owner in zip(plan.mailboxes, plan.owners) if owner is not None]
        remote = [mailbox for mailbox, owner in zip(plan.mailboxes, plan.owners) if owner is None]
        delivered_locally = 0
        failure: DomainError | None = None
        if local and plan.new_contacts:
            # The local copies name the new reverse aliases: they exist before them.
            await self.db.write_shared(lambda conn: _save_new_contacts(conn, plan))
        if local:
            copies = [
                Copy(
                    owner,
                    mailbox.email,
                    AppendRequest(
                        owner,
                        None,
                        message,
                        prefix=header_writing.field("Delivered-To", header_writing.clean_address(mailbox.email)),
                        event={
                            "source": "ALIAS",
                            "origin": "",
                            "from": mail_from,
                            "to": [mailbox.email],
                            "queueId": queue_id,
                            "alias": plan.alias.email,
                        },
                        quota_grace=len(plan.mailboxes) > 1,
                    ),
                )
                for mailbox, owner in local
            ]
            if self.filtering is not None:
                await self.filtering.apply(copies, mail_from=mail_from, data=message, trace=b"", autoreplies=False)
            kept = [c for c in copies if not c.dropped]
            delivered_locally += len(copies) - len(kept)  # dropped by the owner's filter: done with
            results = await self.committer.append([c.request for c in kept])
            if self.filtering is not None:
                await self.filtering.queue_dropped(copies)
                self.filtering.wake_if(copies)
            for result in results:
                if isinstance(result, AppendResult):
                    delivered_locally += 1
                else:
                    failure = result
        if failure is not None and delivered_locally == 0 and not remote:
            return _failure_reply(failure)
        blob_key = await self.committer.mailstore.blobs.put(message) if remote else None

        # The contacts, the activity and the queue rows in one transaction, written
        # with the concurrent forwards' in bulk statements: one commit for a burst.
        await self._recorder.submit(_Forwarded(plan, remote, blob_key, len(message)))
        if remote:
            self.outbound.wake()
        return f"250 2.0.0 Ok: forwarded as {queue_id}"

    async def _quarantine(
        self, alias: Any, sender: _Party | None, data: bytes, trace: bytes, auth: AuthenticationResults | None, queue_id: str
    ) -> str:
        try:
            await self.committer.mailstore.create_folder(alias.user_id, QUARANTINE)
        except Conflict:
            pass
        event = {"source": "QUARANTINE", "origin": "", "to": [alias.email], "queueId": queue_id}
        results = await self.committer.append(
            [AppendRequest(alias.user_id, None, data, prefix=trace, folder_path=QUARANTINE, event=event, quota_grace=True)]
        )
        if not isinstance(results[0], AppendResult):
            return _failure_reply(results[0])
        who = sender.address if sender is not None else "an unknown sender"
        domain = auth.dmarc.domain if auth is not None else ""
        await self.notifications.notify(
            alias.user_id,
            f"An email sent to {alias.email} was quarantined",
            f"<p>An email from <b>{quote(who)}</b> to your alias <b>{quote(alias.email)}</b> failed the DMARC check of "
            f"<b>{quote(domain)}</b>, whose policy is to refuse such mail. It was not forwarded; it is in your "
            f"<b>{QUARANTINE}</b> folder.</p>",
        )
        return f"250 2.0.0 Ok: {queue_id} quarantined"


@dataclass
class _Forwarded:
    """A forward to record: its plan, the mailboxes it is queued to, its stored bytes."""

    plan: _Plan
    remote: list[Any]
    blob_key: str | None
    size: int


class _ForwardRecorder(WriteBatcher[_Forwarded]):
    """Records the forwards of concurrent deliveries together: new contacts, the
    ``forward`` activities and the queue rows of every forward waiting, in one
    transaction of a few statements per forward (bulk where the rows allow). A
    forward whose new contact another one made first (in this batch or elsewhere)
    is left out of the batch and told ``_ContactRace`` once the batch is committed:
    its second attempt then finds the contact."""

    def __init__(self, db: Database, outbound: OutboundQueue, server_key: ServerKey, reverse_alias_domain: str):
        super().__init__(db)
        self.outbound = outbound
        self.server_key = server_key
        self.reverse_alias_domain = reverse_alias_domain

    def _committed(self, items: Sequence[_Forwarded]) -> None:
        if any(forwarded.remote for forwarded in items):
            self.outbound.wake()

    async def _write_batch(self, conn: AsyncConnection, items: Sequence[_Forwarded]) -> list[Any]:
        lost = await self._store(conn, list(items))
        return [_ContactRace() if id(forwarded) in lost else None for forwarded in items]

    async def _store(self, conn: Any, batch: list[_Forwarded]) -> set[int]:
        lost: set[int] = set()
        kept: list[_Forwarded] = []
        for forwarded in batch:
            try:
                await _save_new_contacts(conn, forwarded.plan)
            except _ContactRace:
                lost.add(id(forwarded))
            else:
                kept.append(forwarded)
        activity_ids = await activity_store.record_many(
            conn,
            [
                activity_store.NewActivity(
                    f.plan.alias.user_id, f.plan.alias.id, "forward", contact_id_of(f.plan.sender), f.plan.mailboxes[0].id
                )
                for f in kept
            ],
        )
        queued = [
            Queued(
                user_id=f.plan.alias.user_id,
                mail_from=verp_address(self.server_key, activity_id, mailbox.id, self.reverse_alias_domain),
                recipients=[mailbox.email],
                blob_key=f.blob_key,
                size=f.size,
            )
            for f, activity_id in zip(kept, activity_ids)
            for mailbox in f.remote
            if f.blob_key is not None
        ]
        await self.outbound.enqueue_many_in(conn, queued)
        return lost


def contact_id_of(contact: Any | None) -> int | None:
    return int(contact.id) if contact is not None else None


def _valid(address: str) -> bool:
    try:
        normalised(address)
    except InvalidInput:
        return False
    return True


def _key_or_none(address: str) -> str | None:
    return _key(address) if _valid(address) else None


def _key(address: str) -> str:
    return normalised(address).key


def _failure_reply(error: DomainError) -> str:
    if isinstance(error, OverQuota):
        return "552 5.2.2 Mailbox full"
    if isinstance(error, TooLarge):
        return "552 5.3.4 Message too big for system"
    return TEMPORARY
