"""Messages APPENDed as literal8 (RFC 3516 §4.4): their binary parts are stored
base64-encoded, so that BODY[...] (a plain literal) never carries a NUL and BINARY[...]
gives the original bytes back, as Dovecot does. Pure; never raises."""

from __future__ import annotations

import base64

from .imap_structure import BodyPart, _plain_field, body_tree, to_crlf

_CTE = b"content-transfer-encoding"


def _leaves(part: BodyPart) -> list[BodyPart]:
    if part.children is not None:
        return [leaf for child in part.children for leaf in _leaves(child)]
    if part.message is not None:
        return _leaves(part.message)
    return [part]


def _needs_encoding(raw: bytes, part: BodyPart) -> bool:
    cte = (_plain_field(raw, part, _CTE) or b"7bit").strip().lower()
    if cte in (b"base64", b"quoted-printable"):
        return False
    return cte == b"binary" or b"\x00" in raw[part.body_start : part.body_end]


def _base64_lines(data: bytes) -> bytes:
    encoded = base64.b64encode(data)
    return b"".join(encoded[i : i + 76] + b"\r\n" for i in range(0, len(encoded), 76))


def encode_binary_parts(raw: bytes) -> bytes:
    """The message with each part that holds binary data (a NUL, or CTE ``binary``)
    base64-encoded and its Content-Transfer-Encoding said so; bare LFs elsewhere
    become CRLF, as in any APPEND."""
    try:
        root = body_tree(raw)
        edits: list[tuple[int, int, bytes]] = []
        for part in _leaves(root):
            if not _needs_encoding(raw, part):
                continue
            fields = [f for f in part.fields if f.name == _CTE]
            header = b"Content-Transfer-Encoding: base64\r\n"
            if fields:
                edits.append((fields[0].line_start, fields[0].end, header))
                for extra in fields[1:]:
                    edits.append((extra.line_start, extra.end, b""))
            elif part.fields:
                end = part.fields[-1].end
                edits.append((end, end, header))
            else:
                edits.append((part.header_start, part.header_start, header))
            edits.append((part.body_start, part.body_end, b"\x00BODY%d\x00" % len(edits)))
        if not edits:
            return to_crlf(raw)
        bodies: dict[bytes, bytes] = {}
        out = raw
        for start, end, text in sorted(edits, key=lambda e: e[0], reverse=True):
            if text.startswith(b"\x00BODY"):
                bodies[text] = _base64_lines(raw[start:end])
            out = out[:start] + text + out[end:]
        out = to_crlf(out)
        for marker, encoded in bodies.items():
            out = out.replace(marker, encoded, 1)
        return out
    except Exception:  # noqa: BLE001  # pragma: no cover - last-resort net: store as sent
        return to_crlf(raw)
