"""Each command's arguments: one small parse function per command, chosen by
name (as pymap does), and :func:`parse_command` that reads the tag and the name."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

from .. import commands as c
from ..lexer import MAX_NUMBER64, Cursor, ImapSyntaxError
from .fetch_items import fetch_attributes
from .grammar import (
    MAX_APPEND_MESSAGES,
    atom_list,
    flag,
    flag_list,
    pattern,
    read_sequence_set,
)
from .search_keys import Parse

# ---------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------


def _no_arguments(kind: type[c.Command]) -> Callable[[Parse, bool], c.Command]:
    def parse(p: Parse, uid: bool) -> c.Command:
        return kind(p.tag)

    return parse


def _parse_authenticate(p: Parse, uid: bool) -> c.Command:
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


def _parse_login(p: Parse, uid: bool) -> c.Command:
    cur = p.cur
    cur.sp()
    user = cur.astring("a user name")
    cur.sp()
    return c.Login(p.tag, user, cur.astring("a password"))


def _parse_id(p: Parse, uid: bool) -> c.Command:
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


def _parse_enable(p: Parse, uid: bool) -> c.Command:
    caps: list[str] = []
    while not p.cur.at_end():
        p.cur.sp()
        caps.append(p.cur.keyword("a capability"))
    if not caps:
        raise ImapSyntaxError("ENABLE needs at least one capability")
    return c.Enable(p.tag, tuple(caps))


def _parse_select(kind: type[c.Select]) -> Callable[[Parse, bool], c.Command]:
    def parse(p: Parse, uid: bool) -> c.Command:
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
            known_uids = read_sequence_set(cur, allow_saved=False)
            if cur.skip(b" "):
                cur.expect(b"(")
        else:
            cur.expect(b"(")
        if cur.data[cur.pos - 1] == 0x28:  # a seq-match-data list was opened
            seqs = read_sequence_set(cur, allow_saved=False)
            cur.sp()
            uids = read_sequence_set(cur, allow_saved=False)
            cur.expect(b")")
    cur.expect(b")")
    return c.QresyncParameters(uidvalidity, modseq, known_uids, seqs, uids)


def _one_mailbox(kind: type[c.Command]) -> Callable[[Parse, bool], c.Command]:
    def parse(p: Parse, uid: bool) -> c.Command:
        p.cur.sp()
        return kind(p.tag, p.mailbox())  # type: ignore[call-arg]

    return parse


def _parse_create(p: Parse, uid: bool) -> c.Command:
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
            uses.extend(flag_list(cur))
            if cur.skip(b")"):
                break
            cur.sp()
    return c.Create(p.tag, mailbox, tuple(uses))


def _parse_rename(p: Parse, uid: bool) -> c.Command:
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
    items = atom_list(cur, allow_empty=False)
    for item in items:
        if item not in _STATUS_ITEMS:
            raise ImapSyntaxError(f"unknown STATUS item {item}")
    return tuple(dict.fromkeys(items))


def _parse_list(p: Parse, uid: bool) -> c.Command:
    cur = p.cur
    cur.sp()
    extended = False
    selection: list[str] = []
    if cur.peek() == 0x28:
        extended = True
        selection = atom_list(cur)
        for option in selection:
            if option not in _LIST_SELECTION:
                raise ImapSyntaxError(f"unknown LIST selection option {option}")
        if "RECURSIVEMATCH" in selection and len(set(selection) - {"RECURSIVEMATCH", "REMOTE"}) == 0:
            raise ImapSyntaxError("RECURSIVEMATCH needs another selection option")
        cur.sp()
    reference = pattern(cur.astring("a reference name"), p.utf8)
    cur.sp()
    patterns: list[str] = []
    if cur.skip(b"("):
        extended = True
        while True:
            patterns.append(pattern(cur.list_mailbox(), p.utf8))
            if cur.skip(b")"):
                break
            cur.sp()
    else:
        patterns.append(pattern(cur.list_mailbox(), p.utf8))
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


def _parse_lsub(p: Parse, uid: bool) -> c.Command:
    cur = p.cur
    cur.sp()
    reference = pattern(cur.astring("a reference name"), p.utf8)
    cur.sp()
    return c.Lsub(p.tag, reference, pattern(cur.list_mailbox(), p.utf8))


def _parse_status(p: Parse, uid: bool) -> c.Command:
    p.cur.sp()
    mailbox = p.mailbox()
    p.cur.sp()
    return c.Status(p.tag, mailbox, _status_items(p.cur))


#: At most this many parts in one CATENATE.
MAX_CATENATE_PARTS = 1000


def _catenate_parts(cur: Cursor) -> tuple[tuple[str, bytes], ...]:
    """``(TEXT literal URL "url" ...)``: ("TEXT" or "TEXT8", bytes) and ("URL", url)."""
    cur.expect(b"(")
    parts: list[tuple[str, bytes]] = []
    while True:
        kind = cur.keyword("TEXT or URL")
        cur.sp()
        if kind == "TEXT":
            data, binary = cur.literal(allow_literal8=True)
            parts.append(("TEXT8" if binary else "TEXT", data))
        elif kind == "URL":
            parts.append(("URL", cur.astring("a URL")))
        else:
            raise ImapSyntaxError(f"CATENATE takes TEXT and URL parts, not {kind}")
        if len(parts) > MAX_CATENATE_PARTS:
            raise ImapSyntaxError("too many CATENATE parts")
        if cur.skip(b")"):
            return tuple(parts)
        cur.sp()


def _parse_append(p: Parse, uid: bool) -> c.Command:
    cur = p.cur
    cur.sp()
    mailbox = p.mailbox()
    messages: list[c.AppendMessage] = []
    while not cur.at_end() or not messages:
        cur.sp()
        flags: tuple[str, ...] = ()
        internaldate = None
        if cur.peek() == 0x28:
            flags = flag_list(cur)
            cur.sp()
        if cur.peek() == 0x22:
            internaldate = cur.date_time()
            cur.sp()
        catenate: tuple[tuple[str, bytes], ...] = ()
        if cur.peek_word(b"UTF8"):  # RFC 6855: UTF8 (literal8)
            cur.atom()
            cur.sp()
            cur.expect(b"(")
            data, binary = cur.literal(allow_literal8=True)
            cur.expect(b")")
        elif cur.peek_word(b"CATENATE"):  # RFC 4469
            cur.atom()
            cur.sp()
            catenate = _catenate_parts(cur)
            data, binary = b"", any(kind == "TEXT8" for kind, _ in catenate)
        else:
            data, binary = cur.literal(allow_literal8=True)
        messages.append(c.AppendMessage(data, flags, internaldate, binary, catenate))
        if len(messages) > MAX_APPEND_MESSAGES:
            raise ImapSyntaxError("too many messages in one APPEND")
    return c.Append(p.tag, mailbox, tuple(messages))


def _parse_expunge(p: Parse, uid: bool) -> c.Command:
    if not uid:
        return c.Expunge(p.tag)
    p.cur.sp()
    return c.Expunge(p.tag, read_sequence_set(p.cur))


def _search_prefix(p: Parse, esearch_ok: bool = True) -> tuple[tuple[str, ...] | None, tuple[int, int] | None]:
    """``RETURN (...)`` after SEARCH / SORT, if present (the SP after it is consumed):
    the options, None without RETURN, and PARTIAL's range."""
    cur = p.cur
    if esearch_ok and cur.peek_word(b"RETURN"):
        cur.atom()
        cur.sp()
        options, partial = p.search_return()
        cur.sp()
        return options, partial
    return None, None


