"""SEARCH and UID SEARCH (RFC 3501 §6.4.4), with ESEARCH (RFC 4731), SEARCHRES
(RFC 5182), CONDSTORE's MODSEQ key (RFC 7162 §3.1.5), and CONTEXT=SEARCH's
PARTIAL results and searches kept up to date (RFC 5267 §4).

The messages are walked in chunks. A program that looks at headers reads them
from the header cache (message bytes only for its misses); a message's bytes are
read only when the program looks at bodies. SORT and THREAD search the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from typing import Any

from postern.mailstore.imap_view import ImapMessage, ImapView

from .. import commands as c
from .. import encode as enc
from .. import esearch
from ..search import (
    HeaderView,
    MetaMessage,
    RawMessageView,
    SearchContext,
    compile_search,
)
from ..session import Done, SelectedMailbox, Session, UpdateSearch

CHUNK = 500
#: Searches one session may keep up to date (RFC 5267 UPDATE) at once.
MAX_UPDATES = 16
#: Messages read together while their sizes add up to at most this.
READ_AHEAD_BYTES = 256 * 1024

#: What a program (or SORT/THREAD) needs of each message, least to most: the
#: metadata only; the parsed header (from the header cache); the header with the
#: summary facts (SORT by address, THREAD); the message's bytes (BODY, TEXT).
META, HEADER, SUMMARY, RAW = 0, 1, 2, 3


def content_needed(key: c.SearchKey) -> int:
    """What of each message ``key`` looks at: META, HEADER or RAW."""
    if isinstance(key, (c.SearchBody, c.SearchText)):
        return RAW
    if isinstance(key, c.SearchHeader):
        return HEADER
    if isinstance(key, c.SearchDate):
        return HEADER if key.field == "sent" else META
    if isinstance(key, c.SearchAnd):
        return max((content_needed(k) for k in key.keys), default=META)
    if isinstance(key, c.SearchOr):
        return max(content_needed(key.left), content_needed(key.right))
    if isinstance(key, c.SearchNot):
        return content_needed(key.key)
    return META


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


async def run_search(session: Session, selected: SelectedMailbox, key: c.SearchKey, *, content: int = META) -> list[Any]:
    """The messages that match, in mailbox order, as views giving at least what
    ``content`` (META, HEADER, SUMMARY or RAW) says besides what the program needs."""
    view = session.services.view
    need = max(content, content_needed(key))
    context = SearchContext(selected.exists, selected.largest_uid, selected.saved)
    matches = compile_search(key, context)
    found: list[Any] = []
    count = selected.exists
    uids = selected.uids
    recent_uids = selected.recent
    for start in range(0, count, CHUNK):
        indexes = range(start, min(start + CHUNK, count))
        rows = {m.uid: m for m in await view.messages(selected.folder_id, selected.uid_ranges(indexes))}
        present = [(index, rows[uids[index]]) for index in indexes if uids[index] in rows]
        candidates: list[Any]
        if need == META:
            candidates = [MetaMessage(index + 1, message, message.uid in recent_uids) for index, message in present]
        elif need in (HEADER, SUMMARY):
            parsed = await session.services.header_cache.parsed_many(view, [message for _, message in present], summary=need == SUMMARY)
            candidates = [
                HeaderView(index + 1, message, message.uid in recent_uids, header)
                for (index, message), header in zip(present, parsed, strict=True)
            ]
        else:
            async for batch in _raw_views(view, present, recent_uids):
                found.extend(m for m in batch if matches(m))
            continue
        found.extend(m for m in candidates if matches(m))
    return found


async def _raw_views(
    view: ImapView, present: list[tuple[int, ImapMessage]], recent_uids: Collection[int]
) -> AsyncIterator[list[RawMessageView]]:
    """Views over the messages' bytes, a few at a time: read together (one read hop)
    while their sizes add up to at most READ_AHEAD_BYTES, at least one."""
    position = 0
    while position < len(present):
        batch: list[tuple[int, ImapMessage]] = []
        total = 0
        for item in present[position:]:
            if batch and total + item[1].size > READ_AHEAD_BYTES:
                break
            batch.append(item)
            total += item[1].size
        position += len(batch)
        raws = await view.raw_many([message for _, message in batch])
        yield [
            RawMessageView(
                index + 1, message.uid, raw, message.internaldate, frozenset(message.flags), message.uid in recent_uids, message.modseq
            )
            for (index, message), raw in zip(batch, raws, strict=True)
        ]


async def handle(session: Session, command: c.Search) -> Done:
    selected = session.require_selected()
    modseq_key = uses_modseq(command.criteria)
    if modseq_key:
        await session.enable_condstore()
    found = await run_search(session, selected, command.criteria)
    numbers = [m.uid if command.uid else m.seq for m in found]
    options = command.return_options
    if options is None:
        line = b"SEARCH"
        if numbers:
            line += b" " + b" ".join(str(n).encode() for n in numbers)
            if modseq_key:
                line += b" (MODSEQ " + str(max(m.modseq for m in found)).encode() + b")"
        session.untagged(line)
        return Done()
    wanted = set(options) or {"ALL"}
    wanted.discard("CONTEXT")  # a hint that updates or partial results may follow
    if "SAVE" in wanted:
        if wanted & {"MIN", "MAX"} and not wanted & {"ALL", "COUNT", "PARTIAL"}:
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
    if "UPDATE" in wanted:
        if command.tag in selected.updates or len(selected.updates) < MAX_UPDATES:
            selected.updates[command.tag] = UpdateSearch(command.tag, command.uid, command.criteria, {m.uid for m in found})
            selected.updates_mark = (selected.modseq, selected.exists, selected.largest_uid)
        else:  # each is run again after every change: a few per session
            session.untagged(b"NO [NOUPDATE " + enc.string(command.tag) + b"] Too many searches kept up to date")
    modseq = esearch.highest_modseq(numbers, [m.modseq for m in found], wanted) if modseq_key else 0
    session.untagged(esearch.esearch_line(command.tag, command.uid, numbers, wanted, partial=command.partial, modseq=modseq))
    return Done()


async def refresh_updates(session: Session) -> None:
    """Run each search kept up to date again and say what joined or left its result
    (ADDTO, REMOVEFROM: RFC 5267 §4.3), after the command's other updates."""
    selected = session.selected
    if selected is None or not selected.updates:
        return
    mark = (selected.modseq, selected.exists, selected.largest_uid)
    if mark == selected.updates_mark:
        return  # nothing changed since they last ran (own changes move MODSEQ too)
    selected.updates_mark = mark
    for update in list(selected.updates.values()):
        found = {m.uid for m in await run_search(session, selected, update.criteria)}
        removed = update.uids - found
        added = found - update.uids
        update.uids = found
        for kind, uids in (("REMOVEFROM", removed), ("ADDTO", added)):
            if not uids:
                continue
            ids = sorted(uids) if update.uid else sorted(s for s in map(selected.seq_of, uids) if s is not None)
            if ids:
                session.untagged(esearch.update_line(update.tag, update.uid, kind, ids))
