"""The MIME structure of a raw message as byte ranges of the original: header blocks,
parameters (RFC 2045, RFC 2231), the tree of parts (bounded by :data:`MAX_DEPTH` and
:data:`MAX_PARTS`), and its leaves: the body parts and the attachments.

The bytes are never modified or re-serialised: every part can be addressed as a byte
range of the original message, which gives exact raw bytes for ``message/rfc822``
attachments, exact header sizes and cheap attachment sizes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from .charsets import _b64_size, _bytes_to_str, _clean_line, _decode_bytes, _decode_transfer, _qp_decode, _se_to_str, _unfold, decode_words
from .header_fields import FIELD_NAME

#: Multipart nesting deeper than this is treated as one opaque part.
MAX_DEPTH = 50
#: At most this many MIME parts are looked at in one message.
MAX_PARTS = 10_000


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    id: str  # "ATT00001", ... in MIME walk order among attachment parts
    filename: str | None  # decoded (RFC 2231 and RFC 2047)
    content_type: str  # lowercased "type/subtype"
    size: int  # size of the decoded content in bytes
    disposition: str  # "attachment" or "inline"
    content_id: str | None  # without angle brackets
    part: str  # IMAP part specifier (RFC 3501 numbering)


# ---------------------------------------------------------------------------
# header block parsing
# ---------------------------------------------------------------------------

# The program's one rule for a field name (``header_fields``), obsolete "From :" included.
_HEADER_NAME_RE = FIELD_NAME
_PART_HEADERS = frozenset(
    {
        b"content-type",
        b"content-disposition",
        b"content-transfer-encoding",
        b"content-id",
    }
)
_TOP_HEADERS = _PART_HEADERS | {
    b"from",
    b"sender",
    b"reply-to",
    b"to",
    b"cc",
    b"bcc",
    b"subject",
    b"message-id",
    b"in-reply-to",
    b"references",
    b"date",
}


def _parse_header_block(raw: bytes, start: int, end: int, wanted: frozenset[bytes]) -> tuple[dict[bytes, list[bytes]], int]:
    """Parse the header block of raw[start:end].

    Returns the wanted headers (lowercased name -> raw folded values in order)
    and the offset where the body starts (after the blank line; at a line that
    is not a header; or ``end``).
    """
    headers: dict[bytes, list[bytes]] = {}
    cur_name: bytes | None = None
    cur_start = cur_end = 0
    pos = start
    first = True
    find = raw.find
    while pos < end:
        nl = find(b"\n", pos, end)
        if nl < 0:
            line_end = next_pos = end
        else:
            line_end = nl
            next_pos = nl + 1
        ce = line_end
        if ce > pos and raw[ce - 1] == 13:
            ce -= 1
        if ce == pos:  # the blank separator line
            if cur_name is not None and cur_name in wanted:
                headers.setdefault(cur_name, []).append(raw[cur_start:cur_end])
            return headers, next_pos
        c = raw[pos]
        if c == 32 or c == 9:  # continuation line
            if cur_name is not None:
                cur_end = ce
            pos = next_pos
            first = False
            continue
        m = _HEADER_NAME_RE.match(raw, pos, ce)
        if m is None:
            if first and (raw.startswith(b"From ", pos) or raw.startswith(b">From ", pos)):
                pos = next_pos  # mbox separator line
                first = False
                continue
            if cur_name is not None and cur_name in wanted:
                headers.setdefault(cur_name, []).append(raw[cur_start:cur_end])
            return headers, pos
        if cur_name is not None and cur_name in wanted:
            headers.setdefault(cur_name, []).append(raw[cur_start:cur_end])
        cur_name = raw[pos : m.end() - 1].rstrip(b" \t").lower()
        cur_start = m.end()
        cur_end = ce
        pos = next_pos
        first = False
    if cur_name is not None and cur_name in wanted:
        headers.setdefault(cur_name, []).append(raw[cur_start:cur_end])
    return headers, end


# ---------------------------------------------------------------------------
# MIME parameters (RFC 2045 + RFC 2231)
# ---------------------------------------------------------------------------

_MAX_PARAM_INPUT = 65_536
_RFC2231_RE = re.compile(r"([^*]+)\*(\d{1,4})?(\*)?")
_UNESCAPE_RE = re.compile(r'\\([\\"])')
_MIME_TYPE_RE = re.compile(r"[a-z0-9!#$&^_.+\-]+/[a-z0-9!#$&^_.+\-]+")


def _split_semicolons(value: str) -> list[str]:
    if '"' not in value:
        return value.split(";")
    parts = []
    start = 0
    i = 0
    n = len(value)
    in_quote = False
    while i < n:
        c = value[i]
        if in_quote:
            if c == "\\":
                i += 2
                continue
            if c == '"':
                in_quote = False
        elif c == '"':
            in_quote = True
        elif c == ";":
            parts.append(value[start:i])
            start = i + 1
        i += 1
    parts.append(value[start:])
    return parts


class _Params:
    """Parsed ``value; name=param; ...`` header."""

    __slots__ = ("decoded", "params", "value")

    def __init__(self, value: str, params: dict[str, str], decoded: set[str]) -> None:
        self.value = value
        self.params = params
        self.decoded = decoded

    def text(self, name: str) -> str | None:
        """A parameter as readable text (RFC 2231 / 8-bit / RFC 2047 decoded)."""
        v = self.params.get(name)
        if v is None:
            return None
        if name not in self.decoded:
            v = decode_words(_se_to_str(v))
        return v

    def raw(self, name: str) -> bytes | None:
        v = self.params.get(name)
        if v is None:
            return None
        if name in self.decoded:
            return v.encode("utf-8")
        return v.encode("ascii", "surrogateescape")


_EMPTY_PARAMS = _Params("", {}, set())


def _parse_params(header: bytes) -> _Params:
    """Parse a Content-Type / Content-Disposition value (never raises)."""
    value = _unfold(header)[:_MAX_PARAM_INPUT].decode("ascii", "surrogateescape")
    pieces = _split_semicolons(value)
    main = pieces[0].strip().lower()
    plain: dict[str, str] = {}
    sections: dict[str, list[tuple[int, bool, str]]] = {}
    for piece in pieces[1:]:
        name, sep, val = piece.partition("=")
        if not sep:
            continue
        name = name.strip().lower()
        if not name:
            continue
        val = val.strip()
        if val.startswith('"'):
            val = val[1:]
            val = val.removesuffix('"')
            if "\\" in val:
                val = _UNESCAPE_RE.sub(r"\1", val)
        if "*" in name:
            m = _RFC2231_RE.fullmatch(name)
            if m is not None:
                base = m.group(1)
                index = int(m.group(2)) if m.group(2) is not None else 0
                encoded = m.group(2) is None or m.group(3) is not None
                sections.setdefault(base, []).append((index, encoded, val))
                continue
        plain.setdefault(name, val)
    decoded: set[str] = set()
    for base, secs in sections.items():
        secs.sort(key=lambda s: s[0])
        charset: str | None = None
        chunks: list[bytes] = []
        for i, (_index, encoded, val) in enumerate(secs):
            bval = val.encode("ascii", "surrogateescape")
            if encoded:
                if i == 0 and bval.count(b"'") >= 2:
                    cs, _lang, bval = bval.split(b"'", 2)
                    charset = cs.decode("latin-1") or None
                try:
                    chunks.append(unquote_to_bytes(bval))
                except Exception:  # pragma: no cover - unquote is lenient
                    chunks.append(bval)
            else:
                chunks.append(bval)
        plain[base] = _decode_bytes(b"".join(chunks), charset)
        decoded.add(base)
    return _Params(main, plain, decoded)


# ---------------------------------------------------------------------------
# MIME structure
# ---------------------------------------------------------------------------


class _Part:
    """One MIME part as byte offsets into the raw message."""

    __slots__ = (
        "body_end",
        "body_start",
        "children",
        "ctparams",
        "ctype",
        "headers",
        "in_related",
        "number",
    )

    def __init__(self) -> None:
        self.number = ""
        self.ctype = "text/plain"
        self.ctparams = _EMPTY_PARAMS
        self.headers: dict[bytes, list[bytes]] = {}
        self.body_start = 0
        self.body_end = 0
        self.children: list[_Part] | None = None
        self.in_related = False

    def header(self, name: bytes) -> bytes | None:
        values = self.headers.get(name)
        return values[0] if values else None

    @property
    def cte(self) -> str:
        v = self.header(b"content-transfer-encoding")
        if not v:
            return ""
        token = _unfold(v).split(b";", 1)[0].strip().lower()
        return token.decode("latin-1")

    @property
    def charset(self) -> str | None:
        return self.ctparams.text("charset")

    def body(self, raw: bytes) -> bytes:
        return raw[self.body_start : self.body_end]

    def decoded(self, raw: bytes) -> bytes:
        return _decode_transfer(self.body(raw), self.cte)

    def decoded_size(self, raw: bytes) -> int:
        cte = self.cte
        if cte == "base64":
            return _b64_size(self.body(raw))
        if cte == "quoted-printable":
            return len(_qp_decode(self.body(raw)))
        return self.body_end - self.body_start

    def decoded_prefix(self, raw: bytes, limit: int) -> tuple[bytes, bool]:
        """Decoded content, at least ``limit`` bytes of it when available.

        Returns (data, complete).
        """
        length = self.body_end - self.body_start
        cte = self.cte
        if cte == "base64":
            enc_limit = limit * 2 + 64
        elif cte == "quoted-printable":
            enc_limit = limit * 3 + 64
        else:
            enc_limit = limit
        if length <= enc_limit:
            return self.decoded(raw), True
        data = raw[self.body_start : self.body_start + enc_limit]
        return _decode_transfer(data, cte), False


class _Counter:
    __slots__ = ("left",)

    def __init__(self, left: int) -> None:
        self.left = left


def _split_multipart(raw: bytes, start: int, end: int, boundary: bytes, max_parts: int) -> list[tuple[int, int]] | None:
    """Body ranges of the parts of a multipart body, None if no delimiter."""
    if not boundary or len(boundary) > 256:
        return None
    delim = b"--" + boundary
    dlen = len(delim)
    find = raw.find
    pos = start
    parts: list[tuple[int, int]] = []
    cur: int | None = None
    seen = False
    while len(parts) < max_parts:
        i = find(delim, pos, end)
        if i < 0:
            break
        if i != start and raw[i - 1] != 10:
            pos = i + 1
            continue
        j = i + dlen
        close = j + 2 <= end and raw[j] == 45 and raw[j + 1] == 45
        k = j + 2 if close else j
        while k < end and raw[k] in (32, 9):
            k += 1
        if k < end and raw[k] != 13 and raw[k] != 10:
            pos = i + 1
            continue
        if k < end and raw[k] == 13:
            k += 1
        if k < end and raw[k] == 10:
            k += 1
        seen = True
        if cur is not None:
            e = i
            if e > cur and raw[e - 1] == 10:
                e -= 1
                if e > cur and raw[e - 1] == 13:
                    e -= 1
            parts.append((cur, e))
            cur = None
        if close:
            break
        cur = k
        pos = k
    if cur is not None and len(parts) < max_parts:
        parts.append((cur, end))
    if not seen:
        return None
    return parts


def _build_part(
    raw: bytes,
    headers: dict[bytes, list[bytes]],
    body_start: int,
    end: int,
    number: str,
    default_type: str,
    depth: int,
    in_related: bool,
    counter: _Counter,
    top: bool,
) -> _Part:
    part = _Part()
    part.headers = headers
    part.body_start = body_start
    part.body_end = max(end, body_start)
    part.in_related = in_related
    ct = part.header(b"content-type")
    ctype = default_type
    if ct is not None:
        params = _parse_params(ct)
        main = "".join(params.value.split())
        if _MIME_TYPE_RE.fullmatch(main):
            ctype = main
            part.ctparams = params
        # else: invalid Content-Type -> default type, no parameters (RFC 2045)
    part.ctype = ctype
    if ctype.startswith("multipart/") and depth < MAX_DEPTH:
        boundary = part.ctparams.raw("boundary")
        ranges = None
        if boundary:
            boundary = boundary.rstrip(b" \t")
            ranges = _split_multipart(raw, part.body_start, part.body_end, boundary, counter.left)
        if ranges is None:
            # A multipart without usable boundary: show its body as text.
            part.ctype = "text/plain"
            part.ctparams = _EMPTY_PARAMS
        else:
            child_default = "message/rfc822" if ctype == "multipart/digest" else "text/plain"
            child_related = in_related or ctype == "multipart/related"
            children: list[_Part] = []
            prefix = "" if top else number + "."
            part.number = "" if top else number
            for idx, (s, e) in enumerate(ranges, 1):
                if counter.left <= 0:
                    break
                counter.left -= 1
                child_headers, child_body = _parse_header_block(raw, s, e, _PART_HEADERS)
                children.append(
                    _build_part(
                        raw,
                        child_headers,
                        child_body,
                        e,
                        f"{prefix}{idx}",
                        child_default,
                        depth + 1,
                        child_related,
                        counter,
                        False,
                    )
                )
            part.children = children
            return part
    part.number = "1" if top else number
    return part


class _Parsed:
    __slots__ = ("header_size", "headers", "raw", "root")

    def __init__(
        self,
        raw: bytes,
        headers: dict[bytes, list[bytes]],
        header_size: int,
        root: _Part,
    ):
        self.raw = raw
        self.headers = headers
        self.header_size = header_size
        self.root = root


def _as_bytes(raw: object) -> bytes:
    if isinstance(raw, bytes):
        return raw
    if isinstance(raw, str):
        return raw.encode("utf-8", "surrogateescape")
    try:
        return bytes(raw)  # type: ignore[call-overload]
    except Exception:
        return b""


def _parse_message(raw: bytes) -> _Parsed:
    end = len(raw)
    headers, body_start = _parse_header_block(raw, 0, end, _TOP_HEADERS)
    root = _build_part(
        raw,
        headers,
        body_start,
        end,
        "",
        "text/plain",
        0,
        False,
        _Counter(MAX_PARTS),
        True,
    )
    return _Parsed(raw, headers, body_start, root)


# ---------------------------------------------------------------------------
# attachments and body parts
# ---------------------------------------------------------------------------

_BODY_TYPES = ("text/plain", "text/html")


class _Leaf:
    """Classification of one leaf part."""

    __slots__ = ("content_id", "disposition", "filename", "is_body", "part")

    def __init__(
        self,
        part: _Part,
        is_body: bool,
        filename: str | None,
        disposition: str,
        content_id: str | None,
    ):
        self.part = part
        self.is_body = is_body
        self.filename = filename
        self.disposition = disposition
        self.content_id = content_id


_PATH_SPLIT_RE = re.compile(r"[/\\]")


def _clean_filename(name: str | None) -> str | None:
    if name is None:
        return None
    name = _clean_line(name).strip()
    # Only the last path component: never a path, whatever the sender says.
    name = _PATH_SPLIT_RE.split(name)[-1].strip()
    if name in ("", ".", ".."):
        return None
    return name[:1024]


def _content_id(part: _Part) -> str | None:
    v = part.header(b"content-id")
    if v is None:
        return None
    s = "".join(_bytes_to_str(_unfold(v)).split())
    s = _clean_line(s)
    s = s.lstrip("<")
    close = s.find(">")
    if close >= 0:
        s = s[:close]
    return s[:998] or None


def _classify(part: _Part) -> _Leaf:
    disp_header = part.header(b"content-disposition")
    dparams = _parse_params(disp_header) if disp_header is not None else None
    dtype = dparams.value.split()[0] if dparams is not None and dparams.value.split() else ""
    filename = None
    if dparams is not None:
        filename = _clean_filename(dparams.text("filename"))
    if filename is None:
        filename = _clean_filename(part.ctparams.text("name"))
    content_id = _content_id(part)
    if part.children is None and part.ctype in _BODY_TYPES and dtype != "attachment" and filename is None:
        return _Leaf(part, True, None, "inline", content_id)
    if dtype == "inline":
        disposition = "inline"
    elif dtype == "attachment" or dtype:
        disposition = "attachment"
    elif part.in_related and content_id:
        disposition = "inline"
    else:
        disposition = "attachment"
    return _Leaf(part, False, filename, disposition, content_id)


def _leaves(root: _Part) -> list[_Leaf]:
    """All leaf parts in MIME walk order, classified."""
    out: list[_Leaf] = []
    stack: list[_Part] = [root]
    while stack:
        part = stack.pop()
        if part.children is not None:
            stack.extend(reversed(part.children))
        else:
            out.append(_classify(part))
    return out


def _attachment_id(index: int) -> str:
    return f"ATT{index:05d}"


def _attachment_leaves(leaves: list[_Leaf]) -> list[tuple[str, _Leaf]]:
    result = []
    n = 0
    for leaf in leaves:
        if not leaf.is_body:
            n += 1
            result.append((_attachment_id(n), leaf))
    return result


def _attachment_info(att_id: str, leaf: _Leaf, size: int) -> AttachmentInfo:
    return AttachmentInfo(
        id=att_id,
        filename=leaf.filename,
        content_type=leaf.part.ctype,
        size=size,
        disposition=leaf.disposition,
        content_id=leaf.content_id,
        part=leaf.part.number,
    )


def _body_segments(root: _Part, body_ids: set[int]) -> tuple[list[_Part], list[_Part]]:
    """(parts for the text rendering, parts for the html rendering).

    multipart/alternative picks the first alternative that has text/plain for
    the text, and the last one that has text/html for the html.
    """

    def has(parts: list[_Part], ctype: str) -> bool:
        return any(p.ctype == ctype for p in parts)

    def walk(part: _Part) -> tuple[list[_Part], list[_Part]]:
        if part.children is None:
            if id(part) in body_ids:
                return [part], [part]
            return [], []
        results = [walk(c) for c in part.children]
        if part.ctype == "multipart/alternative" and results:
            text = next((t for t, _h in results if has(t, "text/plain")), None)
            if text is None:
                text = next((t for t, _h in results if t), [])
            html = next((h for _t, h in reversed(results) if has(h, "text/html")), None)
            if html is None:
                html = next((h for _t, h in reversed(results) if h), [])
            return text, html
        text_all: list[_Part] = []
        html_all: list[_Part] = []
        for t, h in results:
            text_all.extend(t)
            html_all.extend(h)
        return text_all, html_all

    return walk(root)
