"""The validation mail: text and HTML from the operator's templates (or the defaults
below), delivered locally to a hosted address or queued for the internet.

Templates live in the folder of ``POSTERN_IDENTITY_TEMPLATES_DIR``: ``validation.subject``
(one line), ``validation.txt`` and ``validation.html``; a missing file falls back to
the default. They are ``string.Template`` texts with ``$address``, ``$token``,
``$link``, ``$sid`` and ``$server``; in the HTML every value is escaped. The headers
are written by the email package's SMTP policy (RFC 2047 words, SMTPUTF8 for a UTF-8
address), never from raw text.
"""

from __future__ import annotations

import html
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from pathlib import Path
from string import Template

from postern.delivery.inbound import Envelope
from postern.delivery.router import RecipientRefused
from postern.delivery.system_mail import SystemMail

log = logging.getLogger("postern.verification.mail")

DEFAULT_SUBJECT = "Confirm your email address for Matrix"
DEFAULT_TEXT = """\
Hello,

We have received a request to use this email address ($address) with a Matrix
account. If this was you who made this request, you may use the following link
to complete the verification of your email address:

$link

Or enter this code where you were asked for it:

$token

If you were not expecting this message, you can safely ignore it: nothing happens
unless the link is followed.

-- $server
"""
DEFAULT_HTML = """\
<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Confirm your email address</title></head>
<body style="font-family: sans-serif">
<p>Hello,</p>
<p>We have received a request to use this email address (<b>$address</b>) with a Matrix
account. If this was you who made this request, follow this link to complete the
verification of your email address:</p>
<p><a href="$link">Confirm my email address</a></p>
<p>Or enter this code where you were asked for it: <code>$token</code></p>
<p>If you were not expecting this message, you can safely ignore it.</p>
<p>&mdash; $server</p>
</body></html>
"""


class SendFailed(Exception):
    """The mail could not be stored or queued."""


@dataclass(frozen=True, slots=True)
class Templates:
    subject: str
    text: str
    html: str

    @classmethod
    def load(cls, folder: Path | None) -> Templates:
        def read(name: str, default: str) -> str:
            if folder is None:
                return default
            path = Path(folder) / name
            try:
                return path.read_text("utf-8")
            except FileNotFoundError:
                return default
            except (OSError, UnicodeDecodeError):
                log.warning("the template %s cannot be read; using the default", path)
                return default

        return cls(
            read("validation.subject", DEFAULT_SUBJECT),
            read("validation.txt", DEFAULT_TEXT),
            read("validation.html", DEFAULT_HTML),
        )


def compose(
    *,
    templates: Templates,
    sender: str,
    to: str,
    values: dict[str, str],
    message_id_domain: str,
) -> bytes:
    subject = " ".join(Template(templates.subject).safe_substitute(values).split())
    text = Template(templates.text).safe_substitute(values)
    body_html = Template(templates.html).safe_substitute(
        {k: html.escape(v) for k, v in values.items()}
    )
    utf8 = not (sender + to).isascii()
    message = EmailMessage(policy=SMTP.clone(utf8=True) if utf8 else SMTP)
    # Both are addresses checked before (the operator's sender, a normalised
    # recipient): the header parser of the policy takes them as they are.
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = f"<{secrets.token_hex(16)}@{message_id_domain}>"
    # RFC 3834: automatic; vacation responders must not answer it.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text, charset="utf-8")
    message.add_alternative(body_html, subtype="html", charset="utf-8")
    return message.as_bytes()


class ValidationMailer:
    """Sends the validation mail through the same paths as postern's own mail."""

    def __init__(self, system_mail: SystemMail, templates_dir: Path | None):
        self.system_mail = system_mail
        self.templates_dir = templates_dir

    async def send(
        self, *, to: str, values: dict[str, str], user_id: str | None = None
    ) -> None:
        """Deliver to a hosted address, or queue; SendFailed when neither worked."""
        mail = self.system_mail
        templates = Templates.load(self.templates_dir)
        try:
            raw = compose(
                templates=templates,
                sender=mail.sender,
                to=to,
                values=values,
                message_id_domain=mail.hostname,
            )
        except (ValueError, TypeError, IndexError) as error:
            log.warning("the validation mail cannot be written: %s", error)
            raise SendFailed("the validation mail cannot be written") from None
        try:
            try:
                local = await mail.router.resolve(to)
            except RecipientRefused:
                local = None
            if local is not None:
                outcomes = await mail.inbound.deliver(
                    Envelope(
                        mail.envelope_sender,
                        [local],
                        raw,
                        source="LOCAL",
                        client_ip="127.0.0.1",
                        helo=mail.hostname,
                        transtype="LOCAL",
                    )
                )
                if not all(o.stored for o in outcomes):
                    raise SendFailed(outcomes[0].reply if outcomes else "not stored")
                return
            blob_key = await mail.outbound.blobs.put(raw)
            await mail.outbound.enqueue(
                user_id=user_id,
                mail_from=mail.envelope_sender,
                recipients=[to],
                blob_key=blob_key,
                size=len(raw),
                message_mid=None,
            )
        except SendFailed:
            raise
        except Exception as error:
            log.exception("the validation mail could not be sent")
            raise SendFailed(str(error)) from None
