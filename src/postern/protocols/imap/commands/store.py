"""STORE and UID STORE (RFC 3501 §6.4.6), with UNCHANGEDSINCE and MODIFIED
(RFC 7162 §3.1.3)."""

from __future__ import annotations

from .. import commands as c
from .. import encode as enc
from ..session import Done, Session, no


async def handle(session: Session, command: c.Store) -> Done:
    selected = session.require_selected()
    if selected.read_only:
        raise no("Mailbox is read-only", "READ-ONLY")
    if command.unchanged_since is not None:
        await session.enable_condstore()
    indexes = selected.resolve(command.sequence_set, uid=command.uid)
    if not indexes:
        return Done()
    outcome = await session.services.view.store_flags(
        session.require_user(),
        selected.folder_id,
        selected.uid_ranges(indexes),
        command.mode,
        command.flags,
        command.unchanged_since,
    )
    if outcome.modseq is not None:
        selected.own_modseqs.add(outcome.modseq)
    modified = set(outcome.modified)
    for message in outcome.messages:
        if message.uid in modified:
            continue
        seq = selected.seq_of(message.uid)
        if seq is None:
            continue
        if command.silent and not (session.condstore and outcome.modseq is not None and message.modseq == outcome.modseq):
            continue
        items = []
        if command.uid:
            items.append(b"UID " + str(message.uid).encode())
        if not command.silent:
            items.append(b"FLAGS " + enc.flag_list(session.flags_of(message)))
        if session.condstore:
            items.append(b"MODSEQ (" + str(message.modseq).encode() + b")")
        session.write(b"* " + str(seq).encode() + b" FETCH (" + b" ".join(items) + b")\r\n")
    if modified:
        if command.uid:
            numbers = enc.sequence_set(modified)
        else:
            numbers = enc.sequence_set(s for s in (selected.seq_of(u) for u in modified) if s is not None)
        return Done("completed with conditional failures", enc.response_code("MODIFIED", numbers))
    return Done()
