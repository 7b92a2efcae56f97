"""Header/structure summary of a raw RFC 5322 message.

Everything in this module is a pure function over the raw message bytes.  The
bytes are never modified or re-serialised: the MIME structure is parsed by a
small offset-based parser (rather than :mod:`email.parser`) so that every part
can be addressed as a byte range of the original message, which gives exact
raw bytes for ``message/rfc822`` attachments, exact header sizes and cheap
attachment sizes.

Robustness rules: the public functions never raise for any ``bytes`` input.
Hostile input is bounded by :data:`MAX_DEPTH` (multipart nesting),
:data:`MAX_PARTS` (number of MIME parts) and linear-time scanning everywhere
(no regular expression here can backtrack super-linearly).
"""

from __future__ import annotations

import binascii
import codecs
import encodings
import encodings.aliases
import html as _html
import pkgutil
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_tz
from functools import lru_cache
from urllib.parse import unquote_to_bytes

__all__ = [
    "AddressInfo",
    "AttachmentInfo",
    "MessageSummary",
    "normalise_subject",
    "summarise",
]

#: Multipart nesting deeper than this is treated as one opaque part.
MAX_DEPTH = 50
#: At most this many MIME parts are looked at in one message.
MAX_PARTS = 10_000
#: Length of :attr:`MessageSummary.intro` before the ellipsis.
INTRO_LENGTH = 128
#: At most this many addresses are returned for one address header.
MAX_ADDRESSES = 10_000
#: Subject, Message-ID, In-Reply-To and References are read up to this many
#: bytes.
MAX_HEADER_TEXT = 64 * 1024
#: Address headers are parsed up to this many bytes (MTAs commonly reject
#: header fields over 100 KiB).
MAX_ADDRESS_HEADER = 256 * 1024
#: At most this many message ids are returned for References/In-Reply-To.
MAX_REFERENCES = 1_000


# ---------------------------------------------------------------------------
# public data types
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AddressInfo:
    name: str  # decoded display name, "" when none
    address: str  # the addr-spec as written (decoded), "" when unparsable


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    id: str  # "ATT00001", ... in MIME walk order among attachment parts
    filename: str | None  # decoded (RFC 2231 and RFC 2047)
    content_type: str  # lowercased "type/subtype"
    size: int  # size of the decoded content in bytes
    disposition: str  # "attachment" or "inline"
    content_id: str | None  # without angle brackets
    part: str  # IMAP part specifier (RFC 3501 numbering)


@dataclass(frozen=True, slots=True)
class MessageSummary:
    from_: AddressInfo | None
    sender: AddressInfo | None
    reply_to: tuple[AddressInfo, ...]
    to: tuple[AddressInfo, ...]
    cc: tuple[AddressInfo, ...]
    bcc: tuple[AddressInfo, ...]
    subject: str
    message_id: str | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    date: datetime | None
    intro: str
    attachments: tuple[AttachmentInfo, ...]
    thread_subject: str
    is_reply: bool
    header_size: int


# ---------------------------------------------------------------------------
# charsets
# ---------------------------------------------------------------------------

# Labels that carry no real information: decode by guessing (UTF-8, then
# Windows-1252, then Latin-1).
_GUESS_LABELS = frozenset(
    {
        "us-ascii",
        "ascii",
        "us_ascii",
        "ansi_x3.4-1968",
        "iso-ir-6",
        "646",
        "unknown-8bit",
        "x-unknown",
        "unknown",
        "default",
        "x-user-defined",
        "charset",
        "none",
        "8bit",
        "7bit",
        "text",
        "us",
    }
)
_LABEL_ALIASES = {
    "utf8": "utf-8",
    "utf-8": "utf-8",
    "x-utf8": "utf-8",
    "unicode-1-1-utf-8": "utf-8",
    # WHATWG: Latin-1 labels really mean Windows-1252.
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "iso_8859-1": "cp1252",
    "iso_8859-1:1987": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "l1": "cp1252",
    "cp819": "cp1252",
    "ibm819": "cp1252",
    "iso-ir-100": "cp1252",
    "windows-1252": "cp1252",
    "x-cp1252": "cp1252",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cp936": "gb18030",
    "euc-cn": "gb18030",
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "euc-kr": "cp949",
    "iso-8859-8-i": "iso-8859-8",
    "iso-8859-6-i": "iso-8859-6",
    "windows-874": "cp874",
    "tis-620": "cp874",
    "x-sjis": "cp932",
    "shift-jis": "cp932",
    "shift_jis": "cp932",
    "sjis": "cp932",
    "x-mac-roman": "mac-roman",
    "macintosh": "mac-roman",
    "x-mac-cyrillic": "mac-cyrillic",
    "utf-16": "utf-16",
    "iso-2022-jp": "iso2022_jp_ext",
}
# Codecs that are not character sets (or are dangerous / meaningless in mail).
_BLOCKED_CODECS = frozenset(
    {
        "undefined",
        "unicode_escape",
        "raw_unicode_escape",
        "unicode_internal",
        "idna",
        "punycode",
        "mbcs",
        "oem",
        "charmap",
    }
)


