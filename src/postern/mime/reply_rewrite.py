"""A mailbox's reply through a reverse alias, rewritten so that it leaves from the
alias and reveals nothing of the mailbox (pure functions over bytes).

* ``From`` becomes the alias (with its display name when it has one).
* Reverse aliases in ``To`` and ``Cc`` become their contacts' addresses (with their
  names); a mailbox address there becomes the alias.
* Fields that tell where the reply came from are removed: ``Received`` and its
  relatives, ``Return-Path``, ``Sender``, ``Bcc``, DKIM and ARC signatures (the
  mailbox domain's; they would not verify after the rewrite anyway),
  ``Authentication-Results`` ...
* A ``Message-ID`` at the mailbox's domain is replaced by one at the alias's domain
  (derived from the old one, so that the same reply always gets the same id);
  ``In-Reply-To`` and ``References`` are kept, for threading on the contact's side.
* Every other occurrence of a mailbox address, in any header field (encoded words
  included) or body part (plain, quoted-printable or base64 text, ``%40`` and
  ``&#64;`` forms too), case-insensitively, becomes the alias; every occurrence of a
  contact's reverse alias becomes the contact's address. The rest of the body is left
  byte for byte as it was.

Nothing here raises for any input: a body that cannot be walked as MIME still gets
the literal replacement.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses

from . import header_fields, header_writing

__all__ = ["ReplyIdentity", "addresses_in", "mentions", "rewrite_reply"]

# Fields that tell where a message came from, who handled it or who signed it.
_DROPPED = frozenset(
    {
        "received",
        "x-received",
        "x-originating-ip",
        "x-originating-email",
        "x-sender",
        "x-sender-ip",
        "x-envelope-from",
        "x-envelope-to",
        "x-apparently-to",
        "x-original-to",
        "x-forwarded-to",
        "x-forwarded-for",
        "x-authenticated-sender",
        "x-authenticated-user",
        "return-path",
        "sender",
        "bcc",
        "resent-bcc",
        "delivered-to",
        "authentication-results",
        "received-spf",
        "dkim-signature",
        "domainkey-signature",
        "x-google-dkim-signature",
    }
)
_DROPPED_PREFIXES = ("arc-", "x-ms-exchange-", "x-gm-", "x-google-", "x-postern-")
_ENCODED_WORD = re.compile(rb"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_MSG_ID = re.compile(rb"<([^<>@\s]+)@([^<>\s]+)>")
_MAX_DEPTH = 20
# Bodies larger than this are not decoded part by part (the literal pass still runs).
_MAX_WALK = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ReplyIdentity:
    alias: str  # the address the reply leaves from
    alias_name: str | None = None
    # Addresses that must appear nowhere (the mailbox's, in every form it may take).
    hidden: Sequence[str] = ()
    # Reverse alias (lowercase) -> (contact's address, contact's name or None).
    contacts: Mapping[str, tuple[str, str | None]] = field(default_factory=dict)


def addresses_in(raw: bytes, fields: Iterable[str] = ("to", "cc")) -> list[str]:
    """The addresses of the header ``fields`` (lowercase names), in order."""
    try:
        head, _, _ = _split(raw)
        wanted = set(fields)
        values = [_text(value) for name, _, value in _fields(head) if name in wanted]
        return [address for _, address in getaddresses(values) if address and "@" in address]
    except Exception:
        return []


def mentions(raw: bytes, address: str) -> bool:
    """Whether ``address`` appears literally in ``raw``, case-insensitively."""
    return bool(address) and address.lower().encode("utf-8", "replace") in raw.lower()


def rewrite_reply(raw: bytes, identity: ReplyIdentity) -> bytes:
    replacements = _replacements(identity)
    try:
        head, separator, body = _split(raw)
        head = _rewrite_head(head, identity, replacements)
        if len(body) <= _MAX_WALK:
            body = _rewrite_entity_body(raw[: len(raw) - len(body)], body, replacements, 0)
        out = head + separator + body
    except Exception:  # pragma: no cover - the steps above are total; belt and braces
        out = raw
    return _literal(out, replacements)


# --- replacements ------------------------------------------------------------------


def _variants(address: str) -> list[str]:
    local, _, domain = address.rpartition("@")
    if not local:
        return [address]
    return [address, f"{local}%40{domain}", f"{local}&#64;{domain}", f"{local}&#x40;{domain}"]


def _replacements(identity: ReplyIdentity) -> list[tuple[bytes, bytes]]:
    """(old, new) pairs, longest first, each old form with the same form of new."""
    pairs: dict[bytes, bytes] = {}
    sources: list[tuple[str, str]] = [(hidden, identity.alias) for hidden in identity.hidden if hidden]
    sources += [(reverse, contact) for reverse, (contact, _) in identity.contacts.items() if reverse]
    for old, new in sources:
        for old_form, new_form in zip(_variants(old), _variants(new), strict=True):
            key = old_form.lower().encode("utf-8", "replace")
            if key and key != new_form.lower().encode("utf-8", "replace"):
                pairs.setdefault(key, new_form.encode("utf-8", "replace"))
    return sorted(pairs.items(), key=lambda pair: -len(pair[0]))


def _literal(data: bytes, replacements: list[tuple[bytes, bytes]]) -> bytes:
    lowered = data.lower()
    for old, new in replacements:
        if old in lowered:
            data = re.sub(re.escape(old), lambda _m, new=new: new, data, flags=re.IGNORECASE)  # type: ignore[misc]
            lowered = data.lower()
    return data


def _found(data: bytes, replacements: list[tuple[bytes, bytes]]) -> bool:
    lowered = data.lower()
    return any(old in lowered for old, _ in replacements)


# --- header section ----------------------------------------------------------------


def _split(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """(header section with its last line break, the blank line, body)."""
    if raw.startswith((b"\r\n", b"\n")):
        blank = b"\r\n" if raw.startswith(b"\r\n") else b"\n"
        return b"", blank, raw[len(blank) :]
    match = re.search(rb"\r?\n(\r?\n)", raw)
    if match is None:
        return raw, b"", b""
    return raw[: match.start(1)], match.group(1), raw[match.end(1) :]


def _fields(head: bytes) -> list[tuple[str, bytes, bytes]]:
    """(lowercase name, the field's raw bytes with its line breaks, unfolded value)."""
    fields: list[list[bytes]] = []
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)
        else:
            fields.append([line])
    out = []
    for parts in fields:
        whole = b"".join(parts)
        # The program's one rule for a field name (header_fields): "From :" is a From.
        name = header_fields.field_name(whole)
        value = whole.partition(b":")[2] if name is not None else b""
        out.append(((name or b"").decode("latin-1"), whole, re.sub(rb"\r?\n", b"", value).strip()))
    return out


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def _eol(whole: bytes) -> bytes:
    return b"\r\n" if whole.endswith(b"\r\n") or not whole.endswith(b"\n") else b"\n"


