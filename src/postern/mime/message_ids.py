"""Message-ID, In-Reply-To and References: the message ids they name, leniently."""

from __future__ import annotations

import re

from .charsets import MAX_HEADER_TEXT, _bytes_to_str, _cap, _unfold

#: At most this many message ids are returned for References/In-Reply-To.
MAX_REFERENCES = 1_000


# ---------------------------------------------------------------------------
# message ids
# ---------------------------------------------------------------------------

_ANGLE_ID_RE = re.compile(r"<([^<>]*)>")
_COMMENT_RE = re.compile(r"\([^()]*\)")


def _valid_id(inner: str) -> bool:
    return 0 < len(inner) <= 998 and inner.isprintable() and inner not in ("@",)


def _parse_msgids(value: bytes) -> list[str]:
    text = _bytes_to_str(_unfold(_cap(value, MAX_HEADER_TEXT)))
    ids: list[str] = []
    seen: set[str] = set()
    found_angle = False
    for m in _ANGLE_ID_RE.finditer(text):
        found_angle = True
        inner = "".join(m.group(1).split())
        if _valid_id(inner):
            mid = f"<{inner}>"
            if mid not in seen:
                seen.add(mid)
                ids.append(mid)
                if len(ids) >= MAX_REFERENCES:
                    break
    if not found_angle:
        for token in _COMMENT_RE.sub(" ", text).split():
            token = token.strip("<>,;\"'")
            if "@" in token and _valid_id(token):
                mid = f"<{token}>"
                if mid not in seen:
                    seen.add(mid)
                    ids.append(mid)
                    if len(ids) >= MAX_REFERENCES:
                        break
    return ids