def _known_codec_names() -> frozenset[str]:
    names = set(encodings.aliases.aliases)
    names.update(encodings.aliases.aliases.values())
    try:
        names.update(m.name for m in pkgutil.iter_modules(encodings.__path__))
    except Exception:  # pragma: no cover - exotic packaging
        pass
    return frozenset(names)


# Only names in this set are ever passed to codecs.lookup(): the encodings
# search function caches failed look-ups forever, so looking up attacker
# supplied names would grow memory without bound.
_KNOWN_CODECS = _known_codec_names()
_NON_ALNUM_RE = re.compile(r"[^0-9a-z.]+")


@lru_cache(maxsize=512)
def _resolve_charset(label: str) -> str | None:
    """Python codec name for a MIME charset label, None to guess."""
    label = label.strip().strip("\"'").strip().lower()
    if not label or len(label) > 64:
        return None
    if label in _GUESS_LABELS:
        return None
    label = _LABEL_ALIASES.get(label, label)
    norm = _NON_ALNUM_RE.sub("_", label).strip("_")
    if norm not in _KNOWN_CODECS and label not in _KNOWN_CODECS:
        return None
    try:
        info = codecs.lookup(norm)
    except Exception:
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _BLOCKED_CODECS:
        return None
    if info.name == "ascii":
        return None
    return info.name


