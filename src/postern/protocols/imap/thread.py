"""THREAD (RFC 5256): base subjects, ORDEREDSUBJECT and REFERENCES (pure)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

__all__ = [
    "ThreadMessage",
    "ThreadNode",
    "base_subject",
    "thread_orderedsubject",
    "thread_references",
]


@dataclass(frozen=True, slots=True)
class ThreadMessage:
    """What threading needs to know about one message.

    ``number`` is what the answer shows (sequence number or UID); ``order``
    the position in the mailbox, which breaks ties; ``references`` are the
    References ids, or the In-Reply-To id when there are none; ``date`` the
    sent date, or the internal date when the Date field is missing.
    """

    number: int
    order: int
    message_id: str | None
    references: tuple[str, ...]
    subject: str
    date: datetime


@dataclass(slots=True)
class ThreadNode:
    """A thread tree; ``message`` is None for a dummy that groups siblings."""

    message: int | None
    children: list[ThreadNode] = field(default_factory=list)


# ---------------------------------------------------------------------------
# base subject (RFC 5256 §2.1)
# ---------------------------------------------------------------------------

_WS_RE = re.compile(r"\s+")
_BLOB = r"\[[^\[\]]*\][ ]*"
_REFWD_RE = re.compile(r"(?:" + _BLOB + r")*(?:re|fwd?)[ ]*(?:" + _BLOB + r")?:", re.IGNORECASE)
_BLOB_RE = re.compile(_BLOB)
_FWD_WRAPPER_RE = re.compile(r"\[fwd:(.*)\]\Z", re.IGNORECASE | re.DOTALL)


def base_subject(subject: str) -> tuple[str, bool]:
    """(base subject, whether the subject shows a reply or forward).

    The base subject keeps its case; compare with ``str.casefold``.
    """
    text = _WS_RE.sub(" ", subject)
    is_reply = False
    while True:
        # (2) trailing "(fwd)" and white space
        while True:
            stripped = text.rstrip(" ")
            if stripped[-5:].lower() == "(fwd)":
                text = stripped[:-5]
                is_reply = True
                continue
            text = stripped
            break
        # (3)-(5) leading white space, "Re:"/"Fw:"/"Fwd:" with blobs, lone blobs
        while True:
            before = text
            while True:
                if text.startswith(" "):
                    text = text.lstrip(" ")
                    continue
                m = _REFWD_RE.match(text)
                if m is not None:
                    text = text[m.end() :]
                    is_reply = True
                    continue
                break
            m = _BLOB_RE.match(text)
            if m is not None and text[m.end() :].strip(" "):
                text = text[m.end() :]
            if text == before:
                break
        # (6) "[fwd: ...]" wrapper: unwrap and start again
        m = _FWD_WRAPPER_RE.match(text)
        if m is None:
            return text, is_reply
        text = m.group(1)
        is_reply = True


# ---------------------------------------------------------------------------
# ORDEREDSUBJECT
# ---------------------------------------------------------------------------


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def thread_orderedsubject(messages: Sequence[ThreadMessage]) -> list[ThreadNode]:
    """Group by base subject; the first message of a group is the parent of the rest."""
    keyed = sorted(messages, key=lambda m: (base_subject(m.subject)[0].casefold(), _utc(m.date), m.order))
    threads: list[tuple[tuple[datetime, int], ThreadNode]] = []
    current_subject: str | None = None
    for message in keyed:
        subject = base_subject(message.subject)[0].casefold()
        if threads and subject == current_subject:
            threads[-1][1].children.append(ThreadNode(message.number))
        else:
            threads.append(((_utc(message.date), message.order), ThreadNode(message.number)))
            current_subject = subject
    threads.sort(key=lambda t: t[0])
    return [node for _, node in threads]


# ---------------------------------------------------------------------------
# REFERENCES
# ---------------------------------------------------------------------------


class _Container:
    __slots__ = ("children", "message", "parent")

    def __init__(self, message: ThreadMessage | None = None) -> None:
        self.message = message
        self.parent: _Container | None = None
        self.children: list[_Container] = []

    def is_within(self, other: _Container) -> bool:
        """Whether self is ``other`` or one of its descendants."""
        node: _Container | None = self
        steps = 0
        while node is not None:
            if node is other:
                return True
            node = node.parent
            steps += 1
            if steps > 100_000:  # pragma: no cover - links never loop
                return True
        return False

    def set_parent(self, parent: _Container | None) -> None:
        if self.parent is not None:
            self.parent.children.remove(self)
        self.parent = parent
        if parent is not None:
            parent.children.append(self)


def _sort_key(node: _Container) -> tuple[datetime, int]:
    if node.message is not None:
        return _utc(node.message.date), node.message.order
    if node.children:
        return _sort_key(node.children[0])
    return datetime.max.replace(tzinfo=UTC), 0  # pragma: no cover - pruned


def _sort_tree(nodes: list[_Container]) -> None:
    stack = [nodes]
    ordered: list[list[_Container]] = []
    while stack:  # children first, so that a dummy's first child is known
        level = stack.pop()
        ordered.append(level)
        stack.extend(n.children for n in level if n.children)
    for level in reversed(ordered):
        level.sort(key=_sort_key)


def _prune(roots: list[_Container]) -> list[_Container]:
    """Step 3: drop empty dummies, splice dummies' children into their place
    (at the root only when there is one child).  Iterative: reference chains
    can be thousands deep."""
    preorder: list[_Container] = []
    stack = list(roots)
    while stack:
        node = stack.pop()
        preorder.append(node)
        stack.extend(node.children)
    for node in reversed(preorder):  # children before their parents
        kept: list[_Container] = []
        for child in node.children:
            if child.message is None:
                kept.extend(child.children)  # already pruned: no dummies below
            else:
                kept.append(child)
        node.children = kept
        for child in kept:
            child.parent = node
    out: list[_Container] = []
    for node in roots:
        if node.message is None:
            if not node.children:
                continue
            if len(node.children) == 1:
                out.append(node.children[0])
                continue
        out.append(node)
    return out


def _subject_of(node: _Container) -> tuple[str, bool]:
    message = node.message if node.message is not None else (node.children[0].message if node.children else None)
    if message is None:
        return "", False
    base, is_reply = base_subject(message.subject)
    return base.casefold(), is_reply


def thread_references(messages: Sequence[ThreadMessage]) -> list[ThreadNode]:
    """The REFERENCES algorithm of RFC 5256 §3."""
    table: dict[str, _Container] = {}
    unique = 0
    for message in sorted(messages, key=lambda m: m.order):
        # (1) a container per message; a missing or duplicate id gets its own.
        mid = message.message_id
        container = table.get(mid) if mid else None
        if container is not None and container.message is None:
            container.message = message
        else:
            container = _Container(message)
            unique += 1
            table[mid if mid and mid not in table else f"\x00{unique}"] = container
        # (1A) link the references in order, never making a loop
        previous: _Container | None = None
        for ref in message.references:
            ref_container = table.get(ref)
            if ref_container is None:
                ref_container = table[ref] = _Container()
            if previous is not None and ref_container.parent is None and not previous.is_within(ref_container):
                ref_container.set_parent(previous)
            previous = ref_container
        # (1B) the last reference is the parent, unless that makes a loop
        if previous is not None and previous.is_within(container):
            previous = None
        if previous is not None or container.parent is not None:
            container.set_parent(previous)
    # (2) the root set, (3) pruned
    roots = [c for c in table.values() if c.parent is None]
    roots = _prune(roots)
    for root in roots:
        root.parent = None
    # (4) sorted by date
    _sort_tree(roots)
    # (5) gather roots with the same base subject
    subjects: dict[str, _Container] = {}
    for root in roots:
        subject, is_reply = _subject_of(root)
        if not subject:
            continue
        old = subjects.get(subject)
        if old is None or (old.message is not None and (root.message is None or (_subject_of(old)[1] and not is_reply))):
            subjects[subject] = root
    merged: list[_Container] = []
    for root in roots:
        subject, is_reply = _subject_of(root)
        target = subjects.get(subject) if subject else None
        if target is None or target is root:
            merged.append(root)
            continue
        if target.message is None and root.message is None:
            for child in list(root.children):
                child.set_parent(target)
        elif target.message is None:
            root.set_parent(target)
        elif is_reply and not _subject_of(target)[1]:
            root.set_parent(target)
        else:
            # a new dummy holds both; it takes the table entry's place
            dummy = _Container()
            index = next((i for i, r in enumerate(merged) if r is target), None)
            target.set_parent(dummy)
            root.set_parent(dummy)
            subjects[subject] = dummy
            if index is not None:
                merged[index] = dummy
            else:  # pragma: no cover - the target always comes first
                merged.append(dummy)
    roots = [r for r in merged if r.parent is None]
    # (6) sort every level
    _sort_tree(roots)
    return [_to_node(r) for r in roots]


def _to_node(container: _Container) -> ThreadNode:
    root = ThreadNode(container.message.number if container.message else None)
    stack = [(container, root)]
    while stack:
        source, target = stack.pop()
        for child in source.children:
            node = ThreadNode(child.message.number if child.message else None)
            target.children.append(node)
            stack.append((child, node))
    return root
