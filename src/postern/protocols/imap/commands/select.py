"""SELECT and EXAMINE (RFC 3501 §6.3.1-2), with CONDSTORE and QRESYNC parameters
(RFC 7162 §3.1.8, §3.2.5)."""

from __future__ import annotations

from postern.mailstore.imap_view import SYSTEM_FLAGS

from .. import commands as c
from .. import encode as enc
from ..session import Done, SelectedMailbox, Session, bad

PERMANENT_FLAGS = (*SYSTEM_FLAGS, "\\*")


def unselect(session: Session) -> None:
    """Leave the selected state (the caller says [CLOSED] where due)."""
    session.selected = None
    if session.state == "selected":
        session.state = "authenticated"


async def handle(session: Session, command: c.Select) -> Done:
    user_id = session.require_user()
    if command.qresync is not None and not session.qresync:
        raise bad("QRESYNC must be enabled first")
    if session.selected is not None:
        unselect(session)
        session.untagged("OK [CLOSED] Previous mailbox closed")
    if command.condstore:
        session.condstore = True
    session.absorb_events()  # what happened before this view is already in it
    view = session.services.view
    opened = await view.open(user_id, command.mailbox)
    folder = opened.folder
    selected = SelectedMailbox(folder.id, folder.path, int(folder.uidvalidity), command.read_only, opened.uids)
    if command.read_only:
        # EXAMINE shows what is recent without taking it (RFC 3501 §6.3.2).
        selected.recent = await view.unclaimed_recent(folder.id, opened.uids)
    else:
        selected.recent = await view.claim_recent(folder.id, opened.uids)
    selected.uid_next = int(folder.uid_next)
    selected.modseq = int(folder.modseq)
    keywords = opened.keywords
    selected.keywords = set(keywords)
    session.untagged(b"FLAGS " + enc.flag_list((*SYSTEM_FLAGS, *keywords)))
    permanent = () if command.read_only else (*SYSTEM_FLAGS, *keywords, "\\*")
    session.untagged(b"OK [PERMANENTFLAGS " + enc.flag_list(permanent) + b"] Flags permitted")
    session.untagged(f"{selected.exists} EXISTS")
    session.untagged(f"{len(selected.recent)} RECENT")
    if opened.first_unseen_uid is not None:
        seq = selected.seq_of(opened.first_unseen_uid)
        if seq is not None:
            session.untagged(f"OK [UNSEEN {seq}] First unseen")
    session.untagged(f"OK [UIDVALIDITY {selected.uidvalidity}] UIDs valid")
    session.untagged(f"OK [UIDNEXT {int(folder.uid_next)}] Predicted next UID")
    session.untagged(f"OK [HIGHESTMODSEQ {int(folder.modseq)}] Highest")
    session.selected = selected
    session.state = "selected"
    if command.qresync is not None and command.qresync.uidvalidity == selected.uidvalidity:
        await _resynchronise(session, selected, command.qresync)
    return Done("completed", b"[READ-ONLY]" if command.read_only else b"[READ-WRITE]")


async def _resynchronise(session: Session, selected: SelectedMailbox, params: c.QresyncParameters) -> None:
    view = session.services.view
    known = params.known_uids
    vanished = await view.vanished_since(selected.folder_id, params.modseq)
    if known is not None:
        largest = max(vanished[-1] if vanished else 0, selected.largest_uid)
        vanished = [u for u in vanished if known.contains(u, largest)]
    if vanished:
        session.untagged(b"VANISHED (EARLIER) " + enc.sequence_set(vanished))
    for message in await view.changed_since(selected.folder_id, params.modseq):
        if known is not None and not known.contains(message.uid, selected.largest_uid):
            continue
        seq = selected.seq_of(message.uid)
        if seq is not None:
            session.write(session.fetch_flags_line(seq, message))
