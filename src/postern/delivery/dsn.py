"""Delivery status notifications (bounces), RFC 3464 / RFC 6522 / RFC 6533.

Pure functions: :func:`build_dsn` returns the bytes of a notification to put in the
sender's INBOX (or to queue), :func:`is_bounce_worthy` says whether a failed message
may be bounced at all.

The notification is ``multipart/report; report-type=delivery-status`` with three
parts: a plain-words explanation (``text/plain``, UTF-8), the machine-readable
``message/delivery-status`` (7-bit: non-ASCII recipient addresses use RFC 6533's
``utf-8`` address type in its ``utf-8-addr-xtext`` form, non-ASCII diagnostic text the
same ``\\x{HEX}`` escapes) and the original's header section (``text/rfc822-headers``)
or, on request, the whole original (``message/rfc822``).  Lines end with CRLF; every
value taken from the original or from a remote server is cleaned of line breaks and
control characters before it is written.
"""

from __future__ import annotations

import base64
import email.policy
import quopri
import re
import secrets
import textwrap
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.utils import format_datetime

from postern.accounts.addressing import normalise_domain
from postern.errors import DomainError

__all__ = ["FailedRecipient", "build_dsn", "is_bounce_worthy"]

ACTIONS = ("failed", "delayed")
# The original's header section is cut (at a line end) beyond this many bytes.
MAX_ATTACHED_HEADER_BYTES = 64 * 1024
MAX_DIAGNOSTIC_CHARS = 2000
MAX_ADDRESS_CHARS = 512

_STATUS = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")
_MTA_NAME = re.compile(r"^[A-Za-z0-9_.:\-\[\]]{1,255}$")
_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True)
class FailedRecipient:
    address: str
    status: str  # RFC 3463 enhanced status, "5.1.1"
    action: str  # "failed" | "delayed"
    diagnostic: str  # the remote server's reply, "550 5.1.1 user unknown"
    remote_mta: str | None
    last_attempt: datetime


def build_dsn(
    *,
    original: bytes,
    envelope_from: str,
    recipients: Sequence[FailedRecipient],
    reporting_mta: str,
    arrival_date: datetime,
    envelope_id: str | None = None,
    include_full_message: bool = False,
    now: datetime | None = None,
    message_id_domain: str,
) -> bytes:
    """The notification for ``recipients`` of ``original``, addressed to ``envelope_from``.

    Raises ValueError (TypeError for arguments of the wrong type) for what no
    notification can be built from: the null sender
    (never bounce a bounce; ask :func:`is_bounce_worthy` first), no recipients, an
    action other than ``failed``/``delayed``, an invalid ``reporting_mta`` or
    ``message_id_domain``.  Anything in ``original``, the addresses or the
    diagnostics is made safe instead.

    ``include_full_message`` attaches the original as ``message/rfc822``; an original
    that cannot be carried as 7bit or 8bit (NUL bytes, lines over 998 bytes) is
    attached as its header section only.
    """
    if isinstance(original, (bytearray, memoryview)):
        original = bytes(original)
    if not isinstance(original, bytes):
        raise TypeError("original must be bytes")
    recipients = list(recipients)
    if not recipients:
        raise ValueError("a delivery status notification needs at least one recipient")
    for recipient in recipients:
        if recipient.action not in ACTIONS:
            raise ValueError(f"action must be one of {', '.join(ACTIONS)}, not {recipient.action!r}")
    sender = _clean_address(envelope_from)
    if not sender or sender.lower() == "<>":
        raise ValueError("no notification is sent to the null sender")
    mta = _domain(reporting_mta, "reporting_mta")
    id_domain = _domain(message_id_domain, "message_id_domain")
    now = _aware(now) if now is not None else datetime.now(UTC)
    all_delayed = all(r.action == "delayed" for r in recipients)

    normalised = _normalise_line_ends(original)
    attach_full = include_full_message and _is_8bit_clean(normalised)
    header_section = _header_section(normalised)

    text_part = _text_part(recipients, mta, attach_full)
    status_part = _status_part(recipients, mta, _aware(arrival_date), envelope_id)
    original_part = _message_part(normalised) if attach_full else _headers_part(header_section)

    parts = [text_part, status_part, original_part]
    boundary = _boundary(parts)
    subject = "Delayed Mail (still being retried)" if all_delayed else "Undelivered Mail Returned to Sender"
    head = [
        f"From: Mail Delivery System <MAILER-DAEMON@{mta}>",
        f"To: <{sender}>",
        f"Subject: {subject}",
        f"Date: {format_datetime(now)}",
        f"Message-ID: <dsn.{secrets.token_hex(16)}@{id_domain}>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=delivery-status;",
        f'\tboundary="{boundary}"',
    ]
    out = bytearray("\r\n".join(head).encode("utf-8") + b"\r\n\r\n")
    out += b"This is a MIME-encapsulated message: a delivery status notification.\r\n"
    for part in parts:
        out += b"\r\n--" + boundary.encode("ascii") + b"\r\n" + part
    out += b"\r\n--" + boundary.encode("ascii") + b"--\r\n"
    return bytes(out)


