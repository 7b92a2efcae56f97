"""Pure functions over raw RFC 5322 / MIME message bytes.

No I/O, no database, no logging.  None of the public functions raises for any
``bytes`` input, however broken.
"""

from .content import (
    MessageContent,
    extract_content,
    extract_text,
    get_attachment,
    html_to_text,
    render_plain_text,
)
from .sanitise import sanitise_html
from .summary import (
    AddressInfo,
    AttachmentInfo,
    MessageSummary,
    normalise_subject,
    summarise,
)

__all__ = [
    "AddressInfo",
    "AttachmentInfo",
    "MessageContent",
    "MessageSummary",
    "extract_content",
    "extract_text",
    "get_attachment",
    "html_to_text",
    "normalise_subject",
    "render_plain_text",
    "sanitise_html",
    "summarise",
]
