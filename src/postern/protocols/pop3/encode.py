"""Multi-line response bodies on the wire, over a stream of chunks whose line endings
are already CRLF (``mailstore.pop3_view.CrlfNormaliser``): dot-stuffing (RFC 1939
section 3) and the cut of TOP (the header, the blank line, n lines of the body)."""

from __future__ import annotations

from collections.abc import AsyncIterator

DOT, LF = 46, 10


class DotStuffer:
    """Doubles a "." that begins a line. A line begins at the start of the body and
    after every LF; a CRLF may be split between two chunks."""

    __slots__ = ("line_start",)

    def __init__(self) -> None:
        self.line_start = True

    def feed(self, data: bytes) -> bytes:
        if not data:
            return data
        out = data.replace(b"\r\n.", b"\r\n..")
        if self.line_start and data[0] == DOT:
            out = b"." + out
        elif data[:2] == b"\n.":  # "\r" ended the previous chunk
            out = b"\n." + out[1:]
        self.line_start = data[-1] == LF
        return out


class TopCutter:
    """Passes the header, the blank line after it and ``lines`` lines of the body."""

    __slots__ = ("remaining", "in_header", "line_length", "done")

    def __init__(self, lines: int):
        self.remaining = lines
        self.in_header = True
        self.line_length = 0  # octets of the current line before its LF, so far
        self.done = False

    def feed(self, data: bytes) -> bytes:
        if self.done:
            return b""
        start = 0
        at = data.find(b"\n")
        while at != -1:
            length = self.line_length + at - start
            self.line_length = 0
            if self.in_header:
                if length <= 1:  # "\r": the blank line that ends the header
                    self.in_header = False
                    if self.remaining == 0:
                        self.done = True
                        return data[: at + 1]
            else:
                self.remaining -= 1
                if self.remaining <= 0:
                    self.done = True
                    return data[: at + 1]
            start = at + 1
            at = data.find(b"\n", start)
        self.line_length += len(data) - start
        return data


async def wire_body(chunks: AsyncIterator[bytes], top: int | None = None) -> AsyncIterator[bytes]:
    """The body of a RETR (``top`` None) or TOP response, dot-stuffed, without the
    final "." line. Reading stops once TOP has its lines."""
    stuffer = DotStuffer()
    cutter = TopCutter(top) if top is not None else None
    try:
        async for chunk in chunks:
            if cutter is not None:
                chunk = cutter.feed(chunk)
            out = stuffer.feed(chunk)
            if out:
                yield out
            if cutter is not None and cutter.done:
                break
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()