def is_bounce_worthy(envelope_from: str, original_headers: bytes) -> bool:
    """False when a failure must not be bounced: the null sender ``<>`` (RFC 5321
    6.1 / RFC 3464: never bounce a bounce), a ``MAILER-DAEMON`` sender, or a message
    that is itself a delivery status notification.  Auto-submitted mail with a
    real sender is bounced (RFC 3834 leaves that to the null sender)."""
    sender = _clean_address(envelope_from if isinstance(envelope_from, str) else "")
    if sender.startswith("<") and sender.endswith(">"):
        sender = sender[1:-1].strip()
    if not sender:
        return False
    local = sender.rpartition("@")[0] or sender
    if local.strip('"').lower() == "mailer-daemon":
        return False
    try:
        headers = BytesHeaderParser(policy=email.policy.default).parsebytes(bytes(original_headers))
        if headers.get_content_type() == "multipart/report":
            report_type = str(headers.get_param("report-type", "") or "").strip().lower()
            if report_type in ("delivery-status", "global-delivery-status"):
                return False
    except Exception:  # a header section too broken to read is no reason to drop a bounce
        pass
    return True


# --- the three parts -------------------------------------------------------------


def _text_part(recipients: list[FailedRecipient], mta: str, attach_full: bool) -> bytes:
    failed = [r for r in recipients if r.action == "failed"]
    delayed = [r for r in recipients if r.action == "delayed"]
    paragraphs = [f"This is the mail system at {mta}."]
    attached = "Your message is attached below." if attach_full else "The headers of your message are attached below."
    if failed:
        paragraphs.append(
            "Your message could not be delivered to the recipients listed below, and the mail system has stopped trying. " + attached
        )
        paragraphs.extend(_explain(r) for r in failed)
    if delayed:
        paragraphs.append(
            (
                "Your message has also not been delivered yet to the recipients below. "
                if failed
                else "Your message has not been delivered yet to the recipients below. "
            )
            + "The mail system will keep trying and will tell you if it finally "
            "fails. You do not need to send it again." + ("" if failed else " " + attached)
        )
        paragraphs.extend(_explain(r) for r in delayed)
    text = "\r\n\r\n".join(paragraphs) + "\r\n"
    body = text.encode("utf-8")
    if body.isascii():
        cte = "7bit"
    else:
        cte = "quoted-printable"
        body = quopri.encodestring(text.replace("\r\n", "\n").encode("utf-8")).replace(b"\n", b"\r\n")
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
    headers = f"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: {cte}\r\nContent-Description: Notification\r\n\r\n"
    return headers.encode("ascii") + body


def _explain(recipient: FailedRecipient) -> str:
    address = _clean_address(recipient.address) or "(no address)"
    status = _status(recipient)
    lines = [f"<{address}>"]
    lines += textwrap.wrap(_reason(status, recipient.action), 72, initial_indent="    ", subsequent_indent="    ")
    diagnostic = _clean_text(recipient.diagnostic, MAX_DIAGNOSTIC_CHARS)
    if diagnostic:
        remote = _mta_name(recipient.remote_mta)
        said = f"The recipient's mail server ({remote}) said:" if remote else "The mail system said:"
        lines += textwrap.wrap(
            f"{said} {diagnostic}",
            72,
            initial_indent="    ",
            subsequent_indent="    ",
            break_on_hyphens=False,
        )
    return "\r\n".join(lines)


