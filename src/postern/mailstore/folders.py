"""Folder rules (pure): paths, the default folders and their special uses."""

from __future__ import annotations

import unicodedata
from typing import Any

from postern.errors import InvalidInput
from postern.storage.ids import new_id, now_ms

SEPARATOR = "/"
MAX_PATH_LENGTH = 1024
MAX_SEGMENT_LENGTH = 255
MAX_DEPTH = 32
TRASH_JUNK_RETENTION_MS = 30 * 24 * 3600 * 1000

# (path, special use) of the folders every new user gets.
DEFAULT_FOLDERS: tuple[tuple[str, str | None], ...] = (
    ("INBOX", None),
    ("Drafts", "\\Drafts"),
    ("Sent Mail", "\\Sent"),
    ("Junk", "\\Junk"),
    ("Trash", "\\Trash"),
    ("Archive", "\\Archive"),
)


def normalise_path(value: str, field: str = "path") -> str:
    """Validate a folder path; ``inbox`` in any case is INBOX, as IMAP says."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string", field=field)
    path = unicodedata.normalize("NFC", value.strip())
    if not path or len(path) > MAX_PATH_LENGTH:
        raise InvalidInput(f"{field} must be 1 to {MAX_PATH_LENGTH} characters", field=field)
    segments = path.split(SEPARATOR)
    if len(segments) > MAX_DEPTH:
        raise InvalidInput(f"{field} is nested too deeply", field=field)
    for segment in segments:
        if not segment.strip() or len(segment) > MAX_SEGMENT_LENGTH:
            raise InvalidInput(f"{field} has an empty or too long folder name", field=field)
        if any(unicodedata.category(c)[0] == "C" for c in segment):
            raise InvalidInput(f"{field} contains control characters", field=field)
        if segment != segment.strip():
            raise InvalidInput(f"{field} has a folder name with leading or trailing spaces", field=field)
    if segments[0].upper() == "INBOX":
        segments[0] = "INBOX"
    return SEPARATOR.join(segments)


def parents(path: str) -> list[str]:
    """Every ancestor of ``path``, outermost first."""
    segments = path.split(SEPARATOR)
    return [SEPARATOR.join(segments[:i]) for i in range(1, len(segments))]


def name_of(path: str) -> str:
    return path.rsplit(SEPARATOR, 1)[-1]


_last_uidvalidity = 0


def new_uidvalidity() -> int:
    # Seconds since the epoch, as Dovecot does: a folder deleted and created again
    # gets a new value, so clients drop what they cached of the old one. Strictly
    # increasing in this process, so that this holds within the same second too.
    global _last_uidvalidity
    _last_uidvalidity = max((now_ms() // 1000) & 0xFFFFFFFF, _last_uidvalidity + 1, 1)
    return _last_uidvalidity


def folder_row(user_id: str, path: str, special_use: str | None = None, retention_ms: int | None = None) -> dict[str, Any]:
    return {
        "id": new_id(),
        "user_id": user_id,
        "path": path,
        "special_use": special_use,
        "subscribed": True,
        "retention_ms": retention_ms,
        "uidvalidity": new_uidvalidity(),
        "uid_next": 1,
        "modseq": 1,
        "created_ms": now_ms(),
    }


def default_folder_rows(user_id: str, retention_ms: int | None) -> list[dict[str, Any]]:
    rows = []
    for path, special_use in DEFAULT_FOLDERS:
        retention = retention_ms
        if special_use in ("\\Trash", "\\Junk"):
            retention = min(retention_ms or TRASH_JUNK_RETENTION_MS, TRASH_JUNK_RETENTION_MS)
        rows.append(folder_row(user_id, path, special_use, retention))
    return rows


def is_protected(path: str, special_use: str | None) -> bool:
    """INBOX and the special-use folders cannot be deleted."""
    return path == "INBOX" or special_use is not None
