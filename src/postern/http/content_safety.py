"""What keeps mail content from running as a web page on the API's origin.

Messages, attachments and profile pictures are written by strangers. Served from the
API's origin (where an admin token may sit in the URL as ``?accessToken=``), an HTML
or SVG part shown inline would run its scripts there. So:

- every answer carries ``X-Content-Type-Options: nosniff`` (a browser takes the
  declared type, never guesses HTML from the bytes) and a Content-Security-Policy
  that allows nothing and sandboxes the document (``default-src 'none'; sandbox``),
  unless a route set a policy of its own; the APIs serve data, never pages that need
  more. One layer around the whole application does it, so no route can forget;
- an attachment is offered for download (``Content-Disposition: attachment``) unless
  it is a raster image a browser cannot run (``inline_type``); SVG is a document with
  scripts, not a safe image.
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = "default-src 'none'; sandbox"

# Raster images: shown inline when the message says so. Nothing else is.
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})

_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    # A URL with ?accessToken= never leaks to another site through Referer.
    (b"referrer-policy", b"no-referrer"),
)


def inline_type(content_type: str | None) -> bool:
    return (content_type or "").split(";", 1)[0].strip().lower() in INLINE_TYPES


def attachment_disposition(content_type: str | None, wanted: str | None, filename: str | None) -> str:
    """The Content-Disposition of a served attachment: ``inline`` only when the part
    asks for it and is a safe raster image; the name in RFC 6266's UTF-8 form."""
    kind = "inline" if wanted == "inline" and inline_type(content_type) else "attachment"
    if filename:
        return f"{kind}; filename*=UTF-8''{quote(filename, safe='')}"
    return kind


class ContentSafety:
    """Adds the headers above to every HTTP answer that does not set them itself."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_safely(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend((name, value) for name, value in _HEADERS if name not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_safely)
