"""Sans-IO IMAP command parser.

Two layers:

* :class:`CommandReader` frames the byte stream into commands.  It is fed
  whatever arrived (``feed(data) -> list[event]``) and answers with events:
  :class:`CommandReceived`, :class:`ContinuationRequired` (send ``+ `` so the
  client sends its synchronising literal), :class:`CommandError` (turn into
  ``TAG BAD ...``), and, in the modes the server switches on,
  :class:`IdleDone` and :class:`LineReceived` (AUTHENTICATE exchanges).
  Line length and literal size are limited before anything is buffered.
* :func:`parse_command` parses one complete command (lines with their
  literals inline, the final CRLF removed) into a typed command from
  :mod:`.commands`, or raises :class:`~.lexer.ImapSyntaxError`.

Like pymap, each command has its own small parse function chosen by name;
like mox, parsing is recursive descent over the complete command with one
position, and a syntax error unwinds to one place that knows the tag.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from postern.mime.imap_structure import SectionSpec

from . import commands as c
from .lexer import MAX_NUMBER64, TAG_CHARS, Cursor, ImapSyntaxError
from .utf7 import Utf7Error, decode_modified_utf7

__all__ = [
    "CommandError",
    "CommandReader",
    "CommandReceived",
    "ContinuationRequired",
    "IdleDone",
    "ImapSyntaxError",
    "LineReceived",
    "ReaderEvent",
    "parse_command",
    "parse_sequence_set",
]

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


def _sequence_set(cur: Cursor, allow_saved: bool = True) -> c.SequenceSet:
    return parse_sequence_set(cur.sequence_text(), allow_saved)


def _mailbox_name(raw: bytes, utf8: bool) -> str:
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
            raise ImapSyntaxError(f"mailbox name is not valid mUTF-7: {exc}") from exc
    # INBOX is case-insensitive (RFC 3501 §5.1), its children are not.
    return "INBOX" if name.upper() == "INBOX" else name


def _pattern(raw: bytes, utf8: bool) -> str:
    """A LIST pattern or reference: decoded like a name, but never refused."""
    try:
        return _mailbox_name(raw, utf8)
    except ImapSyntaxError:
        return raw.decode("utf-8", "replace")


_SYSTEM_FLAGS = {f.upper(): f for f in ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent")}


def _flag(cur: Cursor, allow_wildcard: bool = False) -> str:
    if cur.skip(b"\\"):
        if allow_wildcard and cur.skip(b"*"):
            return "\\*"
        name = "\\" + cur.atom("a flag").decode("latin-1")
        # Unknown \Extension flags are kept as written (RFC 3501 flag-extension).
        return _SYSTEM_FLAGS.get(name.upper(), name)
    return cur.atom("a flag").decode("utf-8", "replace")


def _flag_list(cur: Cursor) -> tuple[str, ...]:
    cur.expect(b"(")
    flags: list[str] = []
    if not cur.skip(b")"):
        while True:
            flags.append(_flag(cur))
            if cur.skip(b")"):
                break
            cur.sp()
    return tuple(flags)


def _atom_list(cur: Cursor, allow_empty: bool = True) -> list[str]:
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


# ---------------------------------------------------------------------------
# the parse context (per command)
# ---------------------------------------------------------------------------


class _Parse:
    __slots__ = ("cur", "depth", "tag", "utf8", "charset")

    def __init__(self, cur: Cursor, tag: str, utf8: bool) -> None:
        self.cur = cur
        self.tag = tag
        self.utf8 = utf8
        self.depth = 0
        self.charset = "utf-8"

    def mailbox(self) -> str:
        return _mailbox_name(self.cur.astring("a mailbox name"), self.utf8)

    # -- SEARCH -------------------------------------------------------------

    def set_charset(self, name: str) -> None:
        try:
            info = codecs.lookup(name)
            if not getattr(info, "_is_text_encoding", True):  # rot13, base64, ...
                raise LookupError(name)
        except (LookupError, ValueError) as exc:
            raise ImapSyntaxError(
                f"unsupported charset {name}", code="BADCHARSET (US-ASCII UTF-8)", status="NO"
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
                return c.SearchSequence(_sequence_set(cur))
            name = cur.keyword("a search key")
            handler = _SEARCH_KEYS.get(name)
            if handler is None:
                raise ImapSyntaxError(f"unknown search key {name}")
            return handler(self)
        finally:
            self.depth -= 1

    def search_return(self) -> tuple[str, ...]:
        options = _atom_list(self.cur)
        for option in options:
            if option not in ("MIN", "MAX", "ALL", "COUNT", "SAVE"):
                raise ImapSyntaxError(f"unknown SEARCH RETURN option {option}")
        return tuple(dict.fromkeys(options))


def _flag_key(flag: str, present: bool) -> Callable[[_Parse], c.SearchKey]:
    return lambda p: c.SearchFlag(flag, present)


def _header_key(field: str) -> Callable[[_Parse], c.SearchKey]:
    def parse(p: _Parse) -> c.SearchKey:
        p.cur.sp()
        return c.SearchHeader(field, p.search_string())

    return parse


def _date_key(field: Literal["internal", "sent"], relation: Literal["before", "on", "since"]) -> Callable[[_Parse], c.SearchKey]:
    def parse(p: _Parse) -> c.SearchKey:
        p.cur.sp()
        return c.SearchDate(field, relation, p.cur.date())

    return parse


def _keyword_key(present: bool) -> Callable[[_Parse], c.SearchKey]:
    def parse(p: _Parse) -> c.SearchKey:
        p.cur.sp()
        return c.SearchFlag(_flag(p.cur), present)

    return parse


def _size_key(relation: Literal["larger", "smaller"]) -> Callable[[_Parse], c.SearchKey]:
    def parse(p: _Parse) -> c.SearchKey:
        p.cur.sp()
        return c.SearchSize(relation, p.cur.number(MAX_NUMBER64))

    return parse


def _within_key(relation: Literal["older", "younger"]) -> Callable[[_Parse], c.SearchKey]:
    def parse(p: _Parse) -> c.SearchKey:
        p.cur.sp()
        return c.SearchWithin(relation, p.cur.nz_number())

    return parse


def _header_field_key(p: _Parse) -> c.SearchKey:
    p.cur.sp()
    name = p.cur.astring("a header field name").decode("latin-1")
    p.cur.sp()
    return c.SearchHeader(name, p.search_string())


def _text_key(kind: type[c.SearchBody] | type[c.SearchText]) -> Callable[[_Parse], c.SearchKey]:
    def parse(p: _Parse) -> c.SearchKey:
        p.cur.sp()
        return kind(p.search_string())

    return parse


def _uid_key(p: _Parse) -> c.SearchKey:
    p.cur.sp()
    return c.SearchUid(_sequence_set(p.cur))


def _not_key(p: _Parse) -> c.SearchKey:
    p.cur.sp()
    return c.SearchNot(p.search_key())


def _or_key(p: _Parse) -> c.SearchKey:
    p.cur.sp()
    left = p.search_key()
    p.cur.sp()
    return c.SearchOr(left, p.search_key())


def _modseq_key(p: _Parse) -> c.SearchKey:
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


_SEARCH_KEYS: dict[str, Callable[[_Parse], c.SearchKey]] = {
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


# ---------------------------------------------------------------------------
# FETCH attributes
# ---------------------------------------------------------------------------

_FETCH_NAME_RE = re.compile(rb"[A-Za-z0-9.\-]+")
_SECTION_WORD_RE = re.compile(rb"[A-Za-z.]+")
_SIMPLE_FETCH = {
    "ENVELOPE",
    "FLAGS",
    "INTERNALDATE",
    "RFC822",
    "RFC822.HEADER",
    "RFC822.SIZE",
    "RFC822.TEXT",
    "BODY",
    "BODYSTRUCTURE",
    "UID",
    "MODSEQ",
    "SAVEDATE",
}
_MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}


def _section(cur: Cursor, binary: bool) -> SectionSpec:
    """After ``[``: the section spec and the closing ``]``."""
    parts: list[int] = []
    text: str | None = None
    fields: tuple[str, ...] = ()
    word_required = False
    while 0x30 <= cur.peek() <= 0x39:
        parts.append(cur.nz_number(what="a part number"))
        if not cur.skip(b"."):
            break
        if not 0x30 <= cur.peek() <= 0x39:
            word_required = True  # "1.TEXT", "1.MIME", ...
            break
    if word_required and (binary or cur.peek() == 0x5D):
        raise ImapSyntaxError("expected a section name after the part number")
    if parts and not word_required and cur.peek() != 0x5D:
        raise ImapSyntaxError("expected ']' or '.' after a part number")
    if cur.peek() != 0x5D:  # ']'
        if binary:
            raise ImapSyntaxError("BINARY sections are part numbers only")
        word = cur._match(_SECTION_WORD_RE, "a section name").decode("ascii").upper()
        if word == "MIME" and parts:
            text = word
        elif word in ("HEADER", "TEXT"):
            text = word
        elif word in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
            text = word
            cur.sp()
            cur.expect(b"(")
            names: list[str] = []
            while True:
                names.append(cur.astring("a header field name").decode("latin-1"))
                if cur.skip(b")"):
                    break
                cur.sp()
            fields = tuple(names)
        else:
            raise ImapSyntaxError(f"unknown section {word}")
    cur.expect(b"]")
    return SectionSpec(tuple(parts), text, fields)


def _fetch_attribute(cur: Cursor) -> c.FetchAttribute:
    name = cur._match(_FETCH_NAME_RE, "a fetch item").decode("ascii").upper()
    if cur.peek() == 0x5B:  # '['
        peek = name.endswith(".PEEK")
        base = name.removesuffix(".PEEK")
        if base not in ("BODY", "BINARY", "BINARY.SIZE") or (peek and base == "BINARY.SIZE"):
            raise ImapSyntaxError(f"{name} takes no section")
        cur.pos += 1
        section = _section(cur, binary=base != "BODY")
        partial = None
        if base != "BINARY.SIZE" and cur.skip(b"<"):
            origin = cur.number(what="a partial origin")
            cur.expect(b".")
            count = cur.nz_number(what="a partial length")
            cur.expect(b">")
            partial = (origin, count)
        return c.FetchAttribute(base, section, partial, peek)  # type: ignore[arg-type]
    if name not in _SIMPLE_FETCH:
        raise ImapSyntaxError(f"unknown fetch item {name}")
    return c.FetchAttribute(name)  # type: ignore[arg-type]


def _fetch_attributes(cur: Cursor) -> tuple[c.FetchAttribute, ...]:
    if cur.skip(b"("):
        items = [_fetch_attribute(cur)]
        while not cur.skip(b")"):
            cur.sp()
            items.append(_fetch_attribute(cur))
        return tuple(dict.fromkeys(items))
    for macro, names in _MACROS.items():
        if cur.peek_word(macro.encode()):
            cur.atom()
            return tuple(c.FetchAttribute(n) for n in names)  # type: ignore[arg-type]
    return (_fetch_attribute(cur),)


# ---------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------


def _no_arguments(kind: type[c.Command]) -> Callable[[_Parse, bool], c.Command]:
    def parse(p: _Parse, uid: bool) -> c.Command:
        return kind(p.tag)

    return parse


def _parse_authenticate(p: _Parse, uid: bool) -> c.Command:
    cur = p.cur
    cur.sp()
    mechanism = cur.keyword("a SASL mechanism")
    initial = None
    if not cur.at_end():
        cur.sp()
        if cur.skip(b"="):
            initial = b"="
        else:
            initial = cur._match(re.compile(rb"[A-Za-z0-9+/]+=*"), "a base64 initial response")
    return c.Authenticate(p.tag, mechanism, initial)


def _parse_login(p: _Parse, uid: bool) -> c.Command:
    cur = p.cur
    cur.sp()
    user = cur.astring("a user name")
    cur.sp()
    return c.Login(p.tag, user, cur.astring("a password"))


def _parse_id(p: _Parse, uid: bool) -> c.Command:
    cur = p.cur
    cur.sp()
    if cur.peek_word(b"NIL"):
        cur.atom()
        return c.Id(p.tag, None)
    cur.expect(b"(")
    pairs: list[tuple[str, str | None]] = []
    if not cur.skip(b")"):
        while True:
            key = cur.string().decode("utf-8", "replace")
            cur.sp()
            value = cur.nstring()
            pairs.append((key, None if value is None else value.decode("utf-8", "replace")))
            if len(pairs) > 30:  # RFC 2971 §3.3
                raise ImapSyntaxError("too many ID parameters")
            if cur.skip(b")"):
                break
            cur.sp()
    return c.Id(p.tag, tuple(pairs))


def _parse_enable(p: _Parse, uid: bool) -> c.Command:
    caps: list[str] = []
    while not p.cur.at_end():
        p.cur.sp()
        caps.append(p.cur.keyword("a capability"))
    if not caps:
        raise ImapSyntaxError("ENABLE needs at least one capability")
    return c.Enable(p.tag, tuple(caps))


def _parse_select(kind: type[c.Select]) -> Callable[[_Parse, bool], c.Command]:
    def parse(p: _Parse, uid: bool) -> c.Command:
        cur = p.cur
        cur.sp()
        mailbox = p.mailbox()
        condstore = False
        qresync = None
        if not cur.at_end():
            cur.sp()
            cur.expect(b"(")
            while True:
                param = cur.keyword("a SELECT parameter")
                if param == "CONDSTORE":
                    condstore = True
                elif param == "QRESYNC":
                    cur.sp()
                    qresync = _qresync(cur)
                else:
                    raise ImapSyntaxError(f"unknown SELECT parameter {param}")
                if cur.skip(b")"):
                    break
                cur.sp()
        return kind(p.tag, mailbox, condstore, qresync)

    return parse


def _qresync(cur: Cursor) -> c.QresyncParameters:
    cur.expect(b"(")
    uidvalidity = cur.nz_number(what="a UIDVALIDITY")
    cur.sp()
    modseq = cur.nz_number(MAX_NUMBER64, "a mod-sequence")
    known_uids = seqs = uids = None
    if cur.skip(b" "):
        if cur.peek() != 0x28:
            known_uids = _sequence_set(cur, allow_saved=False)
            if cur.skip(b" "):
                cur.expect(b"(")
        else:
            cur.expect(b"(")
        if cur.data[cur.pos - 1] == 0x28:  # a seq-match-data list was opened
            seqs = _sequence_set(cur, allow_saved=False)
            cur.sp()
            uids = _sequence_set(cur, allow_saved=False)
            cur.expect(b")")
    cur.expect(b")")
    return c.QresyncParameters(uidvalidity, modseq, known_uids, seqs, uids)


def _one_mailbox(kind: type[c.Command]) -> Callable[[_Parse, bool], c.Command]:
    def parse(p: _Parse, uid: bool) -> c.Command:
        p.cur.sp()
        return kind(p.tag, p.mailbox())  # type: ignore[call-arg]

    return parse


def _parse_create(p: _Parse, uid: bool) -> c.Command:
    cur = p.cur
    cur.sp()
    mailbox = p.mailbox()
    uses: list[str] = []
    if not cur.at_end():
        cur.sp()
        cur.expect(b"(")
        while True:
            param = cur.keyword("a CREATE parameter")
            if param != "USE":
                raise ImapSyntaxError(f"unknown CREATE parameter {param}")
            cur.sp()
            uses.extend(_flag_list(cur))
            if cur.skip(b")"):
                break
            cur.sp()
    return c.Create(p.tag, mailbox, tuple(uses))


def _parse_rename(p: _Parse, uid: bool) -> c.Command:
    p.cur.sp()
    old = p.mailbox()
    p.cur.sp()
    return c.Rename(p.tag, old, p.mailbox())


_LIST_SELECTION = ("SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE")
_LIST_RETURN = ("SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS")
_STATUS_ITEMS = (
    "MESSAGES",
    "RECENT",
    "UIDNEXT",
    "UIDVALIDITY",
    "UNSEEN",
    "HIGHESTMODSEQ",
    "SIZE",
    "DELETED",
    "APPENDLIMIT",
    "MAILBOXID",
)


def _status_items(cur: Cursor) -> tuple[str, ...]:
    items = _atom_list(cur, allow_empty=False)
    for item in items:
        if item not in _STATUS_ITEMS:
            raise ImapSyntaxError(f"unknown STATUS item {item}")
    return tuple(dict.fromkeys(items))


def _parse_list(p: _Parse, uid: bool) -> c.Command:
    cur = p.cur
    cur.sp()
    extended = False
    selection: list[str] = []
    if cur.peek() == 0x28:
        extended = True
        selection = _atom_list(cur)
        for option in selection:
            if option not in _LIST_SELECTION:
                raise ImapSyntaxError(f"unknown LIST selection option {option}")
        if "RECURSIVEMATCH" in selection and len(set(selection) - {"RECURSIVEMATCH", "REMOTE"}) == 0:
            raise ImapSyntaxError("RECURSIVEMATCH needs another selection option")
        cur.sp()
    reference = _pattern(cur.astring("a reference name"), p.utf8)
    cur.sp()
    patterns: list[str] = []
    if cur.skip(b"("):
        extended = True
        while True:
            patterns.append(_pattern(cur.list_mailbox(), p.utf8))
            if cur.skip(b")"):
                break
            cur.sp()
    else:
        patterns.append(_pattern(cur.list_mailbox(), p.utf8))
    returns: list[str] = []
    status_items: tuple[str, ...] | None = None
    if not cur.at_end():
        cur.sp()
        if cur.keyword("RETURN") != "RETURN":
            raise ImapSyntaxError("expected RETURN")
        extended = True
        cur.sp()
        cur.expect(b"(")
        if not cur.skip(b")"):
            while True:
                option = cur.keyword("a LIST return option")
                if option not in _LIST_RETURN:
                    raise ImapSyntaxError(f"unknown LIST return option {option}")
                returns.append(option)
                if option == "STATUS":
                    cur.sp()
                    status_items = _status_items(cur)
                if cur.skip(b")"):
                    break
                cur.sp()
    return c.List(
        p.tag,
        reference,
        tuple(patterns),
        tuple(dict.fromkeys(selection)),
        tuple(dict.fromkeys(returns)),
        status_items,
        extended,
    )


def _parse_lsub(p: _Parse, uid: bool) -> c.Command:
    cur = p.cur
    cur.sp()
    reference = _pattern(cur.astring("a reference name"), p.utf8)
    cur.sp()
    return c.Lsub(p.tag, reference, _pattern(cur.list_mailbox(), p.utf8))


def _parse_status(p: _Parse, uid: bool) -> c.Command:
    p.cur.sp()
    mailbox = p.mailbox()
    p.cur.sp()
    return c.Status(p.tag, mailbox, _status_items(p.cur))


def _parse_append(p: _Parse, uid: bool) -> c.Command:
    cur = p.cur
    cur.sp()
    mailbox = p.mailbox()
    messages: list[c.AppendMessage] = []
    while not cur.at_end() or not messages:
        cur.sp()
        flags: tuple[str, ...] = ()
        internaldate = None
        if cur.peek() == 0x28:
            flags = _flag_list(cur)
            cur.sp()
        if cur.peek() == 0x22:
            internaldate = cur.date_time()
            cur.sp()
        if cur.peek_word(b"UTF8"):  # RFC 6855: UTF8 (literal8)
            cur.atom()
            cur.sp()
            cur.expect(b"(")
            data, binary = cur.literal(allow_literal8=True)
            cur.expect(b")")
        else:
            data, binary = cur.literal(allow_literal8=True)
        messages.append(c.AppendMessage(data, flags, internaldate, binary))
        if len(messages) > MAX_APPEND_MESSAGES:
            raise ImapSyntaxError("too many messages in one APPEND")
    return c.Append(p.tag, mailbox, tuple(messages))


def _parse_expunge(p: _Parse, uid: bool) -> c.Command:
    if not uid:
        return c.Expunge(p.tag)
    p.cur.sp()
    return c.Expunge(p.tag, _sequence_set(p.cur))


def _search_prefix(p: _Parse, esearch_ok: bool = True) -> tuple[str, ...] | None:
    """``RETURN (...)`` after SEARCH / SORT, if present (the SP after it is consumed)."""
    cur = p.cur
    if esearch_ok and cur.peek_word(b"RETURN"):
        cur.atom()
        cur.sp()
        options = p.search_return()
        cur.sp()
        return options
    return None


def _parse_search(p: _Parse, uid: bool) -> c.Command:
    cur = p.cur
    cur.sp()
    returns = _search_prefix(p)
    charset = None
    if cur.peek_word(b"CHARSET"):
        cur.atom()
        cur.sp()
        charset = cur.astring("a charset").decode("latin-1")
        p.set_charset(charset)
        cur.sp()
    return c.Search(p.tag, uid, charset, p.search_program(), returns)


def _parse_fetch(p: _Parse, uid: bool) -> c.Command:
    cur = p.cur
    cur.sp()
    sequence_set = _sequence_set(cur)
    cur.sp()
    attributes = _fetch_attributes(cur)
    changed_since = None
    vanished = False
    if not cur.at_end():
        cur.sp()
        cur.expect(b"(")
        while True:
            modifier = cur.keyword("a FETCH modifier")
            if modifier == "CHANGEDSINCE":
                cur.sp()
                changed_since = cur.number(MAX_NUMBER64, "a mod-sequence")
            elif modifier == "VANISHED":
                vanished = True
            else:
                raise ImapSyntaxError(f"unknown FETCH modifier {modifier}")
            if cur.skip(b")"):
                break
            cur.sp()
    if vanished and (not uid or changed_since is None):
        # RFC 7162 §3.2.6: VANISHED only in UID FETCH and only with CHANGEDSINCE.
        raise ImapSyntaxError("VANISHED needs UID FETCH and CHANGEDSINCE")
    if uid and not any(a.name == "UID" for a in attributes):
        attributes = (*attributes, c.FetchAttribute("UID"))
    return c.Fetch(p.tag, uid, sequence_set, attributes, changed_since, vanished)


_STORE_RE = re.compile(rb"([+-]?)FLAGS(\.SILENT)?", re.IGNORECASE)


def _parse_store(p: _Parse, uid: bool) -> c.Command:
    cur = p.cur
    cur.sp()
    sequence_set = _sequence_set(cur)
    cur.sp()
    unchanged_since = None
    if cur.skip(b"("):
        modifier = cur.keyword("a STORE modifier")
        if modifier != "UNCHANGEDSINCE":
            raise ImapSyntaxError(f"unknown STORE modifier {modifier}")
        cur.sp()
        unchanged_since = cur.number(MAX_NUMBER64, "a mod-sequence")
        cur.expect(b")")
        cur.sp()
    m = _STORE_RE.match(cur.data, cur.pos)
    if m is None or cur.data[m.end() : m.end() + 1] != b" ":
        raise ImapSyntaxError("expected FLAGS, +FLAGS or -FLAGS")
    cur.pos = m.end() + 1
    mode: Literal["replace", "add", "remove"] = {b"": "replace", b"+": "add", b"-": "remove"}[m.group(1)]  # type: ignore[assignment]
    if cur.peek() == 0x28:
        flags = _flag_list(cur)
    else:
        items = [_flag(cur)]
        while cur.skip(b" "):
            items.append(_flag(cur))
        flags = tuple(items)
    return c.Store(p.tag, uid, sequence_set, mode, bool(m.group(2)), flags, unchanged_since)


def _copy_like(kind: type[c.Copy] | type[c.Move]) -> Callable[[_Parse, bool], c.Command]:
    def parse(p: _Parse, uid: bool) -> c.Command:
        p.cur.sp()
        sequence_set = _sequence_set(p.cur)
        p.cur.sp()
        return kind(p.tag, uid, sequence_set, p.mailbox())

    return parse


_SORT_KEYS = ("ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO")


def _parse_sort(p: _Parse, uid: bool) -> c.Command:
    cur = p.cur
    cur.sp()
    returns = _search_prefix(p)
    words = _atom_list(cur, allow_empty=False)
    criteria: list[c.SortCriterion] = []
    reverse = False
    for word in words:
        if word == "REVERSE" and not reverse:
            reverse = True
            continue
        if word not in _SORT_KEYS:
            raise ImapSyntaxError(f"unknown SORT criterion {word}")
        criteria.append(c.SortCriterion(word, reverse))
        reverse = False
    if reverse:
        raise ImapSyntaxError("REVERSE must precede a SORT criterion")
    cur.sp()
    charset = cur.astring("a charset").decode("latin-1")
    p.set_charset(charset)
    cur.sp()
    return c.Sort(p.tag, uid, tuple(criteria), charset, p.search_program(), returns)


def _parse_thread(p: _Parse, uid: bool) -> c.Command:
    cur = p.cur
    cur.sp()
    algorithm = cur.keyword("a THREAD algorithm")
    if algorithm not in ("REFERENCES", "ORDEREDSUBJECT", "REFS"):
        raise ImapSyntaxError(f"unknown THREAD algorithm {algorithm}")
    cur.sp()
    charset = cur.astring("a charset").decode("latin-1")
    p.set_charset(charset)
    cur.sp()
    return c.Thread(p.tag, uid, algorithm, charset, p.search_program())


def _parse_getquota(p: _Parse, uid: bool) -> c.Command:
    p.cur.sp()
    return c.GetQuota(p.tag, p.cur.astring("a quota root").decode("utf-8", "replace"))


def _parse_setquota(p: _Parse, uid: bool) -> c.Command:
    cur = p.cur
    cur.sp()
    root = cur.astring("a quota root").decode("utf-8", "replace")
    cur.sp()
    cur.expect(b"(")
    limits: list[tuple[str, int]] = []
    if not cur.skip(b")"):
        while True:
            resource = cur.keyword("a quota resource")
            cur.sp()
            limits.append((resource, cur.number(MAX_NUMBER64, "a quota limit")))
            if cur.skip(b")"):
                break
            cur.sp()
    return c.SetQuota(p.tag, root, tuple(limits))


_COMMANDS: dict[str, Callable[[_Parse, bool], c.Command]] = {
    "CAPABILITY": _no_arguments(c.Capability),
    "NOOP": _no_arguments(c.Noop),
    "LOGOUT": _no_arguments(c.Logout),
    "STARTTLS": _no_arguments(c.StartTls),
    "AUTHENTICATE": _parse_authenticate,
    "LOGIN": _parse_login,
    "ID": _parse_id,
    "ENABLE": _parse_enable,
    "SELECT": _parse_select(c.Select),
    "EXAMINE": _parse_select(c.Examine),
    "CREATE": _parse_create,
    "DELETE": _one_mailbox(c.Delete),
    "RENAME": _parse_rename,
    "SUBSCRIBE": _one_mailbox(c.Subscribe),
    "UNSUBSCRIBE": _one_mailbox(c.Unsubscribe),
    "LIST": _parse_list,
    "LSUB": _parse_lsub,
    "NAMESPACE": _no_arguments(c.Namespace),
    "STATUS": _parse_status,
    "APPEND": _parse_append,
    "IDLE": _no_arguments(c.Idle),
    "CHECK": _no_arguments(c.Check),
    "CLOSE": _no_arguments(c.Close),
    "UNSELECT": _no_arguments(c.Unselect),
    "EXPUNGE": _parse_expunge,
    "SEARCH": _parse_search,
    "FETCH": _parse_fetch,
    "STORE": _parse_store,
    "COPY": _copy_like(c.Copy),
    "MOVE": _copy_like(c.Move),
    "SORT": _parse_sort,
    "THREAD": _parse_thread,
    "GETQUOTA": _parse_getquota,
    "GETQUOTAROOT": _one_mailbox(c.GetQuotaRoot),
    "SETQUOTA": _parse_setquota,
}
_UID_COMMANDS = frozenset({"COPY", "MOVE", "FETCH", "SEARCH", "STORE", "EXPUNGE", "SORT", "THREAD"})


def parse_command(data: bytes, *, utf8: bool = False) -> c.Command:
    """Parse one complete command (without its final CRLF).

    Raises :class:`ImapSyntaxError`; its ``tag`` attribute is set when the
    tag could be read, so the answer can be tagged.  ``utf8`` is true once the
    client has sent ``ENABLE UTF8=ACCEPT`` (mailbox names are then UTF-8).
    """
    cur = Cursor(data)
    tag = cur.tag().decode("ascii")
    if cur.peek() != 0x20:
        raise ImapSyntaxError("expected a tag and a space")
    try:
        cur.sp()
        name = cur.keyword("a command name")
        uid = False
        if name == "UID":
            cur.sp()
            name = cur.keyword("a command name after UID")
            if name not in _UID_COMMANDS:
                raise ImapSyntaxError(f"UID {name} is not a command")
            uid = True
        handler = _COMMANDS.get(name)
        if handler is None:
            raise ImapSyntaxError(f"unknown command {name}")
        command = handler(_Parse(cur, tag, utf8), uid)
        cur.end()
        return command
    except ImapSyntaxError as exc:
        exc.tag = tag  # type: ignore[attr-defined]
        raise
    except RecursionError as exc:  # pragma: no cover - nesting is bounded
        error = ImapSyntaxError("command nests too deeply")
        error.tag = tag  # type: ignore[attr-defined]
        raise error from exc


# ---------------------------------------------------------------------------
# framing: CommandReader
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandReceived:
    command: c.Command


@dataclass(frozen=True, slots=True)
class ContinuationRequired:
    """The client announced a synchronising literal of ``size`` bytes.

    The server answers ``+ Ready`` (then the client sends the bytes) or
    refuses with a tagged response and calls :meth:`CommandReader.reject_literal`.
    """

    tag: str | None
    command_name: str | None
    size: int


@dataclass(frozen=True, slots=True)
class CommandError:
    """Answer ``TAG BAD [CODE] message`` (``* BAD`` when ``tag`` is None).

    ``status`` is ``NO`` for the few refusals decided while parsing (an
    unknown SEARCH charset).  ``fatal``: the stream cannot be resynchronised
    (an oversized non-synchronising literal is on its way); send the answer
    and close the connection.
    """

    tag: str | None
    message: str
    code: str | None = None
    status: Literal["BAD", "NO"] = "BAD"
    fatal: bool = False

    def response(self) -> bytes:
        code = f"[{self.code}] " if self.code else ""
        text = f"{self.tag or '*'} {self.status} {code}{self.message}\r\n"
        return text.encode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class IdleDone:
    """The client sent DONE to end IDLE."""


@dataclass(frozen=True, slots=True)
class LineReceived:
    """A raw line asked for with :meth:`CommandReader.expect_line` (SASL)."""

    line: bytes


ReaderEvent = CommandReceived | ContinuationRequired | CommandError | IdleDone | LineReceived

_LITERAL_AT_END_RE = re.compile(rb"~?\{([0-9]{1,20})(\+?)\}\Z")
_HEAD_RE = re.compile(b"([" + re.escape(TAG_CHARS) + rb"]+) ([A-Za-z]+)(?: ([A-Za-z]+))?")

# Commands after which the reader stops and waits for the server: what follows
# is not a command (IDLE's DONE, SASL lines) or must be thrown away (STARTTLS:
# plaintext sent before the handshake must never be read as if it were
# protected, CVE-2011-0411 style command injection).
_PAUSE_AFTER = (c.Idle, c.Authenticate, c.StartTls)

_Mode = Literal["command", "paused", "idle", "line", "skip_line", "closed"]


class CommandReader:
    """Incremental framing of a client's byte stream into commands.

    ``max_line_length`` bounds the non-literal bytes of one command (all its
    lines together); ``max_literal_size`` bounds each literal.  Both are
    checked before the bytes are buffered, and give ``[TOOBIG]`` errors.
    """

    def __init__(
        self,
        *,
        max_line_length: int = 64 * 1024,
        max_literal_size: int = 64 * 1024 * 1024,
        literal_plus: bool = True,
    ) -> None:
        self.max_line_length = max_line_length
        self.max_literal_size = max_literal_size
        self.literal_plus = literal_plus
        #: Mailbox names are UTF-8 (set by the server after ENABLE UTF8=ACCEPT).
        self.utf8 = False
        self._buffer = bytearray()
        self._command = bytearray()
        self._text_length = 0  # non-literal bytes of the command so far
        self._literal_left = 0
        self._mode: _Mode = "command"

    # -- mode switches, called by the server -------------------------------

    @property
    def paused(self) -> bool:
        """True after IDLE, AUTHENTICATE or STARTTLS until the server resumes."""
        return self._mode == "paused"

    @property
    def closed(self) -> bool:
        return self._mode == "closed"

    @property
    def buffered(self) -> int:
        """Bytes received but not yet processed."""
        return len(self._buffer)

    def resume(self) -> list[ReaderEvent]:
        """Read commands again (e.g. after refusing IDLE or finishing SASL)."""
        if self._mode != "closed":
            self._mode = "command"
        return self.feed(b"")

    def expect_idle_done(self) -> list[ReaderEvent]:
        """IDLE was accepted (``+ idling`` sent): the next line must be DONE."""
        if self._mode != "closed":
            self._mode = "idle"
        return self.feed(b"")

    def expect_line(self) -> list[ReaderEvent]:
        """A SASL challenge was sent: the next line is the client's response."""
        if self._mode != "closed":
            self._mode = "line"
        return self.feed(b"")

    def discard_buffered(self) -> int:
        """Throw away unread input (after STARTTLS); returns how much."""
        dropped = len(self._buffer)
        self._buffer.clear()
        return dropped

    def reject_literal(self) -> None:
        """The server refused a synchronising literal: forget the command."""
        self._reset_command()
        if self._mode != "closed":
            self._mode = "command"

    # -- feeding -------------------------------------------------------------

    def feed(self, data: bytes) -> list[ReaderEvent]:
        events: list[ReaderEvent] = []
        if self._mode == "closed":
            return events
        self._buffer += data
        try:
            self._run(events)
        except Exception as exc:  # pragma: no cover - a bug; never kill the session
            self._reset_command()
            self._buffer.clear()
            events.append(CommandError(None, f"internal parser error: {type(exc).__name__}"))
        return events

    def _reset_command(self) -> None:
        self._command = bytearray()
        self._text_length = 0
        self._literal_left = 0

    def _run(self, events: list[ReaderEvent]) -> None:
        buf = self._buffer
        while True:
            mode = self._mode
            if mode in ("paused", "closed"):
                return
            if self._literal_left:
                take = min(self._literal_left, len(buf))
                if not take:
                    return
                self._command += buf[:take]
                del buf[:take]
                self._literal_left -= take
                continue
            newline = buf.find(b"\n")
            allowance = self.max_line_length - self._text_length
            if newline < 0:
                if len(buf) > allowance and mode != "skip_line":
                    events.append(self._too_long(bytes(buf[:200])))
                    buf.clear()
                    self._mode = "skip_line"
                elif mode == "skip_line":
                    buf.clear()
                return
            line = bytes(buf[: newline + 1])
            del buf[: newline + 1]
            if mode == "skip_line":
                self._mode = "command"
                continue
            if len(line) > allowance:
                events.append(self._too_long(line[:200]))
                continue
            content = line[:-2] if line.endswith(b"\r\n") else line[:-1]
            if mode == "idle":
                self._mode = "command"
                if content.upper() == b"DONE":
                    events.append(IdleDone())
                else:
                    events.append(CommandError(None, "expected DONE"))
                continue
            if mode == "line":
                self._mode = "paused"
                events.append(LineReceived(content))
                continue
            self._on_command_line(content, events)

    def _too_long(self, line_start: bytes) -> CommandError:
        tag, _ = self._head(bytes(self._command[:200]) + line_start)
        self._reset_command()
        return CommandError(tag, "command line too long", code="TOOBIG")

    def _head(self, data: bytes) -> tuple[str | None, str | None]:
        """The tag and command name of a command, if they can be read."""
        m = _HEAD_RE.match(data)
        if m is None:
            return None, None
        name = m.group(2).decode("ascii").upper()
        if name == "UID" and m.group(3):
            name = m.group(3).decode("ascii").upper()
        tag = m.group(1).decode("ascii")
        return tag, name

    def _on_command_line(self, content: bytes, events: list[ReaderEvent]) -> None:
        if not self._command and not content:
            return  # stray empty line between commands: ignored, as Dovecot does
        literal = _literal_at_end(content)
        self._text_length += len(content) + 2
        if literal is None:
            self._command += content
            data = bytes(self._command)
            self._reset_command()
            events.append(self._parse(data))
            return
        size, synchronising = literal
        self._command += content + b"\r\n"
        tag, name = self._head(bytes(self._command[:200]))
        if not synchronising and not self.literal_plus:
            self._reset_command()
            self._mode = "closed"
            events.append(CommandError(tag, "non-synchronising literals are not supported", fatal=True))
            return
        if size > self.max_literal_size:
            self._reset_command()
            if synchronising:
                events.append(CommandError(tag, "literal too big", code="TOOBIG"))
            else:
                # The bytes are already on their way and cannot be told apart
                # from commands: the connection must end (RFC 7888 §4).
                self._mode = "closed"
                events.append(CommandError(tag, "literal too big", code="TOOBIG", fatal=True))
            return
        self._literal_left = size
        if synchronising:
            events.append(ContinuationRequired(tag, name, size))

    def _parse(self, data: bytes) -> ReaderEvent:
        try:
            command = parse_command(data, utf8=self.utf8)
        except ImapSyntaxError as exc:
            tag = getattr(exc, "tag", None)
            return CommandError(tag, exc.message, exc.code, "NO" if exc.status == "NO" else "BAD")
        if isinstance(command, _PAUSE_AFTER):
            self._mode = "paused"
        return CommandReceived(command)


def _literal_at_end(line: bytes) -> tuple[int, bool] | None:
    """``(size, synchronising)`` if the line ends with a literal announcement.

    A ``{5}`` inside a quoted string is not one; quoted strings cannot span
    lines, so the quote state of this line alone decides.
    """
    if not line.endswith(b"}"):
        return None
    m = _LITERAL_AT_END_RE.search(line)
    if m is None:
        return None
    in_quote = False
    escaped = False
    for byte in line[: m.start()]:
        if escaped:
            escaped = False
        elif in_quote and byte == 0x5C:
            escaped = True
        elif byte == 0x22:
            in_quote = not in_quote
    if in_quote:
        return None
    return int(m.group(1)), m.group(2) != b"+"
