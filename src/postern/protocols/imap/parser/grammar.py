"""The small pieces of IMAP's grammar (RFC 3501 §9) that many commands share:
sequence sets, mailbox names and LIST patterns, flags, atom lists."""

from __future__ import annotations

from .. import commands as c
from ..lexer import Cursor, ImapSyntaxError
from ..utf7 import Utf7Error, decode_modified_utf7

#: Parenthesised search keys and NOT/OR chains nest at most this deep.
MAX_NESTING = 64
#: At most this many messages in one MULTIAPPEND.
MAX_APPEND_MESSAGES = 1000


# ---------------------------------------------------------------------------
# small grammar pieces
# ---------------------------------------------------------------------------


def parse_sequence_set(text: bytes, allow_saved: bool = True) -> c.SequenceSet:
    """``1:*,5,7:9`` or ``$`` into a :class:`~.commands.SequenceSet`."""
    if text == b"$":
        if not allow_saved:
            raise ImapSyntaxError("$ is not allowed here")
        return c.SequenceSet(saved=True)
    ranges: list[tuple[int | None, int | None]] = []
    for piece in text.split(b","):
        first, colon, second = piece.partition(b":")
        start = _seq_number(first)
        end = _seq_number(second) if colon else start
        ranges.append((start, end))
    return c.SequenceSet(tuple(ranges))


def _seq_number(text: bytes) -> int | None:
    if text == b"*":
        return None
    if not text.isdigit() or len(text) > 10 or int(text) == 0 or int(text) > 2**32 - 1:
        raise ImapSyntaxError("invalid sequence set")
    return int(text)


def read_sequence_set(cur: Cursor, allow_saved: bool = True) -> c.SequenceSet:
    return parse_sequence_set(cur.sequence_text(), allow_saved)


def mailbox_name(raw: bytes, utf8: bool) -> str:
    """Decode a mailbox name: modified UTF-7, or UTF-8 (RFC 6855)."""
    if utf8 or any(b >= 0x80 for b in raw):
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ImapSyntaxError("mailbox name is not valid UTF-8") from exc
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
            raise ImapSyntaxError("mailbox name has a control character")
    else:
        try:
            name = decode_modified_utf7(raw)
        except Utf7Error as exc:
            # A valid astring that names no mailbox there can be: NO, as for any
            # mailbox that does not exist (RFC 3501 §6.3.1), not BAD.
            raise ImapSyntaxError(f"mailbox name is not valid mUTF-7: {exc}", "NONEXISTENT", "NO") from exc
    # INBOX is case-insensitive (RFC 3501 §5.1), its children are not.
    return "INBOX" if name.upper() == "INBOX" else name


def pattern(raw: bytes, utf8: bool) -> str:
    """A LIST pattern or reference: decoded like a name, but never refused."""
    try:
        return mailbox_name(raw, utf8)
    except ImapSyntaxError:
        return raw.decode("utf-8", "replace")


_SYSTEM_FLAGS = {f.upper(): f for f in ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent")}


def flag(cur: Cursor, allow_wildcard: bool = False) -> str:
    if cur.skip(b"\\"):
        if allow_wildcard and cur.skip(b"*"):
            return "\\*"
        name = "\\" + cur.atom("a flag").decode("latin-1")
        # Unknown \Extension flags are kept as written (RFC 3501 flag-extension).
        return _SYSTEM_FLAGS.get(name.upper(), name)
    return cur.atom("a flag").decode("utf-8", "replace")


def flag_list(cur: Cursor) -> tuple[str, ...]:
    cur.expect(b"(")
    flags: list[str] = []
    if not cur.skip(b")"):
        while True:
            flags.append(flag(cur))
            if cur.skip(b")"):
                break
            cur.sp()
    return tuple(flags)


def atom_list(cur: Cursor, allow_empty: bool = True) -> list[str]:
    """``(A B C)`` of atoms, upper-cased."""
    cur.expect(b"(")
    items: list[str] = []
    if cur.skip(b")"):
        if not allow_empty:
            raise ImapSyntaxError("empty list")
        return items
    while True:
        items.append(cur.keyword())
        if cur.skip(b")"):
            return items
        cur.sp()
