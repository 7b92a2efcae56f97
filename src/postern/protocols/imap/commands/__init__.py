"""Typed IMAP commands, as produced by :mod:`..parser` (pure data), and, in the
submodules of this package, their handlers: one module per command or command
family (``fetch.py`` serves FETCH and UID FETCH), each an ``async def handle(session,
command)`` that :mod:`..dispatch` calls. Importing this package imports no handler.

One frozen dataclass per command name.  Every command carries the client's
``tag``; commands that have a ``UID`` form carry ``uid``.  Mailbox names are
already decoded (modified UTF-7 or UTF-8) to ``str``, with ``INBOX`` in any
case spelled ``INBOX``.  Strings the client sent for SEARCH are decoded with
the command's CHARSET.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import ClassVar, Literal

from postern.mime.imap_structure import SectionSpec

__all__ = [
    "Append",
    "AppendMessage",
    "Authenticate",
    "Capability",
    "Check",
    "Close",
    "Command",
    "Copy",
    "Create",
    "Delete",
    "Enable",
    "Examine",
    "Expunge",
    "Fetch",
    "FetchAttribute",
    "GetQuota",
    "GetQuotaRoot",
    "Id",
    "Idle",
    "List",
    "Login",
    "Logout",
    "Lsub",
    "Move",
    "Namespace",
    "Noop",
    "QresyncParameters",
    "Rename",
    "Search",
    "SectionSpec",
    "Select",
    "SequenceSet",
    "SetQuota",
    "Sort",
    "SortCriterion",
    "StartTls",
    "Status",
    "Store",
    "Subscribe",
    "Thread",
    "Unselect",
    "Unsubscribe",
    "CancelUpdate",
    # search keys
    "SearchKey",
    "SearchAll",
    "SearchAnd",
    "SearchBody",
    "SearchDate",
    "SearchFlag",
    "SearchHeader",
    "SearchModSeq",
    "SearchNot",
    "SearchOr",
    "SearchRecent",
    "SearchSequence",
    "SearchSize",
    "SearchText",
    "SearchUid",
    "SearchWithin",
]


# ---------------------------------------------------------------------------
# sequence sets
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """``1:*,5,7:9`` as inclusive ranges; ``None`` stands for ``*``.

    ``saved`` is the SEARCHRES ``$`` (the result of the last ``SEARCH ...
    RETURN (SAVE)``); its ranges are then empty and the server substitutes.
    Ranges keep the order and direction the client wrote (``9:7`` is legal).
    """

    ranges: tuple[tuple[int | None, int | None], ...] = ()
    saved: bool = False

    def resolved(self, largest: int) -> Iterator[tuple[int, int]]:
        """Each range as (low, high) with ``*`` replaced by ``largest``."""
        for start, end in self.ranges:
            low = largest if start is None else start
            high = largest if end is None else end
            yield (low, high) if low <= high else (high, low)

    def contains(self, number: int, largest: int) -> bool:
        """Whether ``number`` is in the set when ``*`` means ``largest``.

        ``*`` always names ``largest`` even when the client asked for
        ``100:*`` in a mailbox whose largest number is 5 (RFC 3501: the
        range is then ``5:100``).
        """
        return any(low <= number <= high for low, high in self.resolved(largest))

    def __str__(self) -> str:
        if self.saved:
            return "$"

        def one(n: int | None) -> str:
            return "*" if n is None else str(n)

        return ",".join(one(a) if a == b else f"{one(a)}:{one(b)}" for a, b in self.ranges)


# ---------------------------------------------------------------------------
# FETCH
# ---------------------------------------------------------------------------

FetchName = Literal[
    "BINARY",
    "BINARY.SIZE",
    "BODY",
    "BODYSTRUCTURE",
    "ENVELOPE",
    "FLAGS",
    "INTERNALDATE",
    "MODSEQ",
    "RFC822",
    "RFC822.HEADER",
    "RFC822.SIZE",
    "RFC822.TEXT",
    "SAVEDATE",
    "UID",
]


@dataclass(frozen=True, slots=True)
class FetchAttribute:
    """One FETCH data item.

    ``BODY[...]``, ``BODY.PEEK[...]``, ``BINARY[...]`` and ``BINARY.SIZE[...]``
    have a ``section``; plain ``BODY`` (the non-extensible structure) has none.
    ``partial`` is ``(origin, count)`` from ``<origin.count>``.
    """

    name: FetchName
    section: SectionSpec | None = None
    partial: tuple[int, int] | None = None
    peek: bool = False

    @property
    def sets_seen(self) -> bool:
        """Fetching this sets ``\\Seen`` (RFC 3501 §6.4.5)."""
        if self.name in ("RFC822", "RFC822.TEXT"):
            return True
        return self.name in ("BODY", "BINARY") and self.section is not None and not self.peek

    def response_name(self) -> str:
        """The name the FETCH response uses: ``BODY[1.TEXT]<0>``, never ``.PEEK``."""
        if self.section is None:
            return self.name
        text = f"{self.name}[{section_text(self.section)}]"
        if self.partial is not None:
            text += f"<{self.partial[0]}>"
        return text


def section_text(section: SectionSpec) -> str:
    """A section as written in a FETCH response: ``1.2.HEADER.FIELDS (TO CC)``."""
    pieces = [str(n) for n in section.part]
    if section.text is not None:
        pieces.append(section.text)
    text = ".".join(pieces)
    if section.text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        text += " (" + " ".join(f.upper() for f in section.fields) + ")"  # as Dovecot echoes them
    return text


# ---------------------------------------------------------------------------
# SEARCH keys
# ---------------------------------------------------------------------------


class SearchKey:
    """Base of the search-key classes (a search program is a tree of them)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class SearchAll(SearchKey):
    pass