def _render_address(name: str | None, address: str) -> str:
    return header_writing.mailbox(_decoded_words(name or ""), address)


def _decoded_words(text: str) -> str:
    if "=?" not in text:
        return text
    try:
        return str(make_header(decode_header(text)))
    except Exception:
        return text


def _rewrite_head(head: bytes, identity: ReplyIdentity, replacements: list[tuple[bytes, bytes]]) -> bytes:
    hidden = {h.lower() for h in identity.hidden if h}
    hidden_domains = {h.rpartition("@")[2] for h in hidden if "@" in h}
    alias_domain = identity.alias.rpartition("@")[2].lower()
    out: list[bytes] = []
    wrote_from = False
    had_message_id = False
    eol = b"\r\n"
    for name, whole, value in _fields(head):
        eol = _eol(whole)
        if not name:
            out.append(_literal(whole, replacements))  # not a field; kept, cleaned
            continue
        if name in _DROPPED or name.startswith(_DROPPED_PREFIXES):
            continue
        if name == "from":
            if not wrote_from:
                out.append(header_writing.field("From", _render_address(identity.alias_name, identity.alias), eol))
                wrote_from = True
            continue
        if name in ("to", "cc", "reply-to"):
            out.append(_rewrite_addresses(whole, value, identity, hidden, eol))
            continue
        if name == "message-id":
            had_message_id = True
            out.append(_rewrite_message_id(whole, hidden_domains, alias_domain))
            continue
        out.append(_rewrite_words(whole, replacements))
    if not wrote_from:
        out.insert(0, header_writing.field("From", _render_address(identity.alias_name, identity.alias), eol))
    if not had_message_id:
        digest = hashlib.sha256(head).hexdigest()[:32]
        out.append(b"Message-ID: <" + digest.encode() + b"@" + alias_domain.encode("utf-8", "replace") + b">" + eol)
    return b"".join(out)


def _rewrite_addresses(whole: bytes, value: bytes, identity: ReplyIdentity, hidden: set[str], eol: bytes) -> bytes:
    name = whole.partition(b":")[0].strip()
    pairs = getaddresses([_text(value)])
    changed = False
    rendered: list[str] = []
    for display, address in pairs:
        key = address.strip().lower()
        if key in identity.contacts:
            contact, contact_name = identity.contacts[key]
            rendered.append(_render_address(contact_name, contact))
            changed = True
        elif key in hidden:
            rendered.append(_render_address(identity.alias_name, identity.alias))
            changed = True
        elif address:
            rendered.append(_render_address(display, address))
    if not changed:
        return whole
    if not rendered:
        return b""
    return header_writing.field(name.decode("ascii", "replace"), ", ".join(rendered), eol)


def _rewrite_message_id(whole: bytes, hidden_domains: set[str], alias_domain: str) -> bytes:
    def replace(match: re.Match[bytes]) -> bytes:
        domain = match.group(2).decode("utf-8", "replace").lower().rstrip(".")
        if any(domain == d or domain.endswith("." + d) for d in hidden_domains):
            digest = hashlib.sha256(match.group(0)).hexdigest()[:32]
            return b"<" + digest.encode() + b"@" + alias_domain.encode("utf-8", "replace") + b">"
        return match.group(0)

    return _MSG_ID.sub(replace, whole)


