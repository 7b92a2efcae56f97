"""Autoreplies (RFC 3834): whether a message gets one, and the reply itself. Pure:
the once-per-interval bookkeeping is the caller's (``rules.service``)."""

from __future__ import annotations

import re
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, make_msgid
from typing import Any

from postern import mime
from postern.mime import header_writing
from postern.rules.engine import Message

# Envelope senders that never get an autoreply (WildDuck's test, and RFC 3834 2).
_MACHINE_SENDER = re.compile(r"mailer-daemon|no-?reply|postmaster@|bounce", re.IGNORECASE)
_SUPPRESS = re.compile(r"OOF|AutoReply", re.IGNORECASE)
_MSGID = re.compile(r"<[^<>\s]+>")
MAX_REFERENCES = 20


def should_reply(
    *,
    rules_autoreply: Any,
    sender: str,
    message: Message,
    spam: bool,
    now_ms: int,
    own_addresses: frozenset[str],
) -> bool:
    """Whether this message may get the user's autoreply (the interval aside)."""
    reply = rules_autoreply
    if reply is None or not reply.status:
        return False
    if reply.start_ms is not None and now_ms < reply.start_ms:
        return False
    if reply.end_ms is not None and now_ms > reply.end_ms:
        return False
    if not sender or "@" not in sender or _MACHINE_SENDER.search(sender):
        return False
    if spam:
        return False
    if sender.lower() in own_addresses:
        return False
    auto = message.first("auto-submitted")
    if auto is not None and auto.strip().lower().split(";")[0].strip() != "no":
        return False
    precedence = message.first("precedence")
    if precedence is not None and precedence.strip().lower() in (
        "list",
        "junk",
        "bulk",
    ):
        return False
    headers = message.headers
    if "list-unsubscribe" in headers or "list-id" in headers:
        return False
    suppress = message.first("x-auto-response-suppress")
    return not (suppress is not None and _SUPPRESS.search(suppress))


def compose(
    *,
    rules_autoreply: Any,
    user_name: str,
    recipient: str,
    sender: str,
    message: Message,
    hostname: str,
) -> bytes:
    """The reply: From the address that received the mail (with the autoreply's
    name), To the envelope sender, ``Auto-Submitted: auto-replied``, In-Reply-To and
    References, subject ``Auto: <subject>`` (or ``Auto: Re: <original subject>``),
    the text and the sanitised HTML. Every header value that a user or the sender
    chose is written by ``mime.header_writing`` (cleaned, RFC 2047 where needed)."""
    reply = rules_autoreply
    body = EmailMessage(policy=SMTP)
    text = reply.text or (mime.html_to_text(reply.html) if reply.html else "")
    body.set_content(text or "", subtype="plain", charset="utf-8")
    if reply.html:
        body.add_alternative(mime.sanitise_html(reply.html), subtype="html", charset="utf-8")
    original = header_writing.clean(message.first("subject") or "")
    subject = header_writing.clean(reply.subject) if reply.subject else ("Re: " + original if original else "")
    fields = [
        ("From", header_writing.mailbox(reply.name or user_name or "", recipient)),
        ("To", header_writing.mailbox(None, sender)),
        (
            "Subject",
            header_writing.unstructured("Auto: " + subject if subject else "Auto:"),
        ),
        ("Date", formatdate(localtime=False)),
        ("Message-ID", make_msgid(domain=hostname)),
        ("Auto-Submitted", "auto-replied"),
        ("X-Auto-Response-Suppress", "All"),
    ]
    in_reply_to = _MSGID.search(message.first("message-id") or "")
    if in_reply_to is not None:
        refs = _MSGID.findall(message.first("references") or "")[-(MAX_REFERENCES - 1) :]
        fields.append(("In-Reply-To", in_reply_to.group()))
        fields.append(("References", " ".join([*refs, in_reply_to.group()])))
    return b"".join(header_writing.field(name, value) for name, value in fields) + body.as_bytes()
