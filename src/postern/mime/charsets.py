"""From bytes to text, never raising: charset labels (resolved to safe codecs, guessed
when they say nothing), transfer encodings (base64, quoted-printable), RFC 2047
encoded words, and the clean-up of header text."""

from __future__ import annotations

import binascii
import codecs
import encodings
import encodings.aliases
import pkgutil
import re
from functools import lru_cache

#: Subject, Message-ID, In-Reply-To and References are read up to this many
#: bytes.
MAX_HEADER_TEXT = 64 * 1024


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
    return _clean_line(decode_words(_bytes_to_str(_unfold(_cap(value, MAX_HEADER_TEXT))))).strip()