def _decode_guess(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode ``data`` in ``charset``; never raises."""
    codec = _resolve_charset(charset[:100]) if charset else None
    if codec is None:
        return _decode_guess(data)
    try:
        return data.decode(codec)
    except Exception:
        pass
    if codec == "cp1252":
        return data.decode("latin-1")
    try:
        return data.decode(codec, "replace")
    except Exception:
        return data.decode("utf-8", "replace")


def _decode_prefix(data: bytes, charset: str | None) -> str:
    """Like :func:`_decode_bytes` for a truncated prefix of some text.

    A multi-byte sequence cut at the end must not turn UTF-8 into Latin-1.
    """
    codec = _resolve_charset(charset[:100]) if charset else None
    candidates = ["utf-8", "cp1252"] if codec is None else [codec]
    for name in candidates:
        try:
            return codecs.getincrementaldecoder(name)("strict").decode(data, False)
        except Exception:
            continue
    if codec is not None and codec != "cp1252":
        try:
            return codecs.getincrementaldecoder(codec)("replace").decode(data, False)
        except Exception:
            pass
    return data.decode("latin-1")


def _bytes_to_str(data: bytes) -> str:
    """8-bit header bytes: UTF-8, else Latin-1 (never raises)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _se_to_str(value: str) -> str:
    """A surrogate-escaped (ascii) string back to readable text."""
    return _bytes_to_str(value.encode("ascii", "surrogateescape"))


# ---------------------------------------------------------------------------
# transfer encodings
# ---------------------------------------------------------------------------

_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# Lenient: the URL-safe alphabet is mapped to the standard one.
_B64_TABLE = bytes.maketrans(b"-_", b"+/")
_B64_DELETE = bytes(c for c in range(256) if c not in _B64_ALPHABET + b"-_=")
_B64_TAIL_BYTES = (0, 0, 1, 2)


def _b64_segments(data: bytes) -> list[bytes]:
    clean = data.translate(_B64_TABLE, _B64_DELETE)
    if b"=" not in clean:
        return [clean] if clean else []
    return [seg for seg in clean.split(b"=") if seg]


def _b64_decode(data: bytes) -> bytes:
    """Lenient base64: ignores garbage, tolerates bad or missing padding."""
    out = []
    for seg in _b64_segments(data):
        rest = len(seg) % 4
        if rest == 1:
            seg = seg[:-1]
            rest = 0
        if rest:
            seg += b"=" * (4 - rest)
        if seg:
            try:
                out.append(binascii.a2b_base64(seg))
            except (binascii.Error, ValueError):  # pragma: no cover - clean input
                pass
    return b"".join(out)


def _b64_size(data: bytes) -> int:
    """len(_b64_decode(data)) without decoding."""
    clean = data.translate(_B64_TABLE, _B64_DELETE)
    first_pad = clean.find(b"=")
    if first_pad < 0 or clean.count(b"=", first_pad) == len(clean) - first_pad:
        # the usual case: padding only at the end
        n = len(clean) if first_pad < 0 else first_pad
        return (n // 4) * 3 + _B64_TAIL_BYTES[n % 4]
    total = 0
    for seg in clean.split(b"="):
        n = len(seg)
        total += (n // 4) * 3 + _B64_TAIL_BYTES[n % 4]
    return total


def _qp_decode(data: bytes) -> bytes:
    try:
        return binascii.a2b_qp(data)
    except Exception:  # pragma: no cover - a2b_qp is lenient
        return data


def _decode_transfer(data: bytes, cte: str) -> bytes:
    if cte == "base64":
        return _b64_decode(data)
    if cte == "quoted-printable":
        return _qp_decode(data)
    return data


# ---------------------------------------------------------------------------
# RFC 2047 encoded words
# ---------------------------------------------------------------------------

_EW_RE = re.compile(r"=\?([^?\s]{1,80})\?([QqBb])\?([^?]*)\?=")


def _ew_payload(enc: str, text: str) -> bytes:
    if enc in "Bb":
        return _b64_decode(text.encode("ascii", "ignore"))
    try:
        return binascii.a2b_qp(text.encode("utf-8", "surrogateescape"), header=True)
    except Exception:  # pragma: no cover
        return text.encode("utf-8", "replace")


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words in ``value`` (lenient, never raises)."""
    if "=?" not in value:
        return value
    out: list[str] = []
    pend_charset: str | None = None
    pend: list[bytes] = []
    pos = 0
    prev_ew = False

    def flush() -> None:
        nonlocal pend_charset
        if pend:
            out.append(_decode_bytes(b"".join(pend), pend_charset))
            pend.clear()
        pend_charset = None

    for m in _EW_RE.finditer(value):
        gap = value[pos : m.start()]
        if gap and not (prev_ew and not gap.strip()):
            flush()
            out.append(gap)
        charset = m.group(1).split("*", 1)[0].lower()
        data = _ew_payload(m.group(2), m.group(3))
        if pend and charset != pend_charset:
            flush()
        pend_charset = charset
        pend.append(data)
        pos = m.end()
        prev_ew = True
    flush()
    out.append(value[pos:])
    return "".join(out)


# ---------------------------------------------------------------------------
# text clean-up helpers
# ---------------------------------------------------------------------------

_CTRL_TABLE: dict[int, str | None] = {c: None for c in range(32) if c != 9}
_CTRL_TABLE[9] = " "
_CTRL_TABLE[127] = None
_WS_RE = re.compile(r"\s+")


def _clean_line(value: str) -> str:
    """Remove control characters (tab becomes a space)."""
    return value.translate(_CTRL_TABLE)


def _collapse(value: str) -> str:
    return " ".join(value.split())


def _unfold(value: bytes) -> bytes:
    if b"\n" in value or b"\r" in value:
        value = value.replace(b"\r", b"").replace(b"\n", b"")
    return value.strip(b" \t")


def _cap(value: bytes, limit: int) -> bytes:
    """value[:limit], not ending inside a UTF-8 sequence."""
    if len(value) <= limit:
        return value
    end = limit
    stop = max(limit - 4, 0)
    while end > stop and value[end - 1] >= 0x80:
        end -= 1
    return value[:end]


def _header_text(value: bytes) -> str:
    """Unstructured header value to text: unfold, 8-bit, RFC 2047."""
    return _clean_line(
        decode_words(_bytes_to_str(_unfold(_cap(value, MAX_HEADER_TEXT))))
    ).strip()


# ---------------------------------------------------------------------------
# header block parsing
# ---------------------------------------------------------------------------

_HEADER_NAME_RE = re.compile(rb"[!-9;-~]+[ \t]*:")
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


def _parse_header_block(
    raw: bytes, start: int, end: int, wanted: frozenset[bytes]
) -> tuple[dict[bytes, list[bytes]], int]:
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
            if first and (
                raw.startswith(b"From ", pos) or raw.startswith(b">From ", pos)
            ):
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


def _split_multipart(
    raw: bytes, start: int, end: int, boundary: bytes, max_parts: int
) -> list[tuple[int, int]] | None:
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
            ranges = _split_multipart(
                raw, part.body_start, part.body_end, boundary, counter.left
            )
        if ranges is None:
            # A multipart without usable boundary: show its body as text.
            part.ctype = "text/plain"
            part.ctparams = _EMPTY_PARAMS
        else:
            child_default = (
                "message/rfc822" if ctype == "multipart/digest" else "text/plain"
            )
            child_related = in_related or ctype == "multipart/related"
            children: list[_Part] = []
            prefix = "" if top else number + "."
            part.number = "" if top else number
            for idx, (s, e) in enumerate(ranges, 1):
                if counter.left <= 0:
                    break
                counter.left -= 1
                child_headers, child_body = _parse_header_block(
                    raw, s, e, _PART_HEADERS
                )
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
    dtype = (
        dparams.value.split()[0]
        if dparams is not None and dparams.value.split()
        else ""
    )
    filename = None
    if dparams is not None:
        filename = _clean_filename(dparams.text("filename"))
    if filename is None:
        filename = _clean_filename(part.ctparams.text("name"))
    content_id = _content_id(part)
    if (
        part.children is None
        and part.ctype in _BODY_TYPES
        and dtype != "attachment"
        and filename is None
    ):
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


# ---------------------------------------------------------------------------
# text of body parts
# ---------------------------------------------------------------------------

_META_CHARSET_RE = re.compile(
    rb"""<meta[^>]{0,300}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:\-]{1,40})""",
    re.IGNORECASE,
)
_NEWLINE_RE = re.compile(r"\r\n?")


def _part_charset(part: _Part, data: bytes) -> str | None:
    charset = part.charset
    if not charset and part.ctype == "text/html":
        m = _META_CHARSET_RE.search(data, 0, 4096)
        if m is not None:
            charset = m.group(1).decode("ascii", "replace")
    return charset


def _normalise_text(text: str) -> str:
    if "\r" in text:
        text = _NEWLINE_RE.sub("\n", text)
    if "\x00" in text:
        text = text.replace("\x00", "")
    text = text.removeprefix("\ufeff")
    return text


def _unflow(text: str, delsp: bool) -> str:
    """RFC 3676 format=flowed to plain lines."""
    out: list[str] = []
    cur: str | None = None
    cur_depth = 0

    def emit(depth: int, content: str) -> None:
        out.append((">" * depth + " " + content) if depth else content)

    for line in text.split("\n"):
        depth = 0
        n = len(line)
        while depth < n and line[depth] == ">":
            depth += 1
        content = line[depth:]
        content = content.removeprefix(" ")
        if cur is not None and depth != cur_depth:
            emit(cur_depth, cur)
            cur = None
        if cur is None:
            cur = ""
            cur_depth = depth
        if content.endswith(" ") and content != "-- ":
            cur += content[:-1] if delsp else content
        else:
            emit(depth, cur + content)
            cur = None
    if cur is not None:
        emit(cur_depth, cur)
    return "\n".join(out)


def _is_flowed(part: _Part) -> bool:
    return (
        part.ctype == "text/plain"
        and (part.ctparams.text("format") or "").strip().lower() == "flowed"
    )


def _plain_from_text(part: _Part, text: str) -> str:
    text = _normalise_text(text)
    if _is_flowed(part):
        delsp = (part.ctparams.text("delsp") or "").strip().lower() == "yes"
        text = _unflow(text, delsp)
    return text


def _part_text(raw: bytes, part: _Part) -> str:
    """Full decoded text of a text/plain or text/html part."""
    data = part.decoded(raw)
    return _plain_from_text(part, _decode_bytes(data, _part_charset(part, data)))


# ---------------------------------------------------------------------------
# HTML to text (linear: regex passes in C, a Python loop only over rare tags)
# ---------------------------------------------------------------------------

_BREAK = "\x01"
# Spaces and newlines inside <pre> survive the whitespace clean-up as these.
_PRE_SPACE = "\x02"
_PRE_NEWLINE = "\x03"
_PRE_TAB = "\x04"
_PRE_TABLE = str.maketrans(
    {" ": _PRE_SPACE, "\n": _PRE_NEWLINE, "\t": _PRE_TAB, "\r": None}
)
_SENTINELS_TABLE = dict.fromkeys((1, 2, 3, 4), None)
_SENTINELS_RE = re.compile("[\x01-\x04]")
_BLOCK_NAMES = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "caption",
        "center",
        "div",
        "dl",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "tbody",
        "tfoot",
        "thead",
        "ul",
    ]
)
# Paragraph-like elements break the line where they open and where they close;
# these only where they open.
_LINE_NAMES = frozenset({"br", "li", "tr", "dt", "dd", "option"})
_CELL_NAMES = frozenset({"td", "th"})
_TAG_RE = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9:\-]*)[^>]*(?:>|\Z)|<[!?/][^>]*(?:>|\Z)")


def _tag_replacement(m: re.Match[str]) -> str:
    name = m.group(2)
    if name is None:
        return ""
    name = name.lower()
    if name in _BLOCK_NAMES:
        return _BREAK
    if name in _LINE_NAMES:
        return "" if m.group(1) and name != "br" else _BREAK
    if name in _CELL_NAMES:
        return " "
    return ""


# Elements whose content is not text.  Only these need a Python-level loop.
# Searched in an ASCII-lowercased bytes copy (same offsets, much faster than
# a case-insensitive str pattern).
_SPECIAL_RE = re.compile(
    rb"<(?:!--|(/?)(script|style|head|title|noscript|template|xml|object|iframe|svg|math|pre)(?![a-z0-9:\-]))"
)
_RAWTEXT_TAGS = frozenset({"script", "style"})
_HTML_WINDOW = 2048
_MAX_SPECIAL_ELEMENTS = 10_000
_SPACE_RUN_RE = re.compile(r"[^\S\x01]+")
_MULTI_SPACE_RE = re.compile(r" {2,}")
_CLOSE_RE_CACHE: dict[str, re.Pattern[bytes]] = {}
_INVISIBLE_TABLE = dict.fromkeys(
    map(ord, "\u200b\u200c\u200d\u2060\ufeff\u034f\u00ad\u180e"), None
)
_BLANK_LINES_RE = re.compile(r"\n{3,}")


def _close_re(name: str) -> re.Pattern[bytes]:
    pat = _CLOSE_RE_CACHE.get(name)
    if pat is None:
        pat = re.compile(b"</" + re.escape(name.encode("ascii")) + rb"\s*>")
        _CLOSE_RE_CACHE[name] = pat
    return pat


def _html_segment_text(segment: str, pre: bool) -> str:
    segment = _TAG_RE.sub(_tag_replacement, segment)
    if not pre:
        segment = _SPACE_RUN_RE.sub(" ", segment)
    if "&" in segment:
        # "&#1;" must not turn into a sentinel
        segment = _BREAK.join(
            _html.unescape(piece).translate(_SENTINELS_TABLE) if "&" in piece else piece
            for piece in segment.split(_BREAK)
        )
        if not pre:
            segment = _SPACE_RUN_RE.sub(" ", segment)
    if pre:
        segment = segment.translate(_PRE_TABLE)
    return segment


def _html_to_text(markup: str, limit: int | None = None) -> str:
    """Readable plain text of an HTML document.

    Block elements become line breaks, script/style/head are dropped,
    entities are decoded and whitespace is collapsed (except in <pre>).
    With ``limit``, stop once about that many characters were produced.
    """
    if _SENTINELS_RE.search(markup):
        markup = markup.translate(_SENTINELS_TABLE)
    # one byte per character, ASCII lowercased: offsets are the same
    low = markup.encode("ascii", "replace").lower()
    out: list[str] = []
    produced = 0
    pos = 0
    n = len(markup)
    in_pre = False
    # name -> last closing-tag search (None: no closing tag after that point)
    closings: dict[str, re.Match[bytes] | None] = {}

    def emit(end: int) -> int:
        start = pos
        total = 0
        while start < end:
            stop = end
            if limit is not None and end - start > _HTML_WINDOW:
                # with a limit, work through long text in windows cut
                # before a tag, so that the rest need not be looked at
                stop = markup.rfind("<", start + 1, start + _HTML_WINDOW)
                if stop < 0:
                    stop = start + _HTML_WINDOW
            text = _html_segment_text(markup[start:stop], in_pre)
            out.append(text)
            total += len(text)
            start = stop
            if limit is not None and produced + total > limit:
                break
        return total

    specials = 0
    for m in _SPECIAL_RE.finditer(low):
        if m.start() < pos:
            continue  # inside a skipped element
        if limit is not None and produced > limit:
            break
        specials += 1
        if specials > _MAX_SPECIAL_ELEMENTS:
            # hostile markup: the rest is only stripped of its tags
            in_pre = False
            break
        if m.group(2) is None:  # <!--
            produced += emit(m.start())
            e = markup.find("-->", m.end())
            pos = n if e < 0 else e + 3
            continue
        name = m.group(2).decode("ascii")
        closing = bool(m.group(1))
        if name == "pre":
            produced += emit(m.start())
            pos = m.start()
            in_pre = not closing
            continue
        if closing:
            continue  # stray closing tag: removed with the other tags
        produced += emit(m.start())
        e = markup.find(">", m.end())
        tag_end = n if e < 0 else e + 1
        if e > 0 and markup[e - 1] == "/" and name not in _RAWTEXT_TAGS:
            pos = tag_end  # self-closing <svg/>
            continue
        if name in closings:
            cm = closings[name]
            if cm is not None and cm.start() < tag_end:
                cm = _close_re(name).search(low, tag_end)
                closings[name] = cm
        else:
            cm = _close_re(name).search(low, tag_end)
            closings[name] = cm
        if cm is not None:
            pos = cm.end()
        elif name in _RAWTEXT_TAGS:
            pos = n  # unclosed script/style swallows the rest, as in browsers
        else:
            pos = tag_end
    else:
        emit(n)
        pos = n
    if pos < n and (limit is None or produced <= limit):
        emit(n)
    text = "".join(out).translate(_INVISIBLE_TABLE).replace("\xa0", " ")
    lines = [
        _MULTI_SPACE_RE.sub(" ", line).strip()
        for line in text.replace(_BREAK, "\n").split("\n")
    ]
    text = _BLANK_LINES_RE.sub("\n\n", "\n".join(lines).strip("\n"))
    if _PRE_SPACE in text or _PRE_NEWLINE in text or _PRE_TAB in text:
        text = (
            text.replace(_PRE_SPACE, " ")
            .replace(_PRE_NEWLINE, "\n")
            .replace(_PRE_TAB, "\t")
        )
    return text


# ---------------------------------------------------------------------------
# addresses
# ---------------------------------------------------------------------------

_ADDR_TOKEN_RE = re.compile(
    r'"(?:[^"\\]|\\.)*"?|<[^<>,]*>?|[,;:]|\(|\s+|[^"<>,;:()\s]+|.', re.DOTALL
)
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
        comment_name = (
            _display_name([c for c in self.comments if c.strip()])
            if self.comments
            else ""
        )
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


def _address_header(
    headers: dict[bytes, list[bytes]], name: bytes
) -> list[AddressInfo]:
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
            int(year), _MONTHS[month], int(day), int(hour), int(minute), min(int(second), 59),
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
            dt = datetime.fromisoformat(
                text.replace("Z", "+00:00").replace("z", "+00:00")
            )
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


# ---------------------------------------------------------------------------
# subjects
# ---------------------------------------------------------------------------

_REPLY_WORDS = (
    r"re|fwd?|aw|sv|vs|antw|wg|tr|rv|odp|enc|res|ref|rif|"
    r"回复|回覆|答复|答覆|转发|轉寄|轉發"
)
_PREFIX_RE = re.compile(
    r"(?:\s*(?:(?:"
    + _REPLY_WORDS
    + r")\s?(?:\[\d{1,6}\]|\(\d{1,6}\))?\s?[:：]|\[[^\[\]]{0,100}\]))+"
)
_REPLY_PREFIX_RE = re.compile(
    r"(?:^|[\s\]])(?:" + _REPLY_WORDS + r")\s?(?:\[\d{1,6}\]|\(\d{1,6}\))?\s?[:：]"
)
_FWD_SUFFIX_RE = re.compile(r"(?:\s*\(fwd\))+\s*$")


def _normalise_subject(subject: str) -> tuple[str, bool]:
    s = _collapse(unicodedata.normalize("NFC", subject).casefold())
    reply = False
    m = _PREFIX_RE.match(s)
    if m is not None and m.end():
        if _REPLY_PREFIX_RE.search(m.group(0)):
            reply = True
        s = s[m.end() :]
    if s.endswith(")"):
        m2 = _FWD_SUFFIX_RE.search(s)
        if m2 is not None:
            reply = True
            s = s[: m2.start()]
    return s.strip(), reply


def normalise_subject(subject: str) -> str:
    """Thread subject: casefolded, whitespace collapsed, reply/forward
    prefixes (``Re:``, ``Fwd:``, ``Fw:``, ``Aw:``, ``Sv:``, ``Vs:``,
    ``Antw:``, ``Re[2]:``, ...), ``[list-tag]`` prefixes and trailing
    ``(fwd)`` removed."""
    try:
        return _normalise_subject(subject)[0]
    except Exception:  # pragma: no cover - defensive
        return _collapse(str(subject)).casefold()


# ---------------------------------------------------------------------------
# intro
# ---------------------------------------------------------------------------

_INTRO_PREFIX_BYTES = 8192
# The intro never looks further into a part than this (bounds the work on
# hostile input: e.g. megabytes of markup without any text).
_INTRO_MAX_PLAIN = 4 * 1024 * 1024
_INTRO_MAX_HTML = 512 * 1024


def _collapsed_head(text: str, normalise: bool = False) -> str:
    """``_collapse(text.translate(_INVISIBLE_TABLE))`` (of ``_normalise_text(text)``
    first if ``normalise``), or a prefix of it longer than INTRO_LENGTH, which is
    all the intro looks at.

    Every step works character by character (the one pair, CR LF, becomes a line
    break either way) and only merges whitespace, so doing them on a prefix of
    ``text`` gives a prefix of the whole result: a window of a few times
    INTRO_LENGTH usually suffices, where the whole would rewrite, split and join
    every word of up to 8 KB of text."""
    window = 4 * INTRO_LENGTH
    while window < len(text):
        head = text[:window]
        head = _collapse((_normalise_text(head) if normalise else head).translate(_INVISIBLE_TABLE))
        if len(head) > INTRO_LENGTH:
            return head
        window *= 4
    return _collapse((_normalise_text(text) if normalise else text).translate(_INVISIBLE_TABLE))


def _make_intro(text: str) -> str:
    s = _collapse(text.translate(_INVISIBLE_TABLE))
    if len(s) <= INTRO_LENGTH:
        return s
    cut = s[:INTRO_LENGTH]
    space = cut.rfind(" ")
    if space >= INTRO_LENGTH - 24:
        cut = cut[:space]
    return cut.rstrip() + "…"


def _intro(raw: bytes, parts: list[_Part]) -> str:
    collected: list[str] = []
    length = 0
    for part in parts:
        html = part.ctype == "text/html"
        limit = _INTRO_MAX_HTML if html else _INTRO_PREFIX_BYTES
        while True:
            data, complete = part.decoded_prefix(raw, limit)
            charset = _part_charset(part, data)
            text = (
                _decode_bytes(data, charset)
                if complete
                else _decode_prefix(data, charset)
            )
            if html:
                piece = _collapsed_head(_html_to_text(_plain_from_text(part, text), limit=4 * INTRO_LENGTH))
            elif _is_flowed(part):  # lines are joined: the whole text first
                piece = _collapsed_head(_plain_from_text(part, text))
            else:  # _plain_from_text is _normalise_text here
                piece = _collapsed_head(text, normalise=True)
            if (
                complete
                or html
                or len(piece) > INTRO_LENGTH
                or limit >= _INTRO_MAX_PLAIN
            ):
                break
            limit = min(limit * 8, _INTRO_MAX_PLAIN)
        if piece:
            collected.append(piece)
            length += len(piece) + 1
        if length > INTRO_LENGTH:
            break
    return _make_intro(" ".join(collected))


# ---------------------------------------------------------------------------
# summarise
# ---------------------------------------------------------------------------


def _first(headers: dict[bytes, list[bytes]], name: bytes) -> bytes | None:
    values = headers.get(name)
    return values[0] if values else None


def _summarise(raw: bytes) -> MessageSummary:
    parsed = _parse_message(raw)
    h = parsed.headers

    from_list = _address_header(h, b"from")
    sender_list = _address_header(h, b"sender")

    subject_raw = _first(h, b"subject")
    subject = _header_text(subject_raw) if subject_raw is not None else ""

    mid_raw = _first(h, b"message-id")
    mids = _parse_msgids(mid_raw) if mid_raw is not None else []
    irt_raw = _first(h, b"in-reply-to")
    in_reply_to = tuple(_parse_msgids(irt_raw)) if irt_raw is not None else ()
    refs_raw = _first(h, b"references")
    references = tuple(_parse_msgids(refs_raw)) if refs_raw is not None else ()

    date_raw = _first(h, b"date")
    date = _parse_date(date_raw) if date_raw is not None else None

    leaves = _leaves(parsed.root)
    attachments = tuple(
        _attachment_info(att_id, leaf, leaf.part.decoded_size(raw))
        for att_id, leaf in _attachment_leaves(leaves)
    )
    body_ids = {id(leaf.part) for leaf in leaves if leaf.is_body}
    text_parts, html_parts = _body_segments(parsed.root, body_ids)
    intro = _intro(raw, text_parts)
    if not intro and html_parts != text_parts:
        # e.g. an empty text/plain alternative next to the real HTML body
        intro = _intro(raw, html_parts)

    thread_subject, prefixed = _normalise_subject(subject)
    return MessageSummary(
        from_=from_list[0] if from_list else None,
        sender=sender_list[0] if sender_list else None,
        reply_to=tuple(_address_header(h, b"reply-to")),
        to=tuple(_address_header(h, b"to")),
        cc=tuple(_address_header(h, b"cc")),
        bcc=tuple(_address_header(h, b"bcc")),
        subject=subject,
        message_id=mids[0] if mids else None,
        in_reply_to=in_reply_to,
        references=references,
        date=date,
        intro=intro,
        attachments=attachments,
        thread_subject=thread_subject,
        is_reply=prefixed or bool(in_reply_to) or bool(references),
        header_size=parsed.header_size,
    )


def _fallback_summary(raw: bytes) -> MessageSummary:
    header_size = len(raw)
    try:
        _h, header_size = _parse_header_block(raw, 0, len(raw), frozenset())
    except Exception:  # pragma: no cover - defensive
        pass
    return MessageSummary(
        from_=None,
        sender=None,
        reply_to=(),
        to=(),
        cc=(),
        bcc=(),
        subject="",
        message_id=None,
        in_reply_to=(),
        references=(),
        date=None,
        intro="",
        attachments=(),
        thread_subject="",
        is_reply=False,
        header_size=header_size,
    )


def summarise(raw: bytes) -> MessageSummary:
    """Summary of a raw message; never raises for any bytes input."""
    data = _as_bytes(raw)
    try:
        return _summarise(data)
    except Exception:  # pragma: no cover - last-resort safety net
        return _fallback_summary(data)