_REASONS: dict[tuple[int, int], str] = {
    (1, 1): "The address does not exist at the recipient's domain.",
    (1, 2): "The recipient's domain does not exist or cannot receive mail.",
    (1, 3): "The recipient's address is not a valid email address.",
    (1, 6): "The recipient has moved and left no forwarding address.",
    (1, 10): "The recipient's domain says it accepts no mail at all (a null MX).",
    (2, 1): "The recipient's mailbox is disabled and does not accept messages.",
    (2, 2): "The recipient's mailbox is full.",
    (2, 3): "The message is larger than the recipient's mailbox accepts.",
    (3, 4): "The message is larger than the recipient's mail server accepts.",
    (4, 1): "The recipient's mail server did not answer.",
    (4, 2): "The connection to the recipient's mail server was lost.",
    (4, 4): "No mail server could be found for the recipient's domain.",
    (4, 7): "The message could not be delivered in time, so the mail system gave up.",
    (5, 3): "The message had too many recipients for the recipient's mail server.",
    (7, 1): "The recipient's mail server refused the message by policy (for example, as spam).",
}


def _reason(status: str, action: str) -> str:
    _, subject, detail = (int(x) for x in status.split("."))
    if (subject, detail) in _REASONS:
        return _REASONS[(subject, detail)]
    if subject == 7:
        return "The recipient's mail server refused the message for policy or security reasons."
    if action == "delayed":
        return "The recipient's mail server is not accepting the message for now."
    return "The recipient's mail server refused the message."


def _status_part(recipients: list[FailedRecipient], mta: str, arrival: datetime, envelope_id: str | None) -> bytes:
    blocks: list[list[str]] = []
    message_fields = []
    if envelope_id:
        # The ENVID as decoded from the MAIL command's xtext (RFC 3461 4.4), on one line.
        envid = _escape_non_ascii(_clean_text(envelope_id, 100))
        if envid:
            message_fields.append(f"Original-Envelope-Id: {envid}")
    message_fields.append(f"Reporting-MTA: dns; {mta}")
    message_fields.append(f"Arrival-Date: {format_datetime(arrival)}")
    blocks.append(message_fields)
    for recipient in recipients:
        fields = [f"Final-Recipient: {_typed_address(recipient.address)}"]
        fields.append(f"Action: {recipient.action}")
        fields.append(f"Status: {_status(recipient)}")
        remote = _mta_name(recipient.remote_mta)
        if remote:
            fields.append(f"Remote-MTA: dns; {remote}")
        diagnostic = _clean_text(recipient.diagnostic, MAX_DIAGNOSTIC_CHARS)
        if diagnostic:
            fields.append(_fold(f"Diagnostic-Code: smtp; {_escape_non_ascii(diagnostic)}"))
        fields.append(f"Last-Attempt-Date: {format_datetime(_aware(recipient.last_attempt))}")
        blocks.append(fields)
    body = "\r\n\r\n".join("\r\n".join(block) for block in blocks) + "\r\n"
    headers = "Content-Type: message/delivery-status\r\nContent-Description: Delivery report\r\n\r\n"
    return (headers + body).encode("ascii")


def _headers_part(header_section: bytes) -> bytes:
    if len(header_section) > MAX_ATTACHED_HEADER_BYTES:
        cut = header_section.rfind(b"\r\n", 0, MAX_ATTACHED_HEADER_BYTES)
        header_section = header_section[: cut + 2] if cut > 0 else b""
    description = "Content-Description: Undelivered Message Headers\r\n"
    if _is_8bit_clean(header_section) and header_section.isascii():
        head = "Content-Type: text/rfc822-headers\r\nContent-Transfer-Encoding: 7bit\r\n"
        body = header_section
    elif _is_8bit_clean(header_section) and _is_utf8(header_section):
        head = "Content-Type: text/rfc822-headers; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
        body = header_section
    else:  # NUL bytes, overlong lines, bytes that are not UTF-8: carried exactly in base64
        head = "Content-Type: text/rfc822-headers\r\nContent-Transfer-Encoding: base64\r\n"
        body = _base64_lines(header_section)
    return (head + description + "\r\n").encode("ascii") + body


def _message_part(message: bytes) -> bytes:
    cte = "7bit" if message.isascii() else "8bit"
    head = f"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: {cte}\r\nContent-Description: Undelivered Message\r\n\r\n"
    body = message if message.endswith(b"\r\n") else message + b"\r\n"
    return head.encode("ascii") + body


# --- helpers ---------------------------------------------------------------------