@dataclass(frozen=True, slots=True)
class SearchFlag(SearchKey):
    """A system flag or keyword is set (``present``) or not.

    ANSWERED/UNANSWERED, DELETED, DRAFT, FLAGGED, SEEN, KEYWORD/UNKEYWORD.
    System flags are spelled canonically (``\\Seen``).
    """

    flag: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class SearchRecent(SearchKey):
    """RECENT (``present``) or OLD; NEW is ``SearchAnd(RECENT, UNSEEN)``."""

    present: bool = True


@dataclass(frozen=True, slots=True)
class SearchHeader(SearchKey):
    """FROM/TO/CC/BCC/SUBJECT/HEADER: the field contains ``value``.

    ``name`` is the field name as the client gave it (FROM becomes ``From``);
    an empty value matches every message that has the field.
    """

    name: str
    value: str


@dataclass(frozen=True, slots=True)
class SearchBody(SearchKey):
    """BODY: the body (not the header) contains ``value``."""

    value: str


@dataclass(frozen=True, slots=True)
class SearchText(SearchKey):
    """TEXT: the header or the body contains ``value``."""

    value: str


@dataclass(frozen=True, slots=True)
class SearchDate(SearchKey):
    """BEFORE/ON/SINCE (internal date) and SENTBEFORE/SENTON/SENTSINCE (Date:)."""

    field: Literal["internal", "sent"]
    relation: Literal["before", "on", "since"]
    value: date


@dataclass(frozen=True, slots=True)
class SearchSize(SearchKey):
    """LARGER n (``relation == "larger"``) or SMALLER n, on RFC822.SIZE."""

    relation: Literal["larger", "smaller"]
    size: int


@dataclass(frozen=True, slots=True)
class SearchSequence(SearchKey):
    """A bare sequence set (message sequence numbers), ``$`` included."""

    numbers: SequenceSet


@dataclass(frozen=True, slots=True)
class SearchUid(SearchKey):
    """UID set."""

    uids: SequenceSet


@dataclass(frozen=True, slots=True)
class SearchModSeq(SearchKey):
    """MODSEQ [entry-name entry-type] n (CONDSTORE): mod-sequence >= n."""

    modseq: int
    entry_name: str | None = None
    entry_type: str | None = None


@dataclass(frozen=True, slots=True)
class SearchWithin(SearchKey):
    """OLDER n / YOUNGER n (RFC 5032, seconds of internal date)."""

    relation: Literal["older", "younger"]
    seconds: int


@dataclass(frozen=True, slots=True)
class SearchNot(SearchKey):
    key: SearchKey


@dataclass(frozen=True, slots=True)
class SearchOr(SearchKey):
    left: SearchKey
    right: SearchKey


@dataclass(frozen=True, slots=True)
class SearchAnd(SearchKey):
    """All of ``keys`` (a parenthesised list, or the top level of a program)."""

    keys: tuple[SearchKey, ...]


# ---------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Command:
    """Base: every command has the client's tag."""

    tag: str
    name: ClassVar[str] = ""


@dataclass(frozen=True, slots=True)
class Capability(Command):
    name: ClassVar[str] = "CAPABILITY"


@dataclass(frozen=True, slots=True)
class Noop(Command):
    name: ClassVar[str] = "NOOP"


@dataclass(frozen=True, slots=True)
class Logout(Command):
    name: ClassVar[str] = "LOGOUT"


@dataclass(frozen=True, slots=True)
class StartTls(Command):
    name: ClassVar[str] = "STARTTLS"


