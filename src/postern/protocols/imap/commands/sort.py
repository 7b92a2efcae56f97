"""SORT and UID SORT (RFC 5256 §3; DISPLAYFROM/DISPLAYTO RFC 5957)."""

from __future__ import annotations

from .. import commands as c
from ..search import sort_messages
from ..session import Done, Session
from .search import HEADER, META, SUMMARY, run_search

#: What each sort key reads of a message (see run_search).
_NEEDS = {"ARRIVAL": META, "SIZE": META, "DATE": HEADER, "SUBJECT": HEADER}


async def handle(session: Session, command: c.Sort) -> Done:
    selected = session.require_selected()
    content = max((_NEEDS.get(criterion.key, SUMMARY) for criterion in command.criteria), default=META)
    found = await run_search(session, selected, command.search, content=content)
    ordered = sort_messages(found, command.criteria)
    numbers = [m.uid if command.uid else m.seq for m in ordered]
    session.untagged(b" ".join([b"SORT", *(str(n).encode() for n in numbers)]))
    return Done()
