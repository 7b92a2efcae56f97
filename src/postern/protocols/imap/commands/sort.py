"""SORT and UID SORT (RFC 5256 §3; DISPLAYFROM/DISPLAYTO RFC 5957), with ESORT's
RETURN options and CONTEXT=SORT's PARTIAL (RFC 5267)."""

from __future__ import annotations

from .. import commands as c
from .. import esearch
from ..search import sort_messages
from ..session import Done, Session
from .search import HEADER, META, SUMMARY, run_search, uses_modseq

#: What each sort key reads of a message (see run_search).
_NEEDS = {"ARRIVAL": META, "SIZE": META, "DATE": HEADER, "SUBJECT": HEADER}


async def handle(session: Session, command: c.Sort) -> Done:
    selected = session.require_selected()
    content = max((_NEEDS.get(criterion.key, SUMMARY) for criterion in command.criteria), default=META)
    found = await run_search(session, selected, command.search, content=content)
    ordered = sort_messages(found, command.criteria)
    numbers = [m.uid if command.uid else m.seq for m in ordered]
    if command.return_options is None:
        session.untagged(b" ".join([b"SORT", *(str(n).encode() for n in numbers)]))
        return Done()
    # ESORT (RFC 5267 §3) and CONTEXT=SORT's PARTIAL: an ESEARCH in sorted order.
    wanted = set(command.return_options) or {"ALL"}
    wanted -= {"CONTEXT", "UPDATE"}  # a SORT kept up to date is not offered
    if "SAVE" in wanted:
        selected.saved = frozenset(m.uid for m in ordered)
        wanted.discard("SAVE")
    modseq = 0
    if uses_modseq(command.search):
        modseq = esearch.highest_modseq(numbers, [m.modseq for m in ordered], wanted)
    session.untagged(esearch.esearch_line(command.tag, command.uid, numbers, wanted, partial=command.partial, modseq=modseq))
    return Done()
