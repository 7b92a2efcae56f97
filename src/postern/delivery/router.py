"""Inbound routing: every recipient is resolved at RCPT, before any data is accepted.

One place decides each recipient: a hosted address (``LocalRecipient``), an alias
(``AliasRecipient``, also for a disabled alias: it is accepted and counted as a
block), a reverse alias (``ReverseAliasRecipient``, for a mailbox's reply), a signed
VERP bounce address of a forward (``BounceRecipient``), or an unknown address on a
verified custom domain with catch-all (an ``AliasRecipient`` whose alias is made at
DATA, so that a refused message never makes one). Anything else is refused on the
spot with 550 5.1.1, so postern never relays and never has to bounce an unknown
recipient later. Each lookup is one indexed read (see ``hot_reads``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from postern.accounts.addressing import NormalisedAddress, normalise_address, normalise_domain
from postern.accounts.server_key import ServerKey
from postern.delivery.address_forms import BadVerpSignature, is_reverse_alias_local, is_verp_local, parse_verp
from postern.errors import InvalidInput
from postern.storage.database import Database
from postern.storage.hot_reads import HotReads


@functools.lru_cache(maxsize=4096)
def normalised(address: str) -> NormalisedAddress:
    """``normalise_address`` (a pure function, its IDNA step the costly part) for the
    addresses of SMTP commands, remembered: a mail server sees the same few again
    and again. Raises InvalidInput as it does (refusals are not remembered)."""
    return normalise_address(address)


@dataclass(frozen=True, slots=True)
class LocalRecipient:
    address: str  # as the user's address is displayed
    key: str  # normalised (ASCII domain)
    user_id: str


@dataclass(frozen=True, slots=True)
class AliasRecipient:
    address: str
    key: str
    user_id: str
    # None for the first mail to a catch-all custom domain's address: the alias is
    # made at DATA (in ``custom_domain_id``), once the message is accepted.
    alias_id: int | None
    custom_domain_id: int | None = None


@dataclass(frozen=True, slots=True)
class ReverseAliasRecipient:
    address: str
    key: str
    user_id: str
    alias_id: int
    contact_id: int


@dataclass(frozen=True, slots=True)
class BounceRecipient:
    """A VERP address of a forward (see ``aliases.bounces``), its signature checked."""

    address: str
    key: str
    user_id: str
    alias_id: int
    activity_id: int
    mailbox_id: int


Recipient = LocalRecipient | AliasRecipient | ReverseAliasRecipient | BounceRecipient


class RecipientRefused(Exception):
    """The SMTP reply that refuses a recipient, e.g. ``550 5.1.1 ...``."""

    def __init__(self, reply: str):
        super().__init__(reply)
        self.reply = reply


UNKNOWN = "550 5.1.1 Recipient address rejected: no such user here"
DISABLED = "550 5.2.1 Mailbox disabled, not accepting messages"
BAD_BOUNCE = "550 5.7.1 Recipient address rejected: not a bounce address of this server"


class Router:
    def __init__(self, db: Database, *, server_key: ServerKey | None = None, reverse_alias_domain: str | None = None):
        self.db = db
        self._reads = HotReads(db)
        # Bounce (VERP) addresses are recognised only with the key that signs them.
        self.server_key = server_key
        self.reverse_alias_domain = normalise_domain(reverse_alias_domain)[0] if reverse_alias_domain else None

    async def resolve(self, rcpt: str, *, size: int = 0) -> Recipient:
        # Only a plain dot-atom address can name a user: quoted local parts ("a@b"@here),
        # source routes that survived parsing and %-hacks are simply not addresses of
        # anyone here, and get the same answer as any unknown address.
        if not rcpt or "%" in rcpt or "!" in rcpt or rcpt.startswith("@"):
            raise RecipientRefused(UNKNOWN)
        try:
            address = normalised(rcpt)
        except InvalidInput:
            raise RecipientRefused(UNKNOWN) from None
        # One indexed read, in the event loop's thread on SQLite (see hot_reads).
        user = await self._reads.address_owner(address.key)
        if user is None:
            return await self._alias_kinds(address)
        if user.disabled:
            raise RecipientRefused(DISABLED)
        if user.storage_used + size > user.quota_allowed:
            raise RecipientRefused("452 4.2.2 Mailbox full, try again later")
        return LocalRecipient(address.display, address.key, user.id)

    async def _alias_kinds(self, address: NormalisedAddress) -> Recipient:
        alias = await self._reads.alias_target(address.key)
        if alias is not None:
            if alias.user_disabled:
                raise RecipientRefused(DISABLED)
            # A disabled alias still takes the mail (250): it is counted as a block.
            return AliasRecipient(address.display, address.key, alias.user_id, alias.id)
        domain = address.key.rpartition("@")[2]
        if is_reverse_alias_local(address.local):
            contact = await self._reads.reverse_alias_target(address.key)
            if contact is None:
                raise RecipientRefused(UNKNOWN)
            if contact.user_disabled:
                raise RecipientRefused(DISABLED)
            return ReverseAliasRecipient(address.display, address.key, contact.user_id, contact.alias_id, contact.contact_id)
        if is_verp_local(address.local) and domain == self.reverse_alias_domain and self.server_key is not None:
            try:
                activity_id, mailbox_id = parse_verp(self.server_key, address.local)
            except BadVerpSignature:
                raise RecipientRefused(BAD_BOUNCE) from None
            forward = await self._reads.activity_target(activity_id)
            if forward is None:
                raise RecipientRefused(UNKNOWN)  # the alias (and its activities) went away
            return BounceRecipient(address.display, address.key, forward.user_id, forward.alias_id, activity_id, mailbox_id)
        catch_all = await self._reads.catch_all_target(domain, address.key)
        if catch_all is not None and not catch_all.deleted:
            if catch_all.user_disabled:
                raise RecipientRefused(DISABLED)
            return AliasRecipient(address.display, address.key, catch_all.user_id, None, catch_all.domain_id)
        raise RecipientRefused(UNKNOWN)
