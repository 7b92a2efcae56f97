"""The forms of the addresses that delivery routes for the alias room: reverse aliases
(``ra+<26 letters>@<reverse alias domain>``) and the signed VERP return paths of
forwards (``bounce+<activity id>-<mailbox id>+<signature>@<reverse alias domain>``).

The router recognises them at RCPT; ``aliases`` makes them (``aliases.contacts``,
``aliases.bounces``) and imports them from here, so that the arrow points from aliases
to delivery. The signature is the first 16 hex digits of an HMAC-SHA256 (with the
server key) of the payload: short enough for a 64-character local part, lowercase so
that it survives case-folding on the way back, and without an expiry (a DSN may come
days later; a signature only proves that we made the address).
"""

from __future__ import annotations

import hmac
import re

from postern.accounts.server_key import ServerKey
from postern.delivery.outbound import FORWARD_SENDER_PREFIX

REVERSE_ALIAS_PREFIX = "ra+"
VERP_PREFIX = FORWARD_SENDER_PREFIX  # the queue leaves these out of the sending limit
_PAYLOAD = re.compile(r"^([0-9]{1,18})-([0-9]{1,18})$")
_PURPOSE = "verp"


def is_reverse_alias_local(local: str) -> bool:
    return local.startswith(REVERSE_ALIAS_PREFIX)


class BadVerpSignature(Exception):
    pass


def is_verp_local(local: str) -> bool:
    return local.startswith(VERP_PREFIX)


def _signature(server_key: ServerKey, payload: str) -> str:
    return server_key.digest(payload, purpose=_PURPOSE)[:16]


def verp_address(server_key: ServerKey, activity_id: int, mailbox_id: int, domain: str) -> str:
    payload = f"{activity_id}-{mailbox_id}"
    return f"{VERP_PREFIX}{payload}+{_signature(server_key, payload)}@{domain}"


def parse_verp(server_key: ServerKey, local: str) -> tuple[int, int]:
    """(activity id, mailbox id) of a VERP local part; BadVerpSignature when it is
    malformed or not signed by this server."""
    if not is_verp_local(local):
        raise BadVerpSignature("not a VERP address")
    payload, plus, signature = local[len(VERP_PREFIX) :].rpartition("+")
    match = _PAYLOAD.match(payload)
    if not plus or match is None or not hmac.compare_digest(signature.lower().encode(), _signature(server_key, payload).encode()):
        raise BadVerpSignature("bad signature")
    return int(match.group(1)), int(match.group(2))
