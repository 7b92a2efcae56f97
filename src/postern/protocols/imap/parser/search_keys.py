"""The SEARCH program (RFC 3501 §6.4.4, with RFC 7162 MODSEQ, RFC 5032 OLDER and
YOUNGER): the per-command parse context :class:`Parse` and one function per search key."""

from __future__ import annotations

import codecs
from collections.abc import Callable
from typing import Literal

from .. import commands as c
from ..lexer import MAX_NUMBER64, Cursor, ImapSyntaxError
from .grammar import MAX_NESTING, flag, mailbox_name, read_sequence_set

# ---------------------------------------------------------------------------
# the parse context (per command)
# ---------------------------------------------------------------------------


class Parse:
    __slots__ = ("charset", "cur", "depth", "tag", "utf8")

    def __init__(self, cur: Cursor, tag: str, utf8: bool) -> None:
        self.cur = cur
        self.tag = tag
        self.utf8 = utf8
        self.depth = 0
        self.charset = "utf-8"

    def mailbox(self) -> str:
        return mailbox_name(self.cur.astring("a mailbox name"), self.utf8)

    # -- SEARCH -------------------------------------------------------------

    def set_charset(self, name: str) -> None:
        try:
            info = codecs.lookup(name)
            if not getattr(info, "_is_text_encoding", True):  # rot13, base64, ...
                raise LookupError(name)
        except (LookupError, ValueError) as exc:
            raise ImapSyntaxError(
                f"unsupported charset {name}",
                code="BADCHARSET (US-ASCII UTF-8)",
                status="NO",
            ) from exc
        self.charset = info.name

    def search_string(self) -> str:
        raw = self.cur.astring("a search string")
        return raw.decode(self.charset, "replace")

    def search_program(self) -> c.SearchKey:
        """One or more keys separated by spaces, to the end of the command."""
        keys = [self.search_key()]
        while not self.cur.at_end():
            self.cur.sp()
            keys.append(self.search_key())
        return keys[0] if len(keys) == 1 else c.SearchAnd(tuple(keys))

    def search_key(self) -> c.SearchKey:
        cur = self.cur
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise ImapSyntaxError("search program nests too deeply")
        try:
            if cur.skip(b"("):
                keys = [self.search_key()]
                while not cur.skip(b")"):
                    cur.sp()
                    keys.append(self.search_key())
                return keys[0] if len(keys) == 1 else c.SearchAnd(tuple(keys))
            first = cur.peek()
            if 0x30 <= first <= 0x39 or first in (0x2A, 0x24):  # digit, '*', '$'
                return c.SearchSequence(read_sequence_set(cur))
            name = cur.keyword("a search key")
            handler = _SEARCH_KEYS.get(name)
            if handler is None:
                raise ImapSyntaxError(f"unknown search key {name}")
            return handler(self)
        finally:
            self.depth -= 1

    def search_return(self) -> tuple[tuple[str, ...], tuple[int, int] | None]:
        """``(MIN MAX ALL COUNT SAVE UPDATE CONTEXT PARTIAL n:m)``: the options, and
        PARTIAL's range (RFC 5267 §4.4, RFC 9394), low first."""
        cur = self.cur
        cur.expect(b"(")
        options: list[str] = []
        partial = None
        if not cur.skip(b")"):
            while True:
                option = cur.keyword("a RETURN option")
                if option not in _RETURN_OPTIONS:
                    raise ImapSyntaxError(f"unknown SEARCH RETURN option {option}")
                if option == "PARTIAL":
                    cur.sp()
                    partial = _partial_range(cur.atom("a PARTIAL range"))
                options.append(option)
                if cur.skip(b")"):
                    break
                cur.sp()
        return tuple(dict.fromkeys(options)), partial


_RETURN_OPTIONS = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE", "UPDATE", "CONTEXT", "PARTIAL"})


def _partial_range(text: bytes) -> tuple[int, int]:
    low, colon, high = text.partition(b":")
    if not colon or not low.isdigit() or not high.isdigit() or len(low) > 10 or len(high) > 10:
        raise ImapSyntaxError("PARTIAL takes a range of positions, such as 1:100")
    first, last = int(low), int(high)
    if not 1 <= first <= 2**32 - 1 or not 1 <= last <= 2**32 - 1:
        raise ImapSyntaxError("PARTIAL positions start at 1")
    return min(first, last), max(first, last)


def _flag_key(flag: str, present: bool) -> Callable[[Parse], c.SearchKey]:
    return lambda p: c.SearchFlag(flag, present)


def _header_key(field: str) -> Callable[[Parse], c.SearchKey]:
    def parse(p: Parse) -> c.SearchKey:
        p.cur.sp()
        return c.SearchHeader(field, p.search_string())

    return parse


