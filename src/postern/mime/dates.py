"""The Date field: RFC 5322's form read straight from the bytes, anything else through
the email package, never raising; and SENT*'s date for IMAP."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime, parsedate_tz

from .charsets import _bytes_to_str, _unfold
from .message_ids import _COMMENT_RE

# ---------------------------------------------------------------------------
# dates
# ---------------------------------------------------------------------------

_MIN_DATE = datetime(1970, 1, 2, tzinfo=UTC)
_MAX_DATE = datetime(2200, 1, 1, tzinfo=UTC)


# The Date field as RFC 5322 writes it (what nearly every mailer sends), with an
# optional zone comment: read straight from the bytes, with the same result as the
# general path below, which takes everything else.
_PLAIN_DATE = re.compile(
    rb"[ \t]*(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),[ \t]*)?([0-9]{1,2})[ \t]+"
    rb"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[ \t]+([0-9]{4})[ \t]+"
    rb"([0-9]{2}):([0-9]{2}):([0-9]{2})[ \t]+([+-])([0-9]{2})([0-9]{2})"
    rb"(?:[ \t]+\([^()\r\n]{0,64}\))?[ \t]*"
)
_MONTHS = {name: number for number, name in enumerate(b"Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}


def _parse_plain_date(match: re.Match[bytes]) -> datetime | None:
    day, month, year, hour, minute, second, sign, zone_hours, zone_minutes = match.groups()
    offset = int(zone_hours) * 3600 + int(zone_minutes) * 60
    try:
        dt = datetime(
            int(year),
            _MONTHS[month],
            int(day),
            int(hour),
            int(minute),
            min(int(second), 59),
            tzinfo=timezone(timedelta(seconds=-offset if sign == b"-" else offset)),
        ).astimezone(UTC)
    except Exception:
        return None
    return dt if _MIN_DATE <= dt < _MAX_DATE else None


def _parse_date(value: bytes) -> datetime | None:
    plain = _PLAIN_DATE.fullmatch(value)
    if plain is not None:
        return _parse_plain_date(plain)
    return _parse_any_date(value)


def _parse_any_date(value: bytes) -> datetime | None:
    text = _bytes_to_str(_unfold(value))[:300]
    text = _COMMENT_RE.sub(" ", text).strip()
    if not text:
        return None
    dt: datetime | None = None
    try:
        parsed = parsedate_tz(text)
    except Exception:
        parsed = None
    if parsed is not None:
        try:
            year, month, day, hour, minute, second = parsed[:6]
            offset = parsed[9] or 0
            second = min(second, 59)
            dt = datetime(
                year,
                month,
                day,
                hour,
                minute,
                second,
                tzinfo=timezone(timedelta(seconds=offset)),
            )
        except Exception:
            return None
    elif text[:4].isdigit():
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except Exception:
            return None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
    if dt is None:
        return None
    try:
        dt = dt.astimezone(UTC)
    except Exception:
        return None
    if not (_MIN_DATE <= dt < _MAX_DATE):
        return None
    return dt


def sent_date_of(values: Sequence[str]) -> datetime | None:
    """The first of a message's decoded Date values parsed, None when there is none
    or it is unreadable; in the field's own zone (IMAP's SENT* compare the day the
    sender wrote)."""
    if not values:
        return None
    try:
        parsed = parsedate_to_datetime(values[0])
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
