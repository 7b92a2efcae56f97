"""SEARCH and UID SEARCH (RFC 3501 §6.4.4), with ESEARCH (RFC 4731), SEARCHRES
(RFC 5182) and CONDSTORE's MODSEQ key (RFC 7162 §3.1.5).

The messages are walked in chunks; a message's bytes are read only when the
program looks at headers or bodies. SORT and THREAD search the same way.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from postern.mailstore.imap_view import ImapMessage

from .. import commands as c
from .. import encode as enc
from ..search import RawMessageView, SearchContext, matches
from ..session import Done, SelectedMailbox, Session

CHUNK = 500
#: Messages read together while their sizes add up to at most this.
READ_AHEAD_BYTES = 256 * 1024


class MetaMessage:
    """A message as SEARCH sees it when the program needs no content."""

    __slots__ = ("seq", "uid", "flags", "recent", "internaldate", "size", "modseq")

    def __init__(self, seq: int, message: ImapMessage, recent: bool) -> None:
        self.seq = seq
        self.uid = message.uid
        self.flags: Collection[str] = message.flags
        self.recent = recent
        self.internaldate: datetime = message.internaldate
        self.size = message.size
        self.modseq = message.modseq

    def header_values(self, name: str) -> Sequence[str]:  # pragma: no cover - never asked
        return ()

    def header_text(self) -> str:  # pragma: no cover
        return ""

    def body_text(self) -> str:  # pragma: no cover
        return ""

    def sent_date(self) -> datetime | None:  # pragma: no cover
        return None

    def first_address(self, name: str) -> tuple[str, str] | None:  # pragma: no cover
        return None


def needs_content(key: c.SearchKey) -> bool:
    if isinstance(key, (c.SearchHeader, c.SearchBody, c.SearchText)):
        return True
    if isinstance(key, c.SearchDate):
        return key.field == "sent"
    if isinstance(key, c.SearchAnd):
        return any(needs_content(k) for k in key.keys)
    if isinstance(key, c.SearchOr):
        return needs_content(key.left) or needs_content(key.right)
    if isinstance(key, c.SearchNot):
        return needs_content(key.key)
    return False


def uses_modseq(key: c.SearchKey) -> bool:
    if isinstance(key, c.SearchModSeq):
        return True
    if isinstance(key, c.SearchAnd):
        return any(uses_modseq(k) for k in key.keys)
    if isinstance(key, c.SearchOr):
        return uses_modseq(key.left) or uses_modseq(key.right)
    if isinstance(key, c.SearchNot):
        return uses_modseq(key.key)
    return False


async def run_search(session: Session, selected: SelectedMailbox, key: c.SearchKey, *, content: bool = False) -> list[Any]:
    """The messages that match, in mailbox order (views with content when asked)."""
    view = session.services.view
    with_content = content or needs_content(key)
    context = SearchContext(selected.exists, selected.largest_uid, selected.saved)
    found: list[Any] = []
    count = selected.exists
    for start in range(0, count, CHUNK):
        indexes = list(range(start, min(start + CHUNK, count)))
        rows = {m.uid: m for m in await view.messages(selected.folder_id, selected.uid_ranges(indexes))}
        raws: dict[int, bytes] = {}
        for position, index in enumerate(indexes):
            uid = selected.uids[index]
            message = rows.get(uid)
            if message is None:
                continue
            recent = uid in selected.recent
            candidate: Any
            if with_content:
                raw = raws.pop(uid, None)
                if raw is None:
                    # Read this message and the next ones together (one read hop),
                    # while their sizes add up to at most READ_AHEAD_BYTES.
                    batch: list[ImapMessage] = []
                    total = 0
                    for i in indexes[position:]:
                        ahead = rows.get(selected.uids[i])
                        if ahead is None:
                            continue
                        if batch and total + ahead.size > READ_AHEAD_BYTES:
                            break
                        batch.append(ahead)
                        total += ahead.size
                    raws = dict(zip((m.uid for m in batch), await view.raw_many(batch), strict=True))
                    raw = raws.pop(uid)
                candidate = RawMessageView(
                    index + 1, uid, raw, message.internaldate, frozenset(message.flags), recent, message.modseq
                )
            else:
                candidate = MetaMessage(index + 1, message, recent)
            if matches(key, candidate, context):
                found.append(candidate)
    return found


async def handle(session: Session, command: c.Search) -> Done:
    selected = session.require_selected()
    modseq_key = uses_modseq(command.criteria)
    if modseq_key:
        session.condstore = True
    found = await run_search(session, selected, command.criteria)
    numbers = [m.uid if command.uid else m.seq for m in found]
    highest = max((m.modseq for m in found), default=0)
    options = command.return_options
    if options is None:
        line = b"SEARCH"
        if numbers:
            line += b" " + b" ".join(str(n).encode() for n in numbers)
            if modseq_key:
                line += b" (MODSEQ " + str(highest).encode() + b")"
        session.untagged(line)
        return Done()
    wanted = set(options) or {"ALL"}
    if "SAVE" in wanted:
        if wanted & {"MIN", "MAX"} and not wanted & {"ALL", "COUNT"}:
            keep = set()
            if found and "MIN" in wanted:
                keep.add(found[0].uid)
            if found and "MAX" in wanted:
                keep.add(found[-1].uid)
            selected.saved = frozenset(keep)
        else:
            selected.saved = frozenset(m.uid for m in found)
        wanted.discard("SAVE")
        if not wanted:
            return Done()
    parts = [b"(TAG " + enc.string(command.tag) + b")"]
    if command.uid:
        parts.append(b"UID")
    if numbers:
        if "MIN" in wanted:
            parts.append(b"MIN " + str(min(numbers)).encode())
        if "MAX" in wanted:
            parts.append(b"MAX " + str(max(numbers)).encode())
        if "ALL" in wanted:
            parts.append(b"ALL " + enc.sequence_set(numbers))
    if "COUNT" in wanted:
        parts.append(b"COUNT " + str(len(numbers)).encode())
    if modseq_key and numbers:
        parts.append(b"MODSEQ " + str(highest).encode())
    session.untagged(b"ESEARCH " + b" ".join(parts))
    return Done()
