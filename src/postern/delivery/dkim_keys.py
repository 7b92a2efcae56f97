"""The DKIM keys postern signs outgoing mail with (``postern dkim DOMAIN``)."""

from __future__ import annotations

from typing import Any

from postern.accounts.addressing import normalise_domain
from postern.delivery.dkim_signing import DkimKey, dns_record_name, dns_record_value, generate_key
from postern.storage import dkim_keys as dkim_store
from postern.storage.database import Database
from postern.storage.ids import now_ms


async def create_key(db: Database, domain: str, *, selector: str | None = None, algorithm: str = "rsa-sha256") -> tuple[DkimKey, str, str]:
    """Make (or replace) the domain's key; returns it with the DNS record's name and value."""
    ascii_domain = normalise_domain(domain)[0]
    key = generate_key(ascii_domain, selector, algorithm)
    async with db.write() as conn:
        await dkim_store.put_key(conn, key.domain, key.selector, key.algorithm, key.private_key_pem.decode(), now_ms())
    return key, dns_record_name(key), dns_record_value(key)


def key_from_row(row: Any) -> DkimKey:
    """The signing key a ``dkim_keys`` row holds."""
    return DkimKey(domain=row.domain, selector=row.selector, private_key_pem=row.private_key_pem.encode(), algorithm=row.algorithm)


async def published_record(db: Database, domain: str) -> tuple[str, str] | None:
    """The DNS record (name, value) of the domain's key (ASCII form), or None."""
    async with db.read() as conn:
        row = await dkim_store.get_key(conn, domain)
    if row is None:
        return None
    key = key_from_row(row)
    return dns_record_name(key), dns_record_value(key)
