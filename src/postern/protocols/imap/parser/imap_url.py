"""The IMAP URLs CATENATE takes (RFC 4469 §5, RFC 5092): ``/mailbox[;UIDVALIDITY=n]
/;UID=n[/;SECTION=s][/;PARTIAL=o[.l]]``, relative to the server and user of the
session. Pure parsing; resolving the message is the APPEND command's."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from postern.mime.imap_structure import SectionSpec

from ..lexer import Cursor, ImapSyntaxError
from .fetch_items import fetch_attributes


class BadUrl(ValueError):
    """The URL is not one this server can resolve."""


@dataclass(frozen=True, slots=True)
class MessageUrl:
    mailbox: str
    uid: int
    uidvalidity: int | None = None
    section: SectionSpec | None = None
    partial: tuple[int, int | None] | None = None  # (offset, length)


def _number(text: str) -> int:
    if not text.isdigit() or len(text) > 10 or int(text) == 0 or int(text) > 2**32 - 1:
        raise BadUrl(text)
    return int(text)


def parse_message_url(url: str) -> MessageUrl:
    """An absolute-path IMAP URL naming one message (or a part of one)."""
    if not url.startswith("/") or url.startswith("//"):
        raise BadUrl("only URLs of this server and user (starting with one /) are supported")
    segments = url[1:].split("/;")
    head, rest = segments[0], segments[1:]
    head = head.removesuffix("/")
    mailbox_part, _, params = head.partition(";")
    uidvalidity = None
    if params:
        key, _, value = params.partition("=")
        if key.upper() != "UIDVALIDITY":
            raise BadUrl(params)
        uidvalidity = _number(value)
    try:
        mailbox = unquote_to_bytes(mailbox_part).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadUrl("mailbox is not UTF-8") from exc
    if not mailbox:
        raise BadUrl("no mailbox")
    uid = None
    section = None
    partial = None
    for segment in rest:
        key, _, value = segment.rstrip("/").partition("=")
        key = key.upper()
        if key == "UID" and uid is None:
            uid = _number(value)
        elif key == "SECTION" and uid is not None and section is None:
            section = _section(unquote_to_bytes(value))
        elif key == "PARTIAL" and uid is not None and partial is None:
            offset, dot, length = value.partition(".")
            if not offset.isdigit() or (dot and not length.isdigit()):
                raise BadUrl(value)
            partial = (int(offset), int(length) if dot else None)
        else:
            raise BadUrl(segment)
    if uid is None:
        raise BadUrl("no UID")
    return MessageUrl(mailbox.rstrip("/") or mailbox, uid, uidvalidity, section, partial)


def _section(text: bytes) -> SectionSpec:
    try:
        attributes = fetch_attributes(Cursor(b"BODY[" + text + b"]"))
    except ImapSyntaxError as exc:
        raise BadUrl(f"section {text.decode('utf-8', 'replace')}") from exc
    spec = attributes[0].section
    if spec is None:  # pragma: no cover - BODY[...] always has one
        raise BadUrl("section")
    return spec
