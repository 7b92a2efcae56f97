"""Keyset cursors for the admin API's ``next``/``previous`` paging.

A cursor names the sort key of the row it continues from, so fetching a page deep in a
folder costs the same index seek as the first one. Cursors are opaque to clients:
base64url of a small JSON document.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from postern.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class Cursor:
    direction: Literal["next", "previous"]
    key: tuple[Any, ...]


def encode_cursor(key: tuple[Any, ...]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(key))).decode().rstrip("=")


def decode_cursor(value: str, direction: Literal["next", "previous"], field: str, types: tuple[type, ...]) -> Cursor:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        key = orjson.loads(raw)
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise InvalidInput(f"{field} is not a valid cursor", field=field) from None
    if (
        not isinstance(key, list)
        or len(key) != len(types)
        or not all(isinstance(v, t) and not isinstance(v, bool) for v, t in zip(key, types))
    ):
        raise InvalidInput(f"{field} is not a valid cursor", field=field)
    return Cursor(direction, tuple(key))


@dataclass(slots=True)
class Page:
    rows: list[Any]
    next_cursor: str | None
    previous_cursor: str | None


def page_from_rows(rows: list[Any], limit: int, cursor: Cursor | None, key_of: Any) -> Page:
    """Turn ``limit + 1`` fetched rows into a page with its cursors.

    Rows fetched for a ``previous`` cursor arrive in reverse order and are put back.
    Coming from a ``next`` cursor there is a page before this one, and coming from a
    ``previous`` cursor there is one after it, without asking the database again.
    """
    has_more = len(rows) > limit
    rows = rows[:limit]
    backwards = cursor is not None and cursor.direction == "previous"
    if backwards:
        rows.reverse()
    has_next = (not backwards and has_more) or backwards
    has_previous = (backwards and has_more) or (cursor is not None and not backwards)
    if not rows:
        return Page(rows, None, None)
    return Page(
        rows,
        encode_cursor(key_of(rows[-1])) if has_next else None,
        encode_cursor(key_of(rows[0])) if has_previous else None,
    )
