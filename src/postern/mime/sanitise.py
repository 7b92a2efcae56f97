"""HTML sanitising for display of message bodies (nh3 / ammonia based)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import nh3

__all__ = ["sanitise_html"]

_TAGS = frozenset(
    [
        "a",
        "abbr",
        "acronym",
        "address",
        "article",
        "aside",
        "b",
        "bdi",
        "bdo",
        "big",
        "blockquote",
        "br",
        "caption",
        "center",
        "cite",
        "code",
        "col",
        "colgroup",
        "dd",
        "del",
        "details",
        "dfn",
        "div",
        "dl",
        "dt",
        "em",
        "figcaption",
        "figure",
        "font",
        "footer",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "i",
        "img",
        "ins",
        "kbd",
        "li",
        "main",
        "mark",
        "nav",
        "ol",
        "p",
        "pre",
        "q",
        "rp",
        "rt",
        "ruby",
        "s",
        "samp",
        "section",
        "small",
        "span",
        "strike",
        "strong",
        "sub",
        "summary",
        "sup",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "time",
        "tr",
        "tt",
        "u",
        "ul",
        "var",
        "wbr",
    ]
)

# Removed together with their content.
_CLEAN_CONTENT_TAGS = frozenset(
    {
        "script",
        "style",
        "title",
        "template",
        "noscript",
        "iframe",
        "frame",
        "frameset",
        "object",
        "embed",
        "applet",
        "xml",
        "head",
        "select",
        "textarea",
    }
)

_GENERIC_ATTRIBUTES = frozenset({"style", "title", "dir", "lang", "align"})
_ATTRIBUTES: dict[str, set[str]] = {
    "*": set(_GENERIC_ATTRIBUTES),
    "a": {"href", "name", "hreflang"},
    "img": {"src", "alt", "width", "height", "border", "hspace", "vspace", "align"},
    "table": {
        "border",
        "cellpadding",
        "cellspacing",
        "width",
        "height",
        "bgcolor",
        "align",
        "summary",
        "frame",
        "rules",
    },
    "td": {
        "colspan",
        "rowspan",
        "width",
        "height",
        "bgcolor",
        "align",
        "valign",
        "nowrap",
        "scope",
        "headers",
    },
    "th": {
        "colspan",
        "rowspan",
        "width",
        "height",
        "bgcolor",
        "align",
        "valign",
        "nowrap",
        "scope",
        "headers",
    },
    "tr": {"bgcolor", "align", "valign", "height"},
    "thead": {"align", "valign"},
    "tbody": {"align", "valign"},
    "tfoot": {"align", "valign"},
    "col": {"span", "width", "align", "valign"},
    "colgroup": {"span", "width", "align", "valign"},
    "font": {"color", "face", "size"},
    "ol": {"start", "type", "reversed"},
    "ul": {"type"},
    "li": {"value", "type"},
    "hr": {"size", "width", "noshade", "color"},
    "time": {"datetime"},
    "bdo": {"dir"},
    "details": {"open"},
    "del": {"datetime"},
    "ins": {"datetime"},
    "abbr": {"title"},
}

# CSS properties kept in style attributes (positioning is not: a message must
# not be able to draw over the user interface).
_STYLE_PROPERTIES = frozenset(
    [
        "color",
        "background",
        "background-color",
        "font",
        "font-family",
        "font-size",
        "font-style",
        "font-weight",
        "font-variant",
        "text-align",
        "text-decoration",
        "text-indent",
        "text-transform",
        "line-height",
        "letter-spacing",
        "word-spacing",
        "white-space",
        "vertical-align",
        "direction",
        "unicode-bidi",
        "margin",
        "margin-top",
        "margin-right",
        "margin-bottom",
        "margin-left",
        "padding",
        "padding-top",
        "padding-right",
        "padding-bottom",
        "padding-left",
        "border",
        "border-top",
        "border-right",
        "border-bottom",
        "border-left",
        "border-color",
        "border-style",
        "border-width",
        "border-collapse",
        "border-spacing",
        "border-radius",
        "border-top-color",
        "border-right-color",
        "border-bottom-color",
        "border-left-color",
        "border-top-style",
        "border-right-style",
        "border-bottom-style",
        "border-left-style",
        "border-top-width",
        "border-right-width",
        "border-bottom-width",
        "border-left-width",
        "width",
        "height",
        "max-width",
        "min-width",
        "max-height",
        "min-height",
        "display",
        "float",
        "clear",
        "list-style",
        "list-style-type",
        "list-style-position",
        "table-layout",
        "caption-side",
        "empty-cells",
        "word-break",
        "word-wrap",
        "overflow-wrap",
        "text-overflow",
    ]
)

_URL_SCHEMES = frozenset({"http", "https", "mailto", "tel", "cid", "data"})
_LINK_SCHEMES = frozenset({"http", "https", "mailto", "tel"})
_IMAGE_SCHEMES = frozenset({"http", "https", "cid"})
_URL_ATTRIBUTES = frozenset({"href", "src", "cite", "action", "background", "longdesc", "poster", "srcset"})
_LINK_REL = "noopener noreferrer nofollow"

_SCHEME_RE = re.compile(r"([a-zA-Z][a-zA-Z0-9+.\-]*):")
_URL_JUNK_RE = re.compile(r"[\x00-\x20\x7f]+")
_DANGEROUS_CSS_RE = re.compile(
    r"url\s*\(|expression\s*\(|javascript:|vbscript:|@import|behavior\s*:|-moz-binding",
    re.IGNORECASE,
)


def _scheme(value: str) -> tuple[str | None, str]:
    """(lowercased scheme or None, value without whitespace/control chars)."""
    compact = _URL_JUNK_RE.sub("", value)
    m = _SCHEME_RE.match(compact)
    return (m.group(1).lower() if m else None), compact


def _filter_style(value: str) -> str | None:
    if not _DANGEROUS_CSS_RE.search(value):
        return value
    kept = [decl for decl in value.split(";") if decl.strip() and not _DANGEROUS_CSS_RE.search(decl)]
    return "; ".join(d.strip() for d in kept) or None


def _attribute_filter(element: str, attribute: str, value: str) -> str | None:
    try:
        if attribute in _URL_ATTRIBUTES:
            scheme, compact = _scheme(value)
            if element == "img" and attribute == "src":
                if scheme in _IMAGE_SCHEMES:
                    return value
                if scheme == "data" and compact[5:11].lower() == "image/":
                    return value
                return None
            if attribute == "href":
                return value if scheme in _LINK_SCHEMES else None
            return None
        if attribute == "style":
            return _filter_style(value)
        if attribute.startswith("on"):
            return None
        return value
    except Exception:  # pragma: no cover - a filter must never raise into nh3
        return None


def _make_cleaner() -> Callable[[str], str]:
    base: dict[str, Any] = {
        "tags": set(_TAGS),
        "clean_content_tags": set(_CLEAN_CONTENT_TAGS),
        "attributes": {k: set(v) for k, v in _ATTRIBUTES.items()},
        "attribute_filter": _attribute_filter,
        "strip_comments": True,
        "link_rel": _LINK_REL,
        "url_schemes": set(_URL_SCHEMES),
        "filter_style_properties": set(_STYLE_PROPERTIES),
        "url_relative": "deny",
    }
    variants = [
        base,
        {k: v for k, v in base.items() if k != "url_relative"},
    ]
    # Without style filtering, style attributes are not allowed at all.
    no_style = {k: v for k, v in base.items() if k not in ("url_relative", "filter_style_properties")}
    no_style["attributes"] = {k: set(v) - {"style"} for k, v in _ATTRIBUTES.items()}
    variants.append(no_style)
    for kwargs in variants:
        try:
            if hasattr(nh3, "Cleaner"):
                cleaner = nh3.Cleaner(**kwargs)
                return cleaner.clean
            nh3.clean("", **kwargs)
        except TypeError:
            continue

        def clean(html: str, _kwargs: dict[str, Any] = kwargs) -> str:
            return nh3.clean(html, **_kwargs)

        return clean
    raise RuntimeError("unsupported nh3 version")  # pragma: no cover


_clean = _make_cleaner()

# html5ever needs time quadratic in the nesting depth of unclosed elements
# ("<div>" * 40_000 takes seconds), so very deep nesting is flattened before
# the document reaches nh3.  Only documents with many tags are looked at.
_DEPTH_CHECK_MIN_TAGS = 2_000
_MAX_NESTING = 128
_TAG_RE = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9:\-]*)[^>]*(?:>|\Z)")
# Elements that never nest: void elements and elements whose end tag is
# optional because the next sibling closes them.
_NON_NESTING = frozenset(
    [
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "keygen",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
        "p",
        "li",
        "dt",
        "dd",
        "option",
        "optgroup",
        "tr",
        "td",
        "th",
        "thead",
        "tbody",
        "tfoot",
        "colgroup",
        "caption",
        "rp",
        "rt",
    ]
)


def _limit_nesting(html: str) -> str:
    if html.count("<") < _DEPTH_CHECK_MIN_TAGS:
        return html
    depth = 0
    dropped: dict[str, int] = {}
    pieces: list[str] = []
    pos = 0
    for m in _TAG_RE.finditer(html):
        name = m.group(2).lower()
        if name in _NON_NESTING:
            continue
        if m.group(1):  # end tag
            if dropped.get(name):
                dropped[name] -= 1
                pieces.append(html[pos : m.start()])
                pos = m.end()
            elif depth:
                depth -= 1
            continue
        if m.group(0).endswith("/>"):
            continue
        if depth >= _MAX_NESTING:
            dropped[name] = dropped.get(name, 0) + 1
            pieces.append(html[pos : m.start()])
            pos = m.end()
        else:
            depth += 1
    if not pieces:
        return html
    pieces.append(html[pos:])
    return "".join(pieces)


def sanitise_html(html: str) -> str:
    """Sanitise untrusted HTML for display.

    Removes script/style/iframe/object/embed/form and similar elements, every
    ``on*`` event attribute, and any URL that is not http(s)/mailto/tel in
    links (no ``javascript:``, ``vbscript:`` or ``data:``); images may use
    http(s), ``cid:`` and ``data:image/*``.  Relative URLs are removed.  Links
    get ``rel="noopener noreferrer nofollow"``.  Ordinary formatting, tables
    and a safe subset of inline CSS are kept.
    """
    if not isinstance(html, str):
        html = str(html or "")
    if not html:
        return ""
    if "\x00" in html:
        html = html.replace("\x00", "")
    try:
        return _clean(_limit_nesting(html))
    except Exception:  # pragma: no cover - nh3 does not raise on input
        return ""
