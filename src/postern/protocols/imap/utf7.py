"""Modified UTF-7 for IMAP mailbox names (RFC 3501 §5.1.3), pure.

Printable US-ASCII other than ``&`` stands for itself, ``&`` is written ``&-``,
and everything else is UTF-16BE in base64 (``,`` in place of ``/``, no
padding) between ``&`` and ``-``.  Decoding is strict, as Dovecot's is: a name
that is not canonical modified UTF-7 is refused rather than guessed at, so
that one mailbox never has two spellings.
"""

from __future__ import annotations

import binascii

__all__ = ["Utf7Error", "decode_modified_utf7", "encode_modified_utf7"]


class Utf7Error(ValueError):
    """The bytes are not valid (canonical) modified UTF-7."""


def _is_direct(code: int) -> bool:
    return 0x20 <= code <= 0x7E


def encode_modified_utf7(name: str) -> bytes:
    """Encode a mailbox name; lone surrogates are replaced by U+FFFD."""
    out = bytearray()
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be", "replace")
            encoded = binascii.b2a_base64(raw, newline=False).rstrip(b"=")
            out.extend(b"&" + encoded.replace(b"/", b",") + b"-")
            pending.clear()

    for char in name:
        code = ord(char)
        if _is_direct(code):
            flush()
            out.extend(b"&-" if char == "&" else char.encode("ascii"))
        else:
            if 0xD800 <= code <= 0xDFFF:
                char = "\ufffd"
            pending.append(char)
    flush()
    return bytes(out)


def decode_modified_utf7(data: bytes) -> str:
    """Decode a mailbox name; raises :class:`Utf7Error` when not canonical."""
    out: list[str] = []
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        if code != 0x26:  # '&'
            if not _is_direct(code):
                raise Utf7Error("mailbox name has a character that must be encoded")
            out.append(chr(code))
            i += 1
            continue
        end = data.find(b"-", i + 1)
        if end < 0:
            raise Utf7Error("unterminated &...- sequence in mailbox name")
        if end == i + 1:
            out.append("&")
            i = end + 1
            continue
        chunk = data[i + 1 : end]
        out.append(_decode_chunk(chunk))
        # Two encoded runs back to back must have been written as one.
        if end + 1 < n and data[end + 1] == 0x26 and data[end + 2 : end + 3] != b"-":
            raise Utf7Error("adjacent encoded sequences in mailbox name")
        i = end + 1
    return "".join(out)


_B64_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,")


def _decode_chunk(chunk: bytes) -> str:
    if any(c not in _B64_CHARS for c in chunk):
        raise Utf7Error("bad character in encoded mailbox name")
    if len(chunk) % 4 == 1:
        raise Utf7Error("truncated base64 in mailbox name")
    padded = chunk.replace(b",", b"/") + b"=" * (-len(chunk) % 4)
    try:
        raw = binascii.a2b_base64(padded, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise Utf7Error("bad base64 in mailbox name") from exc
    if len(raw) % 2:
        raise Utf7Error("odd number of bytes in encoded mailbox name")
    # Unused trailing bits must be zero, else the encoding is not canonical.
    if binascii.b2a_base64(raw, newline=False).rstrip(b"=").replace(b"/", b",") != chunk:
        raise Utf7Error("non-canonical base64 in mailbox name")
    try:
        text = raw.decode("utf-16-be")  # strict: rejects lone surrogates
    except UnicodeDecodeError as exc:
        raise Utf7Error("bad UTF-16 in mailbox name") from exc
    if any(_is_direct(ord(c)) for c in text):
        raise Utf7Error("printable ASCII must not be encoded in a mailbox name")
    return text
