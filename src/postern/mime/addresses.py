"""Address header fields (From, To, Cc...) as a list of :class:`AddressInfo`: a lenient
RFC 5322 parser, linear in the input, bounded by :data:`MAX_ADDRESSES`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .charsets import _bytes_to_str, _clean_line, _collapse, _unfold, decode_words

#: At most this many addresses are returned for one address header.
MAX_ADDRESSES = 10_000


#: Address headers are parsed up to this many bytes (MTAs commonly reject
#: header fields over 100 KiB).
MAX_ADDRESS_HEADER = 256 * 1024


@dataclass(frozen=True, slots=True)
class AddressInfo:
    name: str  # decoded display name, "" when none
    address: str  # the addr-spec as written (decoded), "" when unparsable


# ---------------------------------------------------------------------------
# addresses
# ---------------------------------------------------------------------------

_ADDR_TOKEN_RE = re.compile(r'"(?:[^"\\]|\\.)*"?|<[^<>,]*>?|[,;:]|\(|\s+|[^"<>,;:()\s]+|.', re.DOTALL)
_QUOTED_UNESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)


def _skip_comment(s: str, pos: int) -> tuple[int, str]:
    """s[pos] == '('; returns (end, comment text)."""
    depth = 0
    i = pos
    n = len(s)
    start = pos + 1
    while i < n:
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1, s[start:i]
        i += 1
    return n, s[start:n]


def _unquote(token: str) -> str:
    if token.startswith('"'):
        token = token[1:]
        token = token.removesuffix('"')
    if "\\" in token:
        token = _QUOTED_UNESCAPE_RE.sub(r"\1", token)
    return token


def _display_name(pieces: list[str]) -> str:
    name = " ".join(_unquote(p) for p in pieces)
    name = _collapse(_clean_line(decode_words(name)))
    if len(name) >= 2 and name[0] == name[-1] and name[0] in "\"'":
        name = name[1:-1].strip()
    return name


def _clean_address(addr: str) -> str:
    addr = addr.strip()
    addr = addr.removeprefix("<")
    addr = addr.removesuffix(">")
    if '"' not in addr:
        addr = "".join(addr.split())
    else:
        addr = addr.strip()
    if addr.startswith("@") and ":" in addr:  # obsolete source route
        addr = addr.split(":", 1)[1]
    if addr[:7].lower() == "mailto:":
        addr = addr[7:]
    if "=?" in addr:
        addr = decode_words(addr)
    return _clean_line(addr)[:998]


class _MailboxBuilder:
    __slots__ = ("angle", "chunks", "comments", "glue", "has_at")

    def __init__(self) -> None:
        self.chunks: list[list[str]] = []  # each chunk: adjacent tokens
        self.glue = False  # next token joins the last chunk
        self.angle: str | None = None
        self.comments: list[str] = []
        self.has_at = False

    def add(self, token: str) -> None:
        if self.glue and self.chunks:
            self.chunks[-1].append(token)
        else:
            self.chunks.append([token])
        self.glue = True
        if "@" in token:
            self.has_at = True

    def empty(self) -> bool:
        return not self.chunks and self.angle is None and not self.comments

    def build(self) -> AddressInfo | None:
        comment_name = _display_name([c for c in self.comments if c.strip()]) if self.comments else ""
        if self.angle is not None:
            name = _display_name([t for chunk in self.chunks for t in chunk])
            address = _clean_address(self.angle)
            if not name:
                name = comment_name
            if not name and not address:
                return None
            return AddressInfo(name=name, address=address)
        words = ["".join(chunk) for chunk in self.chunks]
        # re-join "local @ domain" written with spaces
        groups: list[list[str]] = []
        for w in words:
            if groups and (w.startswith("@") or groups[-1][-1].endswith("@")):
                groups[-1].append(w)
            else:
                groups.append([w])
        merged = ["".join(g) for g in groups]
        addr_index = None
        for i in range(len(merged) - 1, -1, -1):
            if "@" in merged[i]:
                addr_index = i
                break
        if addr_index is None:
            if len(merged) == 1 and not merged[0].startswith('"'):
                address = _clean_address(merged[0])
                name = comment_name
            else:
                address = ""
                name = _display_name(merged) or comment_name
        else:
            address = _clean_address(merged[addr_index])
            rest = merged[:addr_index] + merged[addr_index + 1 :]
            name = _display_name(rest) if rest else comment_name
            if not name:
                name = comment_name
        if not name and not address:
            return None
        return AddressInfo(name=name, address=address)


def _parse_addresses(value: str) -> list[AddressInfo]:
    """Parse an RFC 5322 address list leniently (never raises)."""
    result: list[AddressInfo] = []
    cur = _MailboxBuilder()
    pos = 0
    n = len(value)
    match = _ADDR_TOKEN_RE.match

    def finish() -> None:
        nonlocal cur
        if not cur.empty():
            info = cur.build()
            if info is not None:
                result.append(info)
        cur = _MailboxBuilder()

    while pos < n and len(result) < MAX_ADDRESSES:
        c = value[pos]
        if c == "(":
            pos, comment = _skip_comment(value, pos)
            cur.comments.append(comment)
            cur.glue = False
            continue
        m = match(value, pos)
        if m is None:  # pragma: no cover - the last alternative matches anything
            break
        token = m.group(0)
        pos = m.end()
        if token.isspace():
            cur.glue = False
        elif token == "," or token == ";":
            finish()
        elif token == ":":
            if cur.angle is None and not cur.has_at:
                cur = _MailboxBuilder()  # group display name: dropped
            else:
                cur.add(token)
        elif token[0] == "<":
            if cur.angle is None:
                cur.angle = token
            cur.glue = False
        else:
            cur.add(token)
    if len(result) < MAX_ADDRESSES:
        finish()
    return result


def _address_header(headers: dict[bytes, list[bytes]], name: bytes) -> list[AddressInfo]:
    values = headers.get(name)
    if not values:
        return []
    result: list[AddressInfo] = []
    budget = MAX_ADDRESS_HEADER
    for v in values:
        if budget <= 0:
            break
        if len(v) > budget:
            cut = v.rfind(b",", 0, budget)  # ASCII: never splits a character
            v = v[: max(cut, 0)]
        budget -= max(len(v), 1)
        result.extend(_parse_addresses(_bytes_to_str(_unfold(v))))
        if len(result) >= MAX_ADDRESSES:
            break
    return result[:MAX_ADDRESSES]
