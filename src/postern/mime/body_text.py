"""The text of a message: text parts decoded with their charset (format=flowed
unflowed), and HTML turned into text in linear time."""

from __future__ import annotations

import html as _html
import re

from .charsets import _decode_bytes
from .parts import _Part

# ---------------------------------------------------------------------------
# text of body parts
# ---------------------------------------------------------------------------

_META_CHARSET_RE = re.compile(
    rb"""<meta[^>]{0,300}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:\-]{1,40})""",
    re.IGNORECASE,
)
_NEWLINE_RE = re.compile(r"\r\n?")


def _part_charset(part: _Part, data: bytes) -> str | None:
    charset = part.charset
    if not charset and part.ctype == "text/html":
        m = _META_CHARSET_RE.search(data, 0, 4096)
        if m is not None:
            charset = m.group(1).decode("ascii", "replace")
    return charset


def _normalise_text(text: str) -> str:
    if "\r" in text:
        text = _NEWLINE_RE.sub("\n", text)
    if "\x00" in text:
        text = text.replace("\x00", "")
    text = text.removeprefix("\ufeff")
    return text


def _unflow(text: str, delsp: bool) -> str:
    """RFC 3676 format=flowed to plain lines."""
    out: list[str] = []
    cur: str | None = None
    cur_depth = 0

    def emit(depth: int, content: str) -> None:
        out.append((">" * depth + " " + content) if depth else content)

    for line in text.split("\n"):
        depth = 0
        n = len(line)
        while depth < n and line[depth] == ">":
            depth += 1
        content = line[depth:]
        content = content.removeprefix(" ")
        if cur is not None and depth != cur_depth:
            emit(cur_depth, cur)
            cur = None
        if cur is None:
            cur = ""
            cur_depth = depth
        if content.endswith(" ") and content != "-- ":
            cur += content[:-1] if delsp else content
        else:
            emit(depth, cur + content)
            cur = None
    if cur is not None:
        emit(cur_depth, cur)
    return "\n".join(out)


def _is_flowed(part: _Part) -> bool:
    return part.ctype == "text/plain" and (part.ctparams.text("format") or "").strip().lower() == "flowed"


def _plain_from_text(part: _Part, text: str) -> str:
    text = _normalise_text(text)
    if _is_flowed(part):
        delsp = (part.ctparams.text("delsp") or "").strip().lower() == "yes"
        text = _unflow(text, delsp)
    return text


def _part_text(raw: bytes, part: _Part) -> str:
    """Full decoded text of a text/plain or text/html part."""
    data = part.decoded(raw)
    return _plain_from_text(part, _decode_bytes(data, _part_charset(part, data)))


# ---------------------------------------------------------------------------
# HTML to text (linear: regex passes in C, a Python loop only over rare tags)
# ---------------------------------------------------------------------------

_BREAK = "\x01"
# Spaces and newlines inside <pre> survive the whitespace clean-up as these.
_PRE_SPACE = "\x02"
_PRE_NEWLINE = "\x03"
_PRE_TAB = "\x04"
_PRE_TABLE = str.maketrans({" ": _PRE_SPACE, "\n": _PRE_NEWLINE, "\t": _PRE_TAB, "\r": None})
_SENTINELS_TABLE = dict.fromkeys((1, 2, 3, 4), None)
_SENTINELS_RE = re.compile("[\x01-\x04]")
_BLOCK_NAMES = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "caption",
        "center",
        "div",
        "dl",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "tbody",
        "tfoot",
        "thead",
        "ul",
    ]
)
# Paragraph-like elements break the line where they open and where they close;
# these only where they open.
_LINE_NAMES = frozenset({"br", "li", "tr", "dt", "dd", "option"})
_CELL_NAMES = frozenset({"td", "th"})
_TAG_RE = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9:\-]*)[^>]*(?:>|\Z)|<[!?/][^>]*(?:>|\Z)")


def _tag_replacement(m: re.Match[str]) -> str:
    name = m.group(2)
    if name is None:
        return ""
    name = name.lower()
    if name in _BLOCK_NAMES:
        return _BREAK
    if name in _LINE_NAMES:
        return "" if m.group(1) and name != "br" else _BREAK
    if name in _CELL_NAMES:
        return " "
    return ""


# Elements whose content is not text.  Only these need a Python-level loop.
# Searched in an ASCII-lowercased bytes copy (same offsets, much faster than
# a case-insensitive str pattern).
_SPECIAL_RE = re.compile(rb"<(?:!--|(/?)(script|style|head|title|noscript|template|xml|object|iframe|svg|math|pre)(?![a-z0-9:\-]))")
_RAWTEXT_TAGS = frozenset({"script", "style"})
_HTML_WINDOW = 2048
_MAX_SPECIAL_ELEMENTS = 10_000
_SPACE_RUN_RE = re.compile(r"[^\S\x01]+")
_MULTI_SPACE_RE = re.compile(r" {2,}")
_CLOSE_RE_CACHE: dict[str, re.Pattern[bytes]] = {}
_INVISIBLE_TABLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u034f\u00ad\u180e"), None)
_BLANK_LINES_RE = re.compile(r"\n{3,}")


