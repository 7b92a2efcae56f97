"""Inbound routing: every recipient is resolved at RCPT, before any data is accepted.

An address of a user is accepted; anything else is refused on the spot with
550 5.1.1, so postern never relays and never has to bounce an unknown recipient
later. Later kinds of recipient (aliases, reverse aliases) are added here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from postern.accounts.addressing import NormalisedAddress, normalise_address
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


class RecipientRefused(Exception):
    """The SMTP reply that refuses a recipient, e.g. ``550 5.1.1 ...``."""

    def __init__(self, reply: str):
        super().__init__(reply)
        self.reply = reply


UNKNOWN = "550 5.1.1 Recipient address rejected: no such user here"


class Router:
    def __init__(self, db: Database):
        self.db = db
        self._reads = HotReads(db)

    async def resolve(self, rcpt: str, *, size: int = 0) -> LocalRecipient:
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
            raise RecipientRefused(UNKNOWN)
        if user.disabled:
            raise RecipientRefused("550 5.2.1 Mailbox disabled, not accepting messages")
        if user.storage_used + size > user.quota_allowed:
            raise RecipientRefused("452 4.2.2 Mailbox full, try again later")
        return LocalRecipient(address.display, address.key, user.id)