def _date_key(field: Literal["internal", "sent"], relation: Literal["before", "on", "since"]) -> Callable[[Parse], c.SearchKey]:
    def parse(p: Parse) -> c.SearchKey:
        p.cur.sp()
        return c.SearchDate(field, relation, p.cur.date())

    return parse


def _keyword_key(present: bool) -> Callable[[Parse], c.SearchKey]:
    def parse(p: Parse) -> c.SearchKey:
        p.cur.sp()
        return c.SearchFlag(flag(p.cur), present)

    return parse


def _size_key(relation: Literal["larger", "smaller"]) -> Callable[[Parse], c.SearchKey]:
    def parse(p: Parse) -> c.SearchKey:
        p.cur.sp()
        return c.SearchSize(relation, p.cur.number(MAX_NUMBER64))

    return parse


def _within_key(
    relation: Literal["older", "younger"],
) -> Callable[[Parse], c.SearchKey]:
    def parse(p: Parse) -> c.SearchKey:
        p.cur.sp()
        return c.SearchWithin(relation, p.cur.nz_number())

    return parse


def _header_field_key(p: Parse) -> c.SearchKey:
    p.cur.sp()
    name = p.cur.astring("a header field name").decode("latin-1")
    p.cur.sp()
    return c.SearchHeader(name, p.search_string())


def _text_key(
    kind: type[c.SearchBody | c.SearchText],
) -> Callable[[Parse], c.SearchKey]:
    def parse(p: Parse) -> c.SearchKey:
        p.cur.sp()
        return kind(p.search_string())

    return parse


def _uid_key(p: Parse) -> c.SearchKey:
    p.cur.sp()
    return c.SearchUid(read_sequence_set(p.cur))


def _not_key(p: Parse) -> c.SearchKey:
    p.cur.sp()
    return c.SearchNot(p.search_key())


def _or_key(p: Parse) -> c.SearchKey:
    p.cur.sp()
    left = p.search_key()
    p.cur.sp()
    return c.SearchOr(left, p.search_key())


def _modseq_key(p: Parse) -> c.SearchKey:
    cur = p.cur
    cur.sp()
    entry_name = entry_type = None
    if cur.peek() == 0x22:
        entry_name = cur.quoted().decode("utf-8", "replace")
        cur.sp()
        entry_type = cur.keyword("an entry type").lower()
        if entry_type not in ("priv", "shared", "all"):
            raise ImapSyntaxError("MODSEQ entry type must be priv, shared or all")
        cur.sp()
    return c.SearchModSeq(cur.number(MAX_NUMBER64, "a mod-sequence"), entry_name, entry_type)


_SEARCH_KEYS: dict[str, Callable[[Parse], c.SearchKey]] = {
    "ALL": lambda p: c.SearchAll(),
    "ANSWERED": _flag_key("\\Answered", True),
    "DELETED": _flag_key("\\Deleted", True),
    "DRAFT": _flag_key("\\Draft", True),
    "FLAGGED": _flag_key("\\Flagged", True),
    "SEEN": _flag_key("\\Seen", True),
    "UNANSWERED": _flag_key("\\Answered", False),
    "UNDELETED": _flag_key("\\Deleted", False),
    "UNDRAFT": _flag_key("\\Draft", False),
    "UNFLAGGED": _flag_key("\\Flagged", False),
    "UNSEEN": _flag_key("\\Seen", False),
    "RECENT": lambda p: c.SearchRecent(True),
    "OLD": lambda p: c.SearchRecent(False),
    "NEW": lambda p: c.SearchAnd((c.SearchRecent(True), c.SearchFlag("\\Seen", False))),
    "KEYWORD": _keyword_key(True),
    "UNKEYWORD": _keyword_key(False),
    "BCC": _header_key("Bcc"),
    "CC": _header_key("Cc"),
    "FROM": _header_key("From"),
    "TO": _header_key("To"),
    "SUBJECT": _header_key("Subject"),
    "HEADER": _header_field_key,
    "BODY": _text_key(c.SearchBody),
    "TEXT": _text_key(c.SearchText),
    "BEFORE": _date_key("internal", "before"),
    "ON": _date_key("internal", "on"),
    "SINCE": _date_key("internal", "since"),
    "SENTBEFORE": _date_key("sent", "before"),
    "SENTON": _date_key("sent", "on"),
    "SENTSINCE": _date_key("sent", "since"),
    "LARGER": _size_key("larger"),
    "SMALLER": _size_key("smaller"),
    "UID": _uid_key,
    "NOT": _not_key,
    "OR": _or_key,
    "MODSEQ": _modseq_key,
    "OLDER": _within_key("older"),
    "YOUNGER": _within_key("younger"),
}