def _parse_search(p: Parse, uid: bool) -> c.Command:
    cur = p.cur
    cur.sp()
    returns, partial = _search_prefix(p)
    charset = None
    if cur.peek_word(b"CHARSET"):
        cur.atom()
        cur.sp()
        charset = cur.astring("a charset").decode("latin-1")
        p.set_charset(charset)
        cur.sp()
    return c.Search(p.tag, uid, charset, p.search_program(), returns, partial)


def _parse_fetch(p: Parse, uid: bool) -> c.Command:
    cur = p.cur
    cur.sp()
    sequence_set = read_sequence_set(cur)
    cur.sp()
    attributes = fetch_attributes(cur)
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


def _parse_store(p: Parse, uid: bool) -> c.Command:
    cur = p.cur
    cur.sp()
    sequence_set = read_sequence_set(cur)
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
    mode: Literal["replace", "add", "remove"] = {
        b"": "replace",
        b"+": "add",
        b"-": "remove",
    }[m.group(1)]  # type: ignore[assignment]
    if cur.peek() == 0x28:
        flags = flag_list(cur)
    else:
        items = [flag(cur)]
        while cur.skip(b" "):
            items.append(flag(cur))
        flags = tuple(items)
    return c.Store(p.tag, uid, sequence_set, mode, bool(m.group(2)), flags, unchanged_since)


def _copy_like(kind: type[c.Copy | c.Move]) -> Callable[[Parse, bool], c.Command]:
    def parse(p: Parse, uid: bool) -> c.Command:
        p.cur.sp()
        sequence_set = read_sequence_set(p.cur)
        p.cur.sp()
        return kind(p.tag, uid, sequence_set, p.mailbox())

    return parse


_SORT_KEYS = (
    "ARRIVAL",
    "CC",
    "DATE",
    "FROM",
    "SIZE",
    "SUBJECT",
    "TO",
    "DISPLAYFROM",
    "DISPLAYTO",
)


def _parse_sort(p: Parse, uid: bool) -> c.Command:
    cur = p.cur
    cur.sp()
    returns, partial = _search_prefix(p)
    words = atom_list(cur, allow_empty=False)
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
    return c.Sort(p.tag, uid, tuple(criteria), charset, p.search_program(), returns, partial)


def _parse_thread(p: Parse, uid: bool) -> c.Command:
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


def _parse_getquota(p: Parse, uid: bool) -> c.Command:
    p.cur.sp()
    return c.GetQuota(p.tag, p.cur.astring("a quota root").decode("utf-8", "replace"))


def _parse_setquota(p: Parse, uid: bool) -> c.Command:
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


def _parse_cancelupdate(p: Parse, uid: bool) -> c.Command:
    tags: list[str] = []
    while not p.cur.at_end():
        p.cur.sp()
        tags.append(p.cur.string().decode("utf-8", "replace"))
    if not tags:
        raise ImapSyntaxError("CANCELUPDATE names at least one tag")
    return c.CancelUpdate(p.tag, tuple(tags))


_COMMANDS: dict[str, Callable[[Parse, bool], c.Command]] = {
    "CANCELUPDATE": _parse_cancelupdate,
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
        command = handler(Parse(cur, tag, utf8), uid)
        cur.end()
        return command
    except ImapSyntaxError as exc:
        exc.tag = tag  # type: ignore[attr-defined]
        raise
    except RecursionError as exc:  # pragma: no cover - nesting is bounded
        error = ImapSyntaxError("command nests too deeply")
        error.tag = tag  # type: ignore[attr-defined]
        raise error from exc