def _aware(value: datetime) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError("dates must be datetime values")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _domain(value: str, field: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a domain name")
    try:
        return normalise_domain(value, field)[0]
    except DomainError:
        raise ValueError(f"{field} is not a valid domain name: {value[:100]!r}") from None


def _clean_text(value: object, limit: int) -> str:
    """One line of text: line breaks, controls, format characters (bidi overrides)
    and lone surrogates become spaces; runs of spaces collapse; cut at ``limit``."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return ""
    chars = [" " if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") else c for c in value]
    text = " ".join("".join(chars).split())
    if len(text) > limit:
        text = text[: limit - 6].rstrip() + " [...]"
    return text


def _clean_address(value: object) -> str:
    text = _clean_text(value, MAX_ADDRESS_CHARS)
    text = text.strip()
    if text.startswith("<") and text.endswith(">") and len(text) >= 2:
        inner = text[1:-1].strip()
        return "<>" if not inner else inner.replace("<", "").replace(">", "")
    return text.replace("<", "").replace(">", "")


def _typed_address(value: str) -> str:
    """``rfc822; addr`` for ASCII addresses, RFC 6533's ``utf-8; addr`` (xtext form,
    7-bit) for the others."""
    address = _clean_address(value) or "unknown"
    if address.isascii():
        return f"rfc822; {address}"
    return f"utf-8; {_utf8_addr_xtext(address)}"


def _utf8_addr_xtext(address: str) -> str:
    # RFC 6533 section 3: QCHAR stays, anything else is \x{HEXPOINT} (uppercase hex,
    # at least two digits).
    out = []
    for c in address:
        code = ord(c)
        if 0x21 <= code <= 0x7E and c not in "\\+=":
            out.append(c)
        else:
            out.append(f"\\x{{{code:02X}}}")
    return "".join(out)


def _escape_non_ascii(text: str) -> str:
    return "".join(c if c.isascii() else f"\\x{{{ord(c):02X}}}" for c in text)


def _status(recipient: FailedRecipient) -> str:
    status = recipient.status.strip() if isinstance(recipient.status, str) else ""
    if _STATUS.match(status):
        return status
    return "4.0.0" if recipient.action == "delayed" else "5.0.0"


def _mta_name(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    name = value.strip().rstrip(".")
    if not name:
        return None
    if _MTA_NAME.match(name):
        return name.lower()
    try:
        return normalise_domain(name)[0]
    except DomainError:
        return None


def _fold(line: str, limit: int = 78) -> str:
    """Fold an ASCII field at spaces; a word too long for one line is split at 900
    characters so that no line exceeds RFC 5322's 998."""
    words = line.split(" ")
    lines: list[str] = []
    current = ""
    for word in words:
        while len(word) > 900:
            if current:
                lines.append(current)
            lines.append((" " if lines else "") + word[:900])
            current = ""
            word = word[900:]
        if not current:
            current = (" " if lines else "") + word
        elif len(current) + 1 + len(word) <= limit:
            current += " " + word
        else:
            lines.append(current)
            current = " " + word
    if current.strip():
        lines.append(current)
    return "\r\n".join(lines)


def _normalise_line_ends(raw: bytes) -> bytes:
    return _LINE_END.sub(b"\r\n", raw)


def _header_section(message: bytes) -> bytes:
    """The header fields of a CRLF-normalised message, each line CRLF-terminated."""
    if message.startswith(b"\r\n"):
        return b""
    end = message.find(b"\r\n\r\n")
    section = message if end < 0 else message[: end + 2]
    if section and not section.endswith(b"\r\n"):
        section += b"\r\n"
    return section


def _is_8bit_clean(data: bytes) -> bool:
    """No NUL and no line over 998 bytes (RFC 5322 2.1.1), line ends already CRLF."""
    if b"\x00" in data:
        return False
    return all(len(line) <= 998 for line in data.split(b"\r\n"))


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _base64_lines(data: bytes) -> bytes:
    encoded = base64.b64encode(data)
    return b"".join(encoded[i : i + 76] + b"\r\n" for i in range(0, len(encoded), 76))


def _boundary(parts: list[bytes]) -> str:
    while True:
        boundary = f"postern-dsn-{secrets.token_hex(12)}"
        marker = b"--" + boundary.encode("ascii")
        if not any(marker in part for part in parts):
            return boundary
