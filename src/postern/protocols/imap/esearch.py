"""The ESEARCH response (RFC 4731) of SEARCH and SORT (ESORT, RFC 5267 §3): MIN, MAX,
ALL, COUNT, PARTIAL (RFC 5267 §4.4 / RFC 9394) and MODSEQ; and the ADDTO/REMOVEFROM
updates of a search kept up to date (CONTEXT=SEARCH, RFC 5267 §4)."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from . import encode as enc


def ordered_set(ids: Sequence[int]) -> bytes:
    """Numbers in the order given, a run only where each is one more than the last
    (a SORT result keeps its order: ``5,3:4,2,1``)."""
    pieces: list[str] = []
    i = 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        pieces.append(str(ids[i]) if i == j else f"{ids[i]}:{ids[j]}")
        i = j + 1
    return ",".join(pieces).encode()


def highest_modseq(ids: Sequence[int], modseqs: Sequence[int], wanted: Collection[str]) -> int:
    """The MODSEQ an ESEARCH carries: of the messages it returns — only the MIN and/or
    MAX one when those are all it returns, else all that matched (RFC 4731 §3.2)."""
    if not ids:
        return 0
    options = set(wanted)
    if options <= {"MIN", "MAX", "SAVE", "CONTEXT"} and options & {"MIN", "MAX"}:
        picked = []
        if "MIN" in wanted:
            picked.append(modseqs[0])
        if "MAX" in wanted:
            picked.append(modseqs[-1])
        return max(picked)
    return max(modseqs)


def esearch_line(
    tag: str,
    uid: bool,
    ids: Sequence[int],
    wanted: Collection[str],
    *,
    partial: tuple[int, int] | None = None,
    modseq: int = 0,
) -> bytes:
    """``ESEARCH (TAG "t") [UID] ...`` for ``ids`` in result order (ascending for
    SEARCH, sorted for SORT), without the ``* `` and CRLF."""
    parts = [b"ESEARCH (TAG " + enc.string(tag) + b")"]
    if uid:
        parts.append(b"UID")
    if ids:
        if "MIN" in wanted:
            parts.append(b"MIN " + str(ids[0]).encode())
        if "MAX" in wanted:
            parts.append(b"MAX " + str(ids[-1]).encode())
        if "ALL" in wanted:
            parts.append(b"ALL " + ordered_set(ids))
    if partial is not None:
        low, high = partial
        chosen = ids[low - 1 : high]
        found = ordered_set(chosen) if chosen else b"NIL"
        parts.append(b"PARTIAL (" + f"{low}:{high}".encode() + b" " + found + b")")
    if "COUNT" in wanted:
        parts.append(b"COUNT " + str(len(ids)).encode())
    if modseq:
        parts.append(b"MODSEQ " + str(modseq).encode())
    return b" ".join(parts)


def update_line(tag: str, uid: bool, kind: str, ids: Sequence[int]) -> bytes:
    """``ESEARCH (TAG "t") [UID] ADDTO (0 set)`` (or REMOVEFROM): a search kept up to
    date gained or lost messages. An unsorted result gives position 0."""
    head = b"ESEARCH (TAG " + enc.string(tag) + b")" + (b" UID" if uid else b"")
    return head + b" " + kind.encode() + b" (0 " + enc.sequence_set(sorted(ids)) + b")"
