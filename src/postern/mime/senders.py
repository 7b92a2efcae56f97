"""Who a message says it is from, as every reader of it would see it (pure functions
over bytes; nothing here raises).

A check of the sender (authenticated submission, a reply through a reverse alias)
must see what every consumer of the message will show: the fields are found by the
program's one header scanner (``header_fields``: the obsolete ``From :`` is a From),
and each value is read by every address parser that postern or a receiver uses — the
IMAP ENVELOPE's, the summaries' (the APIs), and the standard library's (DMARC and
most of the world). An address any of them finds is an address the message claims.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.utils import getaddresses

from . import header_fields
from .addresses import _parse_addresses
from .charsets import decode_words
from .imap_envelope import address_list

__all__ = ["SENDER_FIELDS", "Senders", "senders"]

#: The fields that name who sent a message (RFC 5322 3.6.2 and 3.6.6).
SENDER_FIELDS = ("from", "sender", "resent-from", "resent-sender")


@dataclass(frozen=True, slots=True)
class Senders:
    from_fields: int  # how many From fields (any spelling) the header has
    # Field name -> every address any reader finds in those fields, in order, once.
    addresses: dict[str, list[str]] = field(default_factory=dict)
    # Field names of which a value gives some reader no address at all.
    unreadable: frozenset[str] = frozenset()

    def all(self) -> list[str]:
        return list(dict.fromkeys(a for found in self.addresses.values() for a in found))


def _readings(value: bytes) -> list[list[str]]:
    """The addresses of one field's value, as each parser reads them."""
    text = value.decode("utf-8", "replace")
    stdlib = [address for _, address in getaddresses([text]) if address]
    decoded = [info.address for info in _parse_addresses(decode_words(text)) if info.address]
    envelope = []
    for entry in address_list(value):
        if entry.mailbox is not None and entry.host is not None:
            envelope.append(entry.mailbox.decode("utf-8", "replace") + "@" + entry.host.decode("utf-8", "replace"))
    return [stdlib, decoded, envelope]


def senders(raw: bytes) -> Senders:
    """The sender fields of ``raw`` as every reader sees them."""
    found, _ = header_fields.scan(raw)
    addresses: dict[str, list[str]] = {}
    unreadable: set[str] = set()
    from_fields = 0
    for item in found:
        name = item.name.decode("latin-1")
        if name not in SENDER_FIELDS:
            continue
        if name == "from":
            from_fields += 1
        readings = _readings(header_fields.unfold(raw[item.value_start : item.end]))
        if any(not reading for reading in readings):
            unreadable.add(name)
        bucket = addresses.setdefault(name, [])
        for reading in readings:
            for address in reading:
                if address not in bucket:
                    bucket.append(address)
    return Senders(from_fields, addresses, frozenset(unreadable))
