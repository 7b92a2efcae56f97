"""One proof for every address: which addresses are a user's.

An address is a user's when it is one of their hosted addresses, one of their
aliases, one of their verified mailboxes (the user API's forwarding targets, proven by
a mailed code), or an external address they proved by reading a token mailed to it (an
email validation session, see ``sessions.py``). Other rooms ask here, e.g. before a
remote identity may send with an address as From::

    from postern.verification.ownership import address_is_proven
    if not await address_is_proven(user_id, "me@example.org", db=runtime.db): ...

or through the runtime's ``Ownership`` (``runtime.ownership.address_is_proven(user_id,
address)``).
"""

from __future__ import annotations

from dataclasses import dataclass

from postern.accounts.addressing import normalise_address
from postern.errors import InvalidInput
from postern.storage import validation_sessions as store
from postern.storage.database import Database

# How an address was proven.
HOSTED = "hosted"  # a hosted address of the user (the operator gave it)
ALIAS = "alias"  # one of the user's aliases
MAILBOX = "mailbox"  # a verified mailbox of the user API (a mailed code)
EMAIL_TOKEN = "email_token"  # a token mailed to it was submitted back


@dataclass(frozen=True, slots=True)
class ProvenAddress:
    address: str  # as displayed (Unicode domain)
    key: str  # normalised (ASCII domain)
    method: str  # HOSTED, ALIAS, MAILBOX or EMAIL_TOKEN
    proven_ms: int


def address_key(address: str) -> str | None:
    """The normalised form of ``address``, or None when it is not an address."""
    try:
        return normalise_address(address).key
    except InvalidInput:
        return None


async def proven_addresses(user_id: str, *, db: Database) -> list[ProvenAddress]:
    """Every address of the user, each once (the first way it was proven wins:
    hosted, alias, mailbox, then a validation session), by address."""
    async with db.read() as conn:
        rows = await store.every_proof(conn, user_id)
    seen: dict[str, ProvenAddress] = {}
    for row in rows:
        if row.address_key not in seen:
            seen[row.address_key] = ProvenAddress(row.address, row.address_key, row.method, int(row.proven_ms))
    return sorted(seen.values(), key=lambda p: p.key)


async def address_is_proven(user_id: str, address: str, *, db: Database) -> bool:
    """Whether ``address`` (any spelling: case, Unicode or punycode domain) is the
    user's. Never raises for a malformed address: it is nobody's."""
    key = address_key(address)
    if key is None:
        return False
    async with db.read() as conn:
        return await store.holds_address(conn, user_id, key)


class Ownership:
    """The same questions, bound to one database (``runtime.ownership``)."""

    def __init__(self, db: Database):
        self.db = db

    async def proven_addresses(self, user_id: str) -> list[ProvenAddress]:
        return await proven_addresses(user_id, db=self.db)

    async def address_is_proven(self, user_id: str, address: str) -> bool:
        return await address_is_proven(user_id, address, db=self.db)
