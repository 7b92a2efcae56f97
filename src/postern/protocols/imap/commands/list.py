"""LIST (RFC 3501 §6.3.8) with LIST-EXTENDED (RFC 5258), CHILDREN (RFC 3348),
SPECIAL-USE (RFC 6154) and LIST-STATUS (RFC 5819); LSUB (RFC 3501 §6.3.9)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .. import commands as c
from .. import encode as enc
from ..session import Done, Session
from .status import status_values

SEPARATOR = "/"


def pattern_regex(reference: str, pattern: str) -> re.Pattern[str]:
    """The names ``reference`` + ``pattern`` matches (``*`` anything, ``%`` no "/")."""
    full = reference + pattern
    if full[:5].upper() == "INBOX" and (len(full) == 5 or full[5] in "/*%"):
        full = "INBOX" + full[5:]
    out = []
    for char in full:
        if char == "*":
            out.append(".*")
        elif char == "%":
            out.append("[^/]*")
        else:
            out.append(re.escape(char))
    return re.compile("".join(out), re.DOTALL)


def _ancestors(path: str) -> Iterable[str]:
    parts = path.split(SEPARATOR)
    for i in range(1, len(parts)):
        yield SEPARATOR.join(parts[:i])


def list_line(kind: str, attributes: Iterable[str], name: str, extra: bytes = b"") -> bytes:
    line = kind.encode() + b" " + enc.paren_list(a.encode() for a in attributes) + b' "/" ' + enc.mailbox(name)
    return line + extra


async def _subscriptions(session: Session, user_id: str, folders: Iterable[Any]) -> set[str]:
    """Every subscribed name: the folders' flags and the names that are no folder."""
    names = {f.path for f in folders if f.subscribed}
    names.update(await session.services.view.orphan_subscriptions(user_id))
    return names


async def handle(session: Session, command: c.List) -> Done:
    user_id = session.require_user()
    patterns = [p for p in command.patterns]
    if not command.extended and patterns == [""]:
        # The hierarchy delimiter and root of the reference (RFC 3501 §6.3.8).
        root = command.reference.split(SEPARATOR, 1)[0] + SEPARATOR if SEPARATOR in command.reference else ""
        session.untagged(list_line("LIST", ["\\Noselect"], root))
        return Done()
    folders = await session.services.mailstore.list_folders(user_id)
    by_path: dict[str, Any] = {f.path: f for f in folders}
    with_children: set[str] = set()
    for path in by_path:
        with_children.update(_ancestors(path))
    regexes = [pattern_regex(command.reference, p) for p in patterns if p != ""]
    selection = set(command.selection_options)
    returns = set(command.return_options)
    subscribed_only = "SUBSCRIBED" in selection
    special_only = "SPECIAL-USE" in selection
    recursive = "RECURSIVEMATCH" in selection
    show_subscribed = subscribed_only or "SUBSCRIBED" in returns
    subscribed = await _subscriptions(session, user_id, folders) if show_subscribed else set()

    def matched(path: str) -> bool:
        return any(r.fullmatch(path) for r in regexes)

    # RECURSIVEMATCH (RFC 5258 §3.5): a name that matches but is not selected itself
    # is returned with CHILDINFO when a descendant the patterns do not match is.
    childinfo: set[str] = set()
    if subscribed_only and recursive:
        for path in subscribed:
            if not matched(path):
                childinfo.update(a for a in _ancestors(path) if matched(a))
    candidates = list(by_path) + sorted(with_children - by_path.keys())
    if subscribed_only:
        candidates += sorted(subscribed - by_path.keys() - with_children)
    names: dict[str, None] = {}
    for path in candidates:
        if matched(path):
            names.setdefault(path, None)
    ordered = sorted(names, key=lambda p: (p != "INBOX", p))
    for path in ordered:
        folder = by_path.get(path)
        attributes: list[str] = []
        extra = b""
        if subscribed_only:
            if path in subscribed:
                attributes.append("\\Subscribed")
                if folder is None:
                    attributes.append("\\NonExistent")
            elif path in childinfo:
                extra = b' (CHILDINFO ("SUBSCRIBED"))'
            else:
                continue
            if special_only and (folder is None or not folder.special_use):
                continue
        elif folder is None:
            if special_only:
                continue
            attributes.append("\\NonExistent" if command.extended else "\\Noselect")
        else:
            if special_only and not folder.special_use:
                continue
            if show_subscribed and path in subscribed:
                attributes.append("\\Subscribed")
        if folder is not None or path in with_children:
            attributes.append("\\HasChildren" if path in with_children else "\\HasNoChildren")
        if folder is not None and folder.special_use:
            attributes.append(folder.special_use)
        session.untagged(list_line("LIST", attributes, path, extra))
        if folder is not None and command.status_items:
            values = await status_values(session, folder, command.status_items)
            session.untagged(b"STATUS " + enc.mailbox(path) + b" " + values)
    return Done()


async def handle_lsub(session: Session, command: c.Lsub) -> Done:
    user_id = session.require_user()
    if command.pattern == "":
        session.untagged(list_line("LSUB", ["\\Noselect"], ""))
        return Done()
    regex = pattern_regex(command.reference, command.pattern)
    folders = await session.services.mailstore.list_folders(user_id)
    existing = {f.path for f in folders}
    subscribed = await _subscriptions(session, user_id, folders)
    shown: dict[str, list[str]] = {}
    for path in sorted(subscribed, key=lambda p: (p != "INBOX", p)):
        if regex.fullmatch(path):
            shown.setdefault(path, [] if path in existing else ["\\Noselect"])
        elif "%" in command.pattern:
            # A subscribed child under a parent the pattern names: the parent is
            # listed \Noselect (RFC 3501 §6.3.9).
            for ancestor in _ancestors(path):
                if regex.fullmatch(ancestor) and ancestor not in subscribed:
                    shown.setdefault(ancestor, ["\\Noselect"])
    for path, attributes in shown.items():
        session.untagged(list_line("LSUB", attributes, path))
    return Done()