@dataclass(frozen=True, slots=True)
class Authenticate(Command):
    """AUTHENTICATE mechanism [initial-response] (SASL-IR).

    ``initial_response`` is the base64 text as sent (``b"="`` is an empty
    response); ``None`` when the client sent none.
    """

    mechanism: str = ""
    initial_response: bytes | None = None
    name: ClassVar[str] = "AUTHENTICATE"


@dataclass(frozen=True, slots=True)
class Login(Command):
    username: bytes = b""
    password: bytes = b""
    name: ClassVar[str] = "LOGIN"

    def __repr__(self) -> str:  # never show a password in a log line
        return f"Login(tag={self.tag!r}, username={self.username!r}, password=<hidden>)"


@dataclass(frozen=True, slots=True)
class Id(Command):
    """ID: ``None`` for ``ID NIL``, else (field, value) pairs in order."""

    parameters: tuple[tuple[str, str | None], ...] | None = None
    name: ClassVar[str] = "ID"


@dataclass(frozen=True, slots=True)
class Enable(Command):
    capabilities: tuple[str, ...] = ()  # upper-cased
    name: ClassVar[str] = "ENABLE"


@dataclass(frozen=True, slots=True)
class QresyncParameters:
    """``QRESYNC (uidvalidity modseq [known-uids [(seqs uids)]])``."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    known_sequence_numbers: SequenceSet | None = None
    known_sequence_uids: SequenceSet | None = None


@dataclass(frozen=True, slots=True)
class Select(Command):
    mailbox: str = ""
    condstore: bool = False
    qresync: QresyncParameters | None = None
    name: ClassVar[str] = "SELECT"

    @property
    def read_only(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class Examine(Select):
    name: ClassVar[str] = "EXAMINE"

    @property
    def read_only(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Create(Command):
    """CREATE mailbox [(USE (\\Drafts ...))] (RFC 6154 CREATE-SPECIAL-USE)."""

    mailbox: str = ""
    special_use: tuple[str, ...] = ()
    name: ClassVar[str] = "CREATE"


@dataclass(frozen=True, slots=True)
class Delete(Command):
    mailbox: str = ""
    name: ClassVar[str] = "DELETE"


@dataclass(frozen=True, slots=True)
class Rename(Command):
    mailbox: str = ""
    new_name: str = ""
    name: ClassVar[str] = "RENAME"


@dataclass(frozen=True, slots=True)
class Subscribe(Command):
    mailbox: str = ""
    name: ClassVar[str] = "SUBSCRIBE"


@dataclass(frozen=True, slots=True)
class Unsubscribe(Command):
    mailbox: str = ""
    name: ClassVar[str] = "UNSUBSCRIBE"


@dataclass(frozen=True, slots=True)
class List(Command):
    """LIST, with LIST-EXTENDED selection and return options.

    ``patterns`` has one entry for the basic form, several for
    ``LIST "" ("a" "b")``.  Options are upper-cased atoms;
    ``status_items`` is the LIST-STATUS ``RETURN (STATUS (...))`` list
    (``None`` when STATUS was not asked for).
    """

    reference: str = ""
    patterns: tuple[str, ...] = ()
    selection_options: tuple[str, ...] = ()
    return_options: tuple[str, ...] = ()
    status_items: tuple[str, ...] | None = None
    extended: bool = False  # any LIST-EXTENDED syntax was used
    name: ClassVar[str] = "LIST"


@dataclass(frozen=True, slots=True)
class Lsub(Command):
    reference: str = ""
    pattern: str = ""
    name: ClassVar[str] = "LSUB"


@dataclass(frozen=True, slots=True)
class Namespace(Command):
    name: ClassVar[str] = "NAMESPACE"


@dataclass(frozen=True, slots=True)
class Status(Command):
    """STATUS mailbox (items): upper-cased MESSAGES, UIDNEXT, HIGHESTMODSEQ, ..."""

    mailbox: str = ""
    items: tuple[str, ...] = ()
    name: ClassVar[str] = "STATUS"


@dataclass(frozen=True, slots=True)
class AppendMessage:
    """One message of an APPEND (several with MULTIAPPEND)."""

    message: bytes
    flags: tuple[str, ...] = ()
    internaldate: datetime | None = None
    binary: bool = False  # sent as literal8 ``~{n}`` (RFC 3516)
    # CATENATE (RFC 4469): ("TEXT" | "TEXT8", bytes) and ("URL", url) parts, in order;
    # ``message`` is then empty until the APPEND puts the parts together.
    catenate: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class Append(Command):
    mailbox: str = ""
    messages: tuple[AppendMessage, ...] = ()
    name: ClassVar[str] = "APPEND"


@dataclass(frozen=True, slots=True)
class Idle(Command):
    name: ClassVar[str] = "IDLE"


@dataclass(frozen=True, slots=True)
class Check(Command):
    name: ClassVar[str] = "CHECK"


@dataclass(frozen=True, slots=True)
class Close(Command):
    name: ClassVar[str] = "CLOSE"


@dataclass(frozen=True, slots=True)
class Unselect(Command):
    name: ClassVar[str] = "UNSELECT"


@dataclass(frozen=True, slots=True)
class CancelUpdate(Command):
    """CANCELUPDATE "tag" ... (RFC 5267 §4.2): stop keeping those searches up to date."""

    tags: tuple[str, ...] = ()
    name: ClassVar[str] = "CANCELUPDATE"


@dataclass(frozen=True, slots=True)
class Expunge(Command):
    """EXPUNGE, or UID EXPUNGE set (UIDPLUS) when ``uids`` is given."""

    uids: SequenceSet | None = None
    name: ClassVar[str] = "EXPUNGE"

    @property
    def uid(self) -> bool:
        return self.uids is not None


@dataclass(frozen=True, slots=True)
class Search(Command):
    """SEARCH [RETURN (...)] [CHARSET x] keys.

    ``return_options`` is ``None`` for a plain SEARCH (answer ``* SEARCH``);
    a tuple (maybe empty, which means ALL) asks for ESEARCH.
    """

    uid: bool = False
    charset: str | None = None
    criteria: SearchKey = field(default_factory=SearchAll)
    return_options: tuple[str, ...] | None = None
    partial: tuple[int, int] | None = None  # RETURN (PARTIAL low:high)
    name: ClassVar[str] = "SEARCH"


@dataclass(frozen=True, slots=True)
class Fetch(Command):
    """FETCH set items [(CHANGEDSINCE n [VANISHED])]; macros are expanded."""

    uid: bool = False
    sequence_set: SequenceSet = field(default_factory=SequenceSet)
    attributes: tuple[FetchAttribute, ...] = ()
    changed_since: int | None = None
    vanished: bool = False
    name: ClassVar[str] = "FETCH"


@dataclass(frozen=True, slots=True)
class Store(Command):
    """STORE set [(UNCHANGEDSINCE n)] [+|-]FLAGS[.SILENT] flags.

    ``mode`` is ``"replace"``, ``"add"`` or ``"remove"``.
    """

    uid: bool = False
    sequence_set: SequenceSet = field(default_factory=SequenceSet)
    mode: Literal["replace", "add", "remove"] = "replace"
    silent: bool = False
    flags: tuple[str, ...] = ()
    unchanged_since: int | None = None
    name: ClassVar[str] = "STORE"


@dataclass(frozen=True, slots=True)
class Copy(Command):
    uid: bool = False
    sequence_set: SequenceSet = field(default_factory=SequenceSet)
    mailbox: str = ""
    name: ClassVar[str] = "COPY"


@dataclass(frozen=True, slots=True)
class Move(Command):
    uid: bool = False
    sequence_set: SequenceSet = field(default_factory=SequenceSet)
    mailbox: str = ""
    name: ClassVar[str] = "MOVE"


@dataclass(frozen=True, slots=True)
class SortCriterion:
    """ARRIVAL CC DATE FROM SIZE SUBJECT TO DISPLAYFROM DISPLAYTO, maybe REVERSE."""

    key: str
    reverse: bool = False


@dataclass(frozen=True, slots=True)
class Sort(Command):
    uid: bool = False
    criteria: tuple[SortCriterion, ...] = ()
    charset: str = "UTF-8"
    search: SearchKey = field(default_factory=SearchAll)
    return_options: tuple[str, ...] | None = None  # ESORT
    partial: tuple[int, int] | None = None  # RETURN (PARTIAL low:high), CONTEXT=SORT
    name: ClassVar[str] = "SORT"


@dataclass(frozen=True, slots=True)
class Thread(Command):
    uid: bool = False
    algorithm: str = "REFERENCES"  # upper-cased
    charset: str = "UTF-8"
    search: SearchKey = field(default_factory=SearchAll)
    name: ClassVar[str] = "THREAD"


@dataclass(frozen=True, slots=True)
class GetQuota(Command):
    root: str = ""
    name: ClassVar[str] = "GETQUOTA"


@dataclass(frozen=True, slots=True)
class GetQuotaRoot(Command):
    mailbox: str = ""
    name: ClassVar[str] = "GETQUOTAROOT"


@dataclass(frozen=True, slots=True)
class SetQuota(Command):
    root: str = ""
    limits: tuple[tuple[str, int], ...] = ()  # (upper-cased resource, limit)
    name: ClassVar[str] = "SETQUOTA"
