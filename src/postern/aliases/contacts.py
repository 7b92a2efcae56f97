"""Contacts and reverse aliases: who writes to an alias, and the address a mailbox
replies to so that the reply goes back to them from the alias.

A reverse alias is ``ra+<26 random letters>@<reverse alias domain>``: unguessable
(122 bits), so it cannot be enumerated, and it names one (alias, contact) pair.
"""

from __future__ import annotations

import secrets
import string
from email.utils import parseaddr

from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.accounts.addressing import normalise_address

# The reverse alias form lives in delivery, whose router reads it; named here too for the alias room.
from postern.delivery.address_forms import REVERSE_ALIAS_PREFIX, is_reverse_alias_local  # noqa: F401
from postern.errors import InvalidInput
from postern.mime import header_writing
from postern.storage import contacts as store
from postern.storage.ids import now_ms

_LETTERS = string.ascii_lowercase


def new_reverse_alias(domain: str) -> str:
    return f"{REVERSE_ALIAS_PREFIX}{''.join(secrets.choice(_LETTERS) for _ in range(26))}@{domain}"


def at_form(email: str) -> str:
    """``john@wick.com`` as ``john at wick.com``: shown to the user, never an address."""
    return email.replace("@", " at ")


def reverse_alias_display(contact: Row) -> str:
    """The reverse alias as the user API shows it: ``"Name | john at wick.com" <ra@d>``."""
    label = at_form(contact.email)
    if contact.name:
        label = f"{contact.name} | {label}"
    label = label.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{label}" <{contact.reverse_alias}>'


def parse_contact(value: str, field: str = "contact") -> tuple[str, str | None]:
    """(address, display name or None) of ``First Last <first@example.com>`` or a
    bare address; InvalidInput for anything else."""
    if header_writing.has_control(value):
        raise InvalidInput(f"{field} must not contain line breaks or control characters", field=field)
    name, address = parseaddr(value.strip())
    if not address or "@" not in address:
        raise InvalidInput(f"{field} must be an email address", field=field)
    normalise_address(address, field)  # checks it
    return address, (name.strip() or None)


async def find_or_create(
    conn: AsyncConnection, *, user_id: str, alias_id: int, email: str, name: str | None, reverse_alias_domain: str
) -> tuple[Row, bool]:
    """The alias's contact for ``email``, made (with its reverse alias) when new, in
    the caller's transaction: (contact, created). A concurrent maker of the same
    contact is harmless: the row that won is returned."""
    address = normalise_address(email, "contact")
    found = await store.by_alias_and_email(conn, alias_id, address.key)
    if found is not None:
        return found, False
    reverse_alias = new_reverse_alias(reverse_alias_domain)
    created = await store.insert_returning_id(
        conn,
        {
            "user_id": user_id,
            "alias_id": alias_id,
            "email": address.display,
            "email_key": address.key,
            "name": name,
            "reverse_alias": reverse_alias,
            "reverse_alias_key": normalise_address(reverse_alias).key,
            "created_ms": now_ms(),
        },
    )
    row = await store.by_alias_and_email(conn, alias_id, address.key)
    assert row is not None
    return row, created is not None
