"""THREAD and UID THREAD (RFC 5256 §4): REFERENCES and ORDEREDSUBJECT."""

from __future__ import annotations

from .. import commands as c
from .. import encode as enc
from ..session import Done, Session, no
from ..thread import thread_orderedsubject, thread_references
from .search import SUMMARY, run_search


async def handle(session: Session, command: c.Thread) -> Done:
    selected = session.require_selected()
    if command.algorithm not in ("REFERENCES", "ORDEREDSUBJECT"):
        raise no(f"Unsupported THREAD algorithm {command.algorithm}", "CANNOT")
    found = await run_search(session, selected, command.search, content=SUMMARY)
    messages = [m.thread_message(m.uid if command.uid else m.seq) for m in found]
    if command.algorithm == "REFERENCES":
        threads = thread_references(messages)
    else:
        threads = thread_orderedsubject(messages)
    session.untagged(b"THREAD " + enc.encode_threads(threads) if threads else b"THREAD")
    return Done()
