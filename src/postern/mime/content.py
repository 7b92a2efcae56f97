"""Readable content (text and sanitised HTML) and attachment bytes of a message."""

from __future__ import annotations

import html as _html
import re
from dataclasses import dataclass

from .body_text import _html_to_text, _part_text
from .parts import AttachmentInfo, _as_bytes, _attachment_info, _attachment_leaves, _body_segments, _leaves, _parse_message, _Part
from .sanitise import sanitise_html

__all__ = [
    "MessageContent",
    "extract_content",
    "extract_text",
    "get_attachment",
    "html_to_text",
    "render_plain_text",
]


@dataclass(frozen=True, slots=True)
class MessageContent:
    # All text/plain body parts joined with "\n"; HTML body parts converted to
    # text where there is no text/plain alternative.
    text: str
    # Each text/html body part sanitised; text/plain body parts without an
    # HTML alternative are rendered as escaped HTML.
    html: tuple[str, ...]


_EMPTY_CONTENT = MessageContent(text="", html=())
_PARAGRAPH_RE = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)*")


def html_to_text(markup: str) -> str:
    """Plain text rendering of an HTML document (tags stripped, entities decoded)."""
    try:
        return _html_to_text(markup)
    except Exception:  # pragma: no cover - defensive
        return ""


def render_plain_text(text: str) -> str:
    """Escaped HTML for plain text: paragraphs and line breaks, no auto-links."""
    text = text.strip("\n")
    if not text.strip():
        return ""
    out = []
    for para in _PARAGRAPH_RE.split(text):
        if not para.strip():
            continue
        escaped = _html.escape(para.strip("\n"), quote=True)
        out.append("<p>" + escaped.replace("\n", "<br>\n") + "</p>")
    return "\n".join(out)


def _extract(raw: bytes) -> MessageContent:
    parsed = _parse_message(raw)
    leaves = _leaves(parsed.root)
    body_ids = {id(leaf.part) for leaf in leaves if leaf.is_body}
    text_parts, html_parts = _body_segments(parsed.root, body_ids)

    cache: dict[int, str] = {}

    def text_of(part: _Part) -> str:
        key = id(part)
        if key not in cache:
            cache[key] = _part_text(raw, part)
        return cache[key]

    def texts_of(parts: list[_Part]) -> list[str]:
        texts: list[str] = []
        for part in parts:
            if part.ctype == "text/html":
                piece = _html_to_text(text_of(part))
            else:
                piece = text_of(part).strip("\n")
            if piece.strip():
                texts.append(piece)
        return texts

    texts = texts_of(text_parts)
    if not texts and html_parts != text_parts:
        # e.g. an empty text/plain alternative next to the real HTML body
        texts = texts_of([p for p in html_parts if p.ctype == "text/html"])

    htmls: list[str] = []
    for part in html_parts:
        if part.ctype == "text/html":
            rendered = sanitise_html(text_of(part))
        else:
            rendered = render_plain_text(text_of(part))
        if rendered.strip():
            htmls.append(rendered)

    return MessageContent(text="\n".join(texts), html=tuple(htmls))


def _extract_text(raw: bytes) -> str:
    """``_extract``'s text alone: no HTML is rendered or sanitised."""
    parsed = _parse_message(raw)
    leaves = _leaves(parsed.root)
    body_ids = {id(leaf.part) for leaf in leaves if leaf.is_body}
    text_parts, html_parts = _body_segments(parsed.root, body_ids)

    def texts_of(parts: list[_Part]) -> list[str]:
        texts: list[str] = []
        for part in parts:
            text = _part_text(raw, part)
            piece = _html_to_text(text) if part.ctype == "text/html" else text.strip("\n")
            if piece.strip():
                texts.append(piece)
        return texts

    texts = texts_of(text_parts)
    if not texts and html_parts != text_parts:
        texts = texts_of([p for p in html_parts if p.ctype == "text/html"])
    return "\n".join(texts)


def extract_text(raw: bytes) -> str:
    """The plain text of a raw message, as ``extract_content(raw).text``, for less
    (no HTML rendered); never raises."""
    try:
        return _extract_text(_as_bytes(raw))
    except Exception:  # pragma: no cover - last-resort safety net
        return ""


def extract_content(raw: bytes) -> MessageContent:
    """Body text and sanitised HTML of a raw message; never raises."""
    try:
        return _extract(_as_bytes(raw))
    except Exception:  # pragma: no cover - last-resort safety net
        return _EMPTY_CONTENT


def _get_attachment(raw: bytes, attachment_id: str) -> tuple[AttachmentInfo, bytes] | None:
    if not isinstance(attachment_id, str):
        return None
    parsed = _parse_message(raw)
    for att_id, leaf in _attachment_leaves(_leaves(parsed.root)):
        if att_id == attachment_id:
            data = leaf.part.decoded(raw)
            return _attachment_info(att_id, leaf, len(data)), data
    return None


def get_attachment(raw: bytes, attachment_id: str) -> tuple[AttachmentInfo, bytes] | None:
    """The decoded bytes of the attachment with that id (same numbering as
    :func:`postern.mime.summarise`), or None; never raises."""
    try:
        return _get_attachment(_as_bytes(raw), attachment_id)
    except Exception:  # pragma: no cover - last-resort safety net
        return None