def _rewrite_words(whole: bytes, replacements: list[tuple[bytes, bytes]]) -> bytes:
    """Encoded words (RFC 2047) that name a hidden address, decoded, fixed and encoded
    again; the literal pass does the rest."""
    if b"=?" not in whole or not replacements:
        return whole

    def replace(match: re.Match[bytes]) -> bytes:
        try:
            text = str(make_header(decode_header(match.group(0).decode("ascii"))))
        except Exception:
            return match.group(0)
        data = text.encode("utf-8")
        if not _found(data, replacements):
            return match.group(0)
        fixed = _literal(data, replacements)
        return b"=?utf-8?b?" + base64.b64encode(fixed) + b"?="

    return _ENCODED_WORD.sub(replace, whole)


# --- body --------------------------------------------------------------------------


def _rewrite_entity_body(head: bytes, body: bytes, replacements: list[tuple[bytes, bytes]], depth: int) -> bytes:
    """The body of the entity whose header section is ``head``: multiparts walked,
    encoded text decoded where it names a hidden address. Identity-encoded content is
    left to the literal pass."""
    if depth > _MAX_DEPTH or not replacements or not body:
        return body
    headers = BytesHeaderParser(policy=compat32).parsebytes(head + b"\r\n")
    ctype = headers.get_content_type()
    if ctype.startswith("multipart/"):
        boundary = headers.get_param("boundary")
        if not isinstance(boundary, str) or not boundary:
            return body
        return _rewrite_multipart(body, boundary.encode("utf-8", "replace"), replacements, depth)
    cte = str(headers.get("Content-Transfer-Encoding", "")).strip().lower()
    if ctype == "message/rfc822" and cte in ("", "7bit", "8bit", "binary"):
        inner_head, separator, inner_body = _split(body)
        return inner_head + separator + _rewrite_entity_body(inner_head, inner_body, replacements, depth + 1)
    if not ctype.startswith("text/"):
        return body
    if cte == "quoted-printable":
        return _requote(body, replacements)
    if cte == "base64":
        return _rebase64(body, replacements)
    return body


def _rewrite_multipart(body: bytes, boundary: bytes, replacements: list[tuple[bytes, bytes]], depth: int) -> bytes:
    delimiter = re.compile(rb"(?m)^--" + re.escape(boundary) + rb"(--)?[ \t]*\r?$")
    matches = list(delimiter.finditer(body))
    if not matches:
        return body
    out = [body[: matches[0].start()]]  # preamble
    for index, match in enumerate(matches):
        out.append(match.group(0))
        if match.group(1):  # the close delimiter: the rest is the epilogue
            out.append(body[match.end() :])
            return b"".join(out)
        start = match.end()
        end = matches[index + 1].start() if index + 1 < len(matches) else len(body)
        part = body[start:end]
        # The line break after the delimiter and the one before the next belong to them.
        lead = b"\r\n" if part.startswith(b"\r\n") else (b"\n" if part.startswith(b"\n") else b"")
        part = part[len(lead) :]
        tail = b"\r\n" if part.endswith(b"\r\n") else (b"\n" if part.endswith(b"\n") else b"")
        part = part[: len(part) - len(tail)] if tail else part
        part_head, separator, part_body = _split(part)
        out.append(lead + part_head + separator + _rewrite_entity_body(part_head, part_body, replacements, depth + 1) + tail)
    return b"".join(out)


def _requote(body: bytes, replacements: list[tuple[bytes, bytes]]) -> bytes:
    try:
        decoded = binascii.a2b_qp(body)
    except (binascii.Error, ValueError):
        return body
    if not _found(decoded, replacements):
        return body
    fixed = _literal(decoded, replacements)
    crlf = b"\r\n" in body
    lines = re.split(rb"\r?\n", fixed)
    encoded = [binascii.b2a_qp(line, quotetabs=False, istext=False, header=False) for line in lines]
    # b2a_qp breaks long lines with "=\n": keep the body's line breaks.
    joined = (b"\r\n" if crlf else b"\n").join(encoded)
    return re.sub(rb"=\r?\n", b"=\r\n" if crlf else b"=\n", joined)


def _rebase64(body: bytes, replacements: list[tuple[bytes, bytes]]) -> bytes:
    try:
        decoded = base64.b64decode(re.sub(rb"[^A-Za-z0-9+/=]", b"", body), validate=False)
    except (binascii.Error, ValueError):
        return body
    if not _found(decoded, replacements):
        return body
    fixed = _literal(decoded, replacements)
    crlf = b"\r\n" in body or b"\n" not in body
    encoded = base64.encodebytes(fixed)
    if crlf:
        encoded = encoded.replace(b"\n", b"\r\n")
    return encoded if body.endswith((b"\n",)) else encoded.rstrip(b"\r\n")
