"""Identifiers in the admin API's format: 24 lowercase hex characters.

Like a MongoDB ObjectId (which real WildDuck clients expect), the first 4 bytes are the
creation time in seconds, so ids sort roughly by creation; the other 8 are random.
"""

from __future__ import annotations

import re
import secrets
import time

_ID = re.compile(r"^[0-9a-f]{24}$")


def new_id() -> str:
    return f"{int(time.time()) & 0xFFFFFFFF:08x}{secrets.token_hex(8)}"


def is_id(value: str) -> bool:
    return bool(_ID.match(value))


def now_ms() -> int:
    return int(time.time() * 1000)
