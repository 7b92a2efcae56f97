"""IMAP views of a raw message: ENVELOPE, BODYSTRUCTURE, BODY[section] (pure).

Follows RFC 3501 §7.4.2 and, where the RFC leaves room, what Dovecot 2.3
answers for the same bytes (checked by hand): header values are kept as sent
(RFC 2047 words undecoded), type and parameter names keep their case, a
missing Content-Type is ``text/plain; charset=us-ascii``, a multipart without
parts gets one empty text/plain part, an address without a domain gets the
host ``MISSING_DOMAIN``, a non-existent section is empty.

The multipart splitting, transfer decoding and parameter splitting are those
of :mod:`.summary`; the header scanner here is IMAP's own, because IMAP needs
every field and Dovecot's rule for the end of the header (the first empty
line, whatever comes before it).

Values come back in a small generic shape that :mod:`postern.protocols.imap.encode`
turns into bytes: ``None`` (NIL), ``int``, ``bytes`` (a string) and tuples
(parenthesised lists).  Nothing here raises for any ``bytes`` input.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .charsets import _decode_transfer
from .imap_envelope import (
    Address,
    Envelope,
    _envelope_of,
    _nonempty,
    address_list,
    envelope,
)
from .imap_header import (
    ImapValue,
    _as_bytes,
    _Field,
    _field_value,
    _first,
    _scan_header,
    _unfolded,
)
from .parts import MAX_DEPTH, MAX_PARTS, _split_multipart, _split_semicolons

__all__ = [
    "Address",
    "address_list",
    "BodyPart",
    "Envelope",
    "HeaderFacts",
    "ImapValue",
    "SectionSpec",
    "binary_section",
    "decoded_headers",
    "decode_value",
    "body_tree",
    "bodystructure",
    "envelope",
    "has_whole_header",
    "header_facts",
    "rfc822_size",
    "section",
    "to_crlf",
]


@dataclass(frozen=True, slots=True)
class SectionSpec:
    """A FETCH BODY[...] section: part numbers and an optional text part.

    ``text`` is None, ``HEADER``, ``HEADER.FIELDS``, ``HEADER.FIELDS.NOT``,
    ``TEXT`` or ``MIME``; ``fields`` are the HEADER.FIELDS names.
    """

    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()


# ---------------------------------------------------------------------------
# MIME entities
# ---------------------------------------------------------------------------


@dataclass(slots=True)
class BodyPart:
    """One MIME entity as offsets into the raw message.

    ``children`` is set for a multipart (maybe empty), ``message`` for a
    message/rfc822 part (the encapsulated message, itself an entity).
    """

    header_start: int
    body_start: int
    body_end: int
    fields: list[_Field]
    media_type: bytes = b"text"
    media_subtype: bytes = b"plain"
    params: tuple[tuple[bytes, bytes], ...] = ()
    children: list[BodyPart] | None = None
    message: BodyPart | None = None
    defaulted: bool = True  # no usable Content-Type

    @property
    def is_multipart(self) -> bool:
        return self.children is not None

    def param(self, name: bytes) -> bytes | None:
        for key, value in self.params:
            if key.lower() == name:
                return value
        return None


_TOKEN_RE = re.compile(rb"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")


def _content_type(value: bytes) -> tuple[bytes, bytes, tuple[tuple[bytes, bytes], ...]] | None:
    text = _unfolded(value)[:65536].decode("latin-1")
    pieces = _split_semicolons(text)
    main = "".join(pieces[0].split())
    media, slash, sub = main.partition("/")
    if not slash or not _TOKEN_RE.fullmatch(media.encode("latin-1")) or not _TOKEN_RE.fullmatch(sub.encode("latin-1")):
        return None
    return media.encode("latin-1"), sub.encode("latin-1"), _raw_params(pieces[1:])


def _raw_params(pieces: Sequence[str]) -> tuple[tuple[bytes, bytes], ...]:
    """name=value pairs as written (case kept, quotes and escapes removed)."""
    params: list[tuple[bytes, bytes]] = []
    for piece in pieces:
        name, sep, value = piece.partition("=")
        name = name.strip()
        if not sep or not name or not _TOKEN_RE.fullmatch(name.encode("latin-1")):
            continue
        value = value.strip()
        if value.startswith('"'):
            inner = value[1:]
            if inner.endswith('"') and not inner.endswith('\\"'):
                inner = inner[:-1]
            value = re.sub(r"\\(.)", r"\1", inner)
        params.append((name.encode("latin-1"), value.encode("latin-1")))
        if len(params) >= 100:
            break
    return tuple(params)


class _Budget:
    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts = MAX_PARTS


def _entity(raw: bytes, start: int, end: int, default_type: tuple[bytes, bytes], depth: int, budget: _Budget) -> BodyPart:
    fields, body_start = _scan_header(raw, start, end)
    part = BodyPart(start, body_start, max(end, body_start), fields)
    if default_type == (b"text", b"plain"):
        part.params = ((b"charset", b"us-ascii"),)
    part.media_type, part.media_subtype = default_type
    ct = _first(raw, fields, b"content-type")
    parsed = _content_type(ct) if ct is not None else None
    if parsed is not None:
        part.media_type, part.media_subtype, part.params = parsed
        part.defaulted = False
        if part.media_type.lower() == b"text" and part.param(b"charset") is None:
            part.params += ((b"charset", b"us-ascii"),)  # RFC 2045 default, shown as Dovecot does
    media = part.media_type.lower()
    sub = part.media_subtype.lower()
    if depth >= MAX_DEPTH or budget.parts <= 0:
        return part
    if media == b"multipart":
        part.children = []
        boundary = part.param(b"boundary")
        ranges = None
        if boundary:
            ranges = _split_multipart(raw, part.body_start, part.body_end, boundary.rstrip(b" \t"), budget.parts)
        child_default = (b"message", b"rfc822") if sub == b"digest" else (b"text", b"plain")
        for s, e in ranges or ():
            if budget.parts <= 0:
                break
            budget.parts -= 1
            part.children.append(_entity(raw, s, e, child_default, depth + 1, budget))
    elif media == b"message" and sub in (b"rfc822", b"global"):
        budget.parts -= 1
        part.message = _entity(raw, part.body_start, part.body_end, (b"text", b"plain"), depth + 1, budget)
    return part


def body_tree(raw: bytes) -> BodyPart:
    """The MIME tree of a message (the root is the message itself)."""
    raw = _as_bytes(raw)
    return _entity(raw, 0, len(raw), (b"text", b"plain"), 0, _Budget())


# ---------------------------------------------------------------------------
# BODYSTRUCTURE / BODY
# ---------------------------------------------------------------------------


def _params_value(params: tuple[tuple[bytes, bytes], ...]) -> ImapValue:
    if not params:
        return None
    return tuple(item for pair in params for item in pair)


def _disposition(raw: bytes, part: BodyPart) -> ImapValue:
    value = _first(raw, part.fields, b"content-disposition")
    if value is None:
        return None
    pieces = _split_semicolons(_unfolded(value)[:65536].decode("latin-1"))
    kind = pieces[0].strip()
    if not kind:
        return None
    return (kind.encode("latin-1"), _params_value(_raw_params(pieces[1:])))


def _language(raw: bytes, part: BodyPart) -> ImapValue:
    value = _first(raw, part.fields, b"content-language")
    if value is None:
        return None
    tags = [t for t in re.split(rb"[\s,]+", re.sub(rb"\([^()]*\)", b" ", _unfolded(value))) if t]
    return tuple(tags[:100]) or None


def _plain_field(raw: bytes, part: BodyPart, name: bytes) -> bytes | None:
    return _nonempty(_first(raw, part.fields, name))


def _structure(raw: bytes, part: BodyPart, extensible: bool) -> ImapValue:
    if part.children is not None:
        children: list[ImapValue] = [_structure(raw, child, extensible) for child in part.children]
        if not children:
            # IMAP needs at least one part; Dovecot shows an empty text/plain.
            children.append(
                (b"text", b"plain", (b"charset", b"us-ascii"), None, None, b"7bit", 0, 0) + ((None, None, None, None) if extensible else ())
            )
        value: tuple[ImapValue, ...] = (*children, part.media_subtype)
        if extensible:
            value += (
                _params_value(part.params),
                _disposition(raw, part),
                _language(raw, part),
                _plain_field(raw, part, b"content-location"),
            )
        return value
    body = raw[part.body_start : part.body_end]
    encoding = _plain_field(raw, part, b"content-transfer-encoding") or b"7bit"
    value = (
        part.media_type,
        part.media_subtype,
        _params_value(part.params),
        _plain_field(raw, part, b"content-id"),
        _plain_field(raw, part, b"content-description"),
        encoding,
        len(body),
    )
    if part.message is not None:
        inner = part.message
        value += (
            _envelope_of(raw, inner.fields).to_imap(),
            _structure(raw, inner, extensible),
            body.count(b"\n"),
        )
    elif part.media_type.lower() == b"text":
        value += (body.count(b"\n"),)
    if extensible:
        value += (
            _plain_field(raw, part, b"content-md5"),
            _disposition(raw, part),
            _language(raw, part),
            _plain_field(raw, part, b"content-location"),
        )
    return value


def bodystructure(raw: bytes, extensible: bool = True) -> ImapValue:
    """BODYSTRUCTURE (``extensible``) or BODY, as a nested value (never raises)."""
    raw = _as_bytes(raw)
    try:
        return _structure(raw, body_tree(raw), extensible)
    except Exception:  # pragma: no cover - last-resort net; fuzzed without it
        fallback: tuple[ImapValue, ...] = (b"text", b"plain", (b"charset", b"us-ascii"), None, None, b"7bit", len(raw), raw.count(b"\n"))
        return fallback + ((None, None, None, None) if extensible else ())


# ---------------------------------------------------------------------------
# BODY[section]
# ---------------------------------------------------------------------------


def _find(root: BodyPart, numbers: tuple[int, ...]) -> BodyPart | None:
    """The entity a part number names (RFC 3501 §6.4.5 numbering)."""
    message = root  # the message whose parts the next number counts
    node: BodyPart | None = None
    for i, number in enumerate(numbers):
        if message.children is not None:
            if not 1 <= number <= len(message.children):
                return None
            node = message.children[number - 1]
        elif number == 1:
            node = message  # a non-multipart message is its own part 1
        else:
            return None
        if i + 1 < len(numbers):
            if node.message is not None:
                message = node.message
            elif node.children is not None:
                message = node
            else:
                return None
    return node


def _header_fields(raw: bytes, part: BodyPart, names: tuple[str, ...], include: bool) -> bytes:
    wanted = {n.lower().encode("latin-1", "replace") for n in names}
    out = [raw[f.line_start : f.end] for f in part.fields if (f.name in wanted) == include]
    out = [line if line.endswith(b"\n") else line + b"\r\n" for line in out]
    return b"".join(out) + b"\r\n"


def _section(raw: bytes, spec: SectionSpec) -> bytes:
    root = body_tree(raw)
    if spec.part:
        node = _find(root, spec.part)
        if node is None:
            return b""
        if spec.text is None:
            return raw[node.body_start : node.body_end]
        if spec.text == "MIME":
            return raw[node.header_start : node.body_start]
        if node.message is None:
            return b""
        node = node.message
    else:
        node = root
        if spec.text is None:
            return raw
    if spec.text == "HEADER":
        return raw[node.header_start : node.body_start]
    if spec.text == "TEXT":
        return raw[node.body_start : node.body_end]
    if spec.text == "HEADER.FIELDS":
        return _header_fields(raw, node, spec.fields, True)
    if spec.text == "HEADER.FIELDS.NOT":
        return _header_fields(raw, node, spec.fields, False)
    return b""


def section(raw: bytes, spec: SectionSpec, partial: tuple[int, int] | None = None) -> bytes:
    """The bytes of BODY[spec]<origin.count>; empty when the section does not exist."""
    raw = _as_bytes(raw)
    try:
        data = _section(raw, spec)
    except Exception:  # pragma: no cover - last-resort net; fuzzed without it
        data = b""
    if partial is not None:
        origin, count = partial
        data = data[origin : origin + count]
    return data


_QP_HEX_RE = re.compile(rb"=([0-9A-Fa-f]{2})")


def _qp_byte(m: re.Match[bytes]) -> bytes:
    return bytes((int(m.group(1), 16),))


def qp_decode(data: bytes) -> bytes:
    """Quoted-printable as RFC 2045 §6.7 has it: white space at the end of a line is
    dropped (transport may add it), ``=`` at the end of a line (white space after it
    too) joins the next line, line breaks are CRLF, ``=XX`` is a byte, and anything
    malformed is kept as it is."""
    out: list[bytes] = []
    for line in data.splitlines(keepends=True):
        content = line.rstrip(b"\r\n")
        ending = b"\r\n" if len(content) != len(line) else b""
        content = content.rstrip(b" \t")
        if content.endswith(b"="):
            content = content[:-1]
            ending = b""
        if b"=" in content:
            content = _QP_HEX_RE.sub(_qp_byte, content)
        out.append(content + ending)
    return b"".join(out)


def binary_section(raw: bytes, part: tuple[int, ...], partial: tuple[int, int] | None = None) -> bytes | None:
    """BINARY[part]: the content with its transfer encoding undone.

    ``None`` when the encoding is unknown (answer ``NO [UNKNOWN-CTE]``).
    Empty for a part that does not exist.
    """
    raw = _as_bytes(raw)
    try:
        root = body_tree(raw)
        node = _find(root, part) if part else root
        if node is None:
            return b""
        body = raw[node.body_start : node.body_end]
        if part and node.children is None and node.message is None:
            cte = (_plain_field(raw, node, b"content-transfer-encoding") or b"7bit").lower()
            if cte == b"quoted-printable":
                body = qp_decode(body)
            elif cte == b"base64":
                body = _decode_transfer(body, cte.decode())
            elif cte not in (b"7bit", b"8bit", b"binary"):
                return None
        elif not part:
            body = raw
    except Exception:  # pragma: no cover - last-resort net
        return b""
    if partial is not None:
        body = body[partial[0] : partial[0] + partial[1]]
    return body


def rfc822_size(raw: bytes) -> int:
    """RFC822.SIZE: the size of the message as it is served."""
    return len(raw)


_BARE_LF_RE = re.compile(rb"(?<!\r)\n")


def to_crlf(raw: bytes) -> bytes:
    """Bare LF line endings to CRLF (IMAP serves CRLF; store messages so)."""
    return _BARE_LF_RE.sub(b"\r\n", raw)


def decoded_headers(raw: bytes) -> list[tuple[str, str]]:
    """Every field of the message header as (lower-cased name, readable text).

    The text is unfolded with RFC 2047 words and 8-bit bytes decoded (for
    SEARCH, which compares what a person reads).  Never raises.
    """
    from .charsets import _header_text

    raw = _as_bytes(raw)
    try:
        fields, _ = _scan_header(raw, 0, len(raw))
        return [(f.name.decode("latin-1"), _header_text(_field_value(raw, f))) for f in fields]
    except Exception:  # pragma: no cover - last-resort net
        return []


@dataclass(frozen=True, slots=True)
class HeaderFacts:
    """What IMAP reads from a message's header, from one scan of it: the ENVELOPE
    (as :func:`envelope` gives it) and every field's (lower-cased name, value as
    sent), in order; :func:`decode_value` of a value is what :func:`decoded_headers`
    gives for it."""

    envelope: Envelope
    fields: tuple[tuple[str, bytes], ...]


def header_facts(raw: bytes) -> HeaderFacts:
    """:func:`envelope` and the fields of a message's header together, with the
    header scanned once (never raises)."""
    raw = _as_bytes(raw)
    try:
        fields, _ = _scan_header(raw, 0, len(raw))
    except Exception:  # pragma: no cover - last-resort net, as in envelope()
        return HeaderFacts(Envelope(), ())
    try:
        parsed = _envelope_of(raw, fields)
    except Exception:  # pragma: no cover
        parsed = Envelope()
    return HeaderFacts(parsed, tuple((f.name.decode("latin-1"), _field_value(raw, f)) for f in fields))


def decode_value(value: bytes) -> str:
    """A header field's value as :func:`decoded_headers` gives it (never raises)."""
    from .charsets import _header_text

    try:
        return _header_text(value)
    except Exception:  # pragma: no cover - last-resort net
        return ""


def has_whole_header(head: bytes) -> bool:
    """Whether the first bytes of a message hold its whole header: an empty line
    (the end of the header, by the rule of :func:`_scan_header`) is among them.
    Then :func:`header_facts` of them equals that of the whole message."""
    return head.startswith((b"\n", b"\r\n")) or b"\n\n" in head or b"\n\r\n" in head