def _close_re(name: str) -> re.Pattern[bytes]:
    pat = _CLOSE_RE_CACHE.get(name)
    if pat is None:
        pat = re.compile(b"</" + re.escape(name.encode("ascii")) + rb"\s*>")
        _CLOSE_RE_CACHE[name] = pat
    return pat


def _html_segment_text(segment: str, pre: bool) -> str:
    segment = _TAG_RE.sub(_tag_replacement, segment)
    if not pre:
        segment = _SPACE_RUN_RE.sub(" ", segment)
    if "&" in segment:
        # "&#1;" must not turn into a sentinel
        segment = _BREAK.join(
            _html.unescape(piece).translate(_SENTINELS_TABLE) if "&" in piece else piece for piece in segment.split(_BREAK)
        )
        if not pre:
            segment = _SPACE_RUN_RE.sub(" ", segment)
    if pre:
        segment = segment.translate(_PRE_TABLE)
    return segment


def _html_to_text(markup: str, limit: int | None = None) -> str:
    """Readable plain text of an HTML document.

    Block elements become line breaks, script/style/head are dropped,
    entities are decoded and whitespace is collapsed (except in <pre>).
    With ``limit``, stop once about that many characters were produced.
    """
    if _SENTINELS_RE.search(markup):
        markup = markup.translate(_SENTINELS_TABLE)
    # one byte per character, ASCII lowercased: offsets are the same
    low = markup.encode("ascii", "replace").lower()
    out: list[str] = []
    produced = 0
    pos = 0
    n = len(markup)
    in_pre = False
    # name -> last closing-tag search (None: no closing tag after that point)
    closings: dict[str, re.Match[bytes] | None] = {}

    def emit(end: int) -> int:
        start = pos
        total = 0
        while start < end:
            stop = end
            if limit is not None and end - start > _HTML_WINDOW:
                # with a limit, work through long text in windows cut
                # before a tag, so that the rest need not be looked at
                stop = markup.rfind("<", start + 1, start + _HTML_WINDOW)
                if stop < 0:
                    stop = start + _HTML_WINDOW
            text = _html_segment_text(markup[start:stop], in_pre)
            out.append(text)
            total += len(text)
            start = stop
            if limit is not None and produced + total > limit:
                break
        return total

    specials = 0
    for m in _SPECIAL_RE.finditer(low):
        if m.start() < pos:
            continue  # inside a skipped element
        if limit is not None and produced > limit:
            break
        specials += 1
        if specials > _MAX_SPECIAL_ELEMENTS:
            # hostile markup: the rest is only stripped of its tags
            in_pre = False
            break
        if m.group(2) is None:  # <!--
            produced += emit(m.start())
            e = markup.find("-->", m.end())
            pos = n if e < 0 else e + 3
            continue
        name = m.group(2).decode("ascii")
        closing = bool(m.group(1))
        if name == "pre":
            produced += emit(m.start())
            pos = m.start()
            in_pre = not closing
            continue
        if closing:
            continue  # stray closing tag: removed with the other tags
        produced += emit(m.start())
        e = markup.find(">", m.end())
        tag_end = n if e < 0 else e + 1
        if e > 0 and markup[e - 1] == "/" and name not in _RAWTEXT_TAGS:
            pos = tag_end  # self-closing <svg/>
            continue
        if name in closings:
            cm = closings[name]
            if cm is not None and cm.start() < tag_end:
                cm = _close_re(name).search(low, tag_end)
                closings[name] = cm
        else:
            cm = _close_re(name).search(low, tag_end)
            closings[name] = cm
        if cm is not None:
            pos = cm.end()
        elif name in _RAWTEXT_TAGS:
            pos = n  # unclosed script/style swallows the rest, as in browsers
        else:
            pos = tag_end
    else:
        emit(n)
        pos = n
    if pos < n and (limit is None or produced <= limit):
        emit(n)
    text = "".join(out).translate(_INVISIBLE_TABLE).replace("\xa0", " ")
    lines = [_MULTI_SPACE_RE.sub(" ", line).strip() for line in text.replace(_BREAK, "\n").split("\n")]
    text = _BLANK_LINES_RE.sub("\n\n", "\n".join(lines).strip("\n"))
    if _PRE_SPACE in text or _PRE_NEWLINE in text or _PRE_TAB in text:
        text = text.replace(_PRE_SPACE, " ").replace(_PRE_NEWLINE, "\n").replace(_PRE_TAB, "\t")
    return text
