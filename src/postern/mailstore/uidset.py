"""Message id selections: ``444``, ``444,445,446``, ``444:446`` or ``1:*`` (pure)."""

from __future__ import annotations

from postern.errors import InvalidInput

MAX_UID = 2**32 - 1
MAX_PARTS = 1000


def parse_uid_set(value: str, field: str = "message") -> list[tuple[int, int | None]]:
    """Parse into inclusive (start, end) ranges; an end of None stands for ``*``."""
    parts = value.split(",")
    if not value or len(parts) > MAX_PARTS:
        raise InvalidInput(f"{field} must be an id, a comma separated list or a range of ids", field=field)
    ranges: list[tuple[int, int | None]] = []
    for part in parts:
        start_text, sep, end_text = part.partition(":")
        start = _uid(start_text, field)
        if not sep:
            ranges.append((start, start))
            continue
        if end_text == "*":
            ranges.append((start, None))
            continue
        end = _uid(end_text, field)
        ranges.append((min(start, end), max(start, end)))
    return ranges


def _uid(text: str, field: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 10 or not 1 <= int(text) <= MAX_UID:
        raise InvalidInput(f"{field} must be an id, a comma separated list or a range of ids", field=field)
    return int(text)
