"""FETCH and UID FETCH (RFC 3501 §6.4.5), with BINARY (RFC 3516), CONDSTORE's
MODSEQ and CHANGEDSINCE and QRESYNC's VANISHED (RFC 7162).

Messages are read in chunks and their responses written one by one, so a FETCH
of a large mailbox never holds more than a chunk of metadata and a few messages.
ENVELOPE comes from the header cache (message bytes are read for its misses only).
"""

from __future__ import annotations

from postern.mailstore.imap_view import ImapMessage
from postern.mime.imap_structure import SectionSpec, binary_section, bodystructure, envelope, section

from .. import commands as c
from .. import encode as enc
from ..session import Done, Session, no

CHUNK = 256
#: Wait for the client to take the output when this much is buffered.
DRAIN_ABOVE = 256 * 1024
#: Response lines are written together up to about this many bytes.
WRITE_BYTES = 64 * 1024
#: Messages read together while their sizes add up to at most this.
READ_AHEAD_BYTES = 256 * 1024

_RAW_NEEDED = frozenset({"ENVELOPE", "BODYSTRUCTURE", "RFC822", "RFC822.HEADER", "RFC822.TEXT", "BODY", "BINARY", "BINARY.SIZE"})


def _literal_head(data: bytes, binary: bool = False) -> bytes:
    return (b"~{" if binary else b"{") + str(len(data)).encode() + b"}\r\n"


async def handle(session: Session, command: c.Fetch) -> Done:
    selected = session.require_selected()
    view = session.services.view
    attributes = list(command.attributes)
    if command.changed_since is not None or any(a.name == "MODSEQ" for a in attributes):
        await session.enable_condstore()
        if not any(a.name == "MODSEQ" for a in attributes):
            attributes.append(c.FetchAttribute("MODSEQ"))
    if command.vanished and not session.qresync:
        raise no("VANISHED needs QRESYNC enabled", "CANNOT")
    indexes = selected.resolve(command.sequence_set, uid=command.uid)
    if command.vanished and command.changed_since is not None:
        largest = selected.largest_uid
        gone = [
            u
            for u in await view.vanished_since(selected.folder_id, command.changed_since)
            if command.sequence_set.contains(u, max(largest, u))
        ]
        if gone:
            session.untagged(b"VANISHED (EARLIER) " + enc.sequence_set(gone))
    needs_raw = any(a.name in _RAW_NEEDED for a in attributes)
    # ENVELOPE is all that needs the bytes: the header cache has it.
    from_cache = needs_raw and all(a.name == "ENVELOPE" or a.name not in _RAW_NEEDED for a in attributes)
    if from_cache:
        needs_raw = False
    sets_seen = not selected.read_only and any(a.sets_seen for a in attributes)
    wants_flags = any(a.name == "FLAGS" for a in attributes)
    # UID first, as clients expect it.
    attributes.sort(key=lambda a: a.name != "UID")
    missing = False
    unknown_cte = False
    connection = session.connection
    # Response lines are written a batch at a time: each write to the transport is a
    # send() when its buffer is empty. Written before every wait, so nothing else is
    # ever written between them.
    lines: list[bytes] = []
    buffered = 0

    async def write_lines() -> None:
        nonlocal buffered
        if lines:
            session.write(b"".join(lines))
            lines.clear()
            buffered = 0
        if connection is not None and connection.writer.transport.get_write_buffer_size() > DRAIN_ABOVE:
            await connection.writer.drain()

    for start in range(0, len(indexes), CHUNK):
        chunk = indexes[start : start + CHUNK]
        rows = {m.uid: m for m in await view.messages(selected.folder_id, selected.uid_ranges(chunk))}
        if command.changed_since is not None:
            rows = {u: m for u, m in rows.items() if m.modseq > command.changed_since}
        flag_changed: set[int] = set()
        if sets_seen:
            unseen = [u for u, m in rows.items() if "\\Seen" not in m.flags]
            if unseen:
                outcome = await view.store_flags(session.require_user(), selected.folder_id, [(u, u) for u in unseen], "add", ["\\Seen"])
                if outcome.modseq is not None:
                    selected.own_modseqs.add(outcome.modseq)
                for changed in outcome.messages:
                    if changed.uid in rows:
                        rows[changed.uid] = changed
                        flag_changed.add(changed.uid)
        raws: dict[int, bytes] = {}
        envelopes: dict[int, bytes] = {}
        if from_cache:
            wanted = [m for m in (rows.get(selected.uids[i]) for i in chunk) if m is not None]
            parsed = await session.services.header_cache.parsed_many(view, wanted)
            envelopes = {m.uid: p.envelope for m, p in zip(wanted, parsed, strict=True)}
        for index in chunk:
            uid = selected.uids[index]
            message = rows.get(uid)
            if message is None:
                if command.changed_since is None:
                    missing = True
                continue
            if needs_raw:
                raw = raws.pop(uid, None)
                if raw is None:
                    await write_lines()
                    raws = await _read_ahead(session, chunk, index, rows)
                    raw = raws.pop(uid)
            else:
                raw = b""
            pieces: list[bytes] = []
            for attribute in attributes:
                if from_cache and attribute.name == "ENVELOPE":
                    pieces.append(b"ENVELOPE " + envelopes[uid])
                    continue
                item = _item(session, attribute, message, raw)
                if item is None:
                    unknown_cte = True
                    continue
                pieces.append(item)
            if uid in flag_changed and not wants_flags:
                pieces.append(b"FLAGS " + enc.flag_list(session.flags_of(message)))
            line = b"* " + str(index + 1).encode() + b" FETCH (" + b" ".join(pieces) + b")\r\n"
            lines.append(line)
            buffered += len(line)
            if buffered > WRITE_BYTES:
                await write_lines()
        await write_lines()
    if unknown_cte:
        raise no("Some parts have an unknown transfer encoding", "UNKNOWN-CTE")
    if missing and not command.uid:
        raise no("Some of the requested messages no longer exist", "EXPUNGEISSUED")
    return Done()


async def _read_ahead(session: Session, chunk: list[int], index: int, rows: dict[int, ImapMessage]) -> dict[int, bytes]:
    """The bytes of the messages from ``index`` on in ``chunk``, read together up to
    READ_AHEAD_BYTES (at least the first): small messages cost one read hop, not
    one each, and a large one is still held alone."""
    selected = session.require_selected()
    batch: list[ImapMessage] = []
    total = 0
    for i in chunk[chunk.index(index) :]:
        message = rows.get(selected.uids[i])
        if message is None:
            continue
        if batch and total + message.size > READ_AHEAD_BYTES:
            break
        batch.append(message)
        total += message.size
    raws = await session.services.view.raw_many(batch)
    return {m.uid: raw for m, raw in zip(batch, raws, strict=True)}


def _item(session: Session, attribute: c.FetchAttribute, message: ImapMessage, raw: bytes) -> bytes | None:
    name = attribute.name
    if name == "UID":
        return b"UID " + str(message.uid).encode()
    if name == "FLAGS":
        return b"FLAGS " + enc.flag_list(session.flags_of(message))
    if name == "INTERNALDATE":
        return b"INTERNALDATE " + enc.internaldate(message.internaldate)
    if name == "RFC822.SIZE":
        return b"RFC822.SIZE " + str(len(raw) if raw else message.size).encode()
    if name == "MODSEQ":
        return b"MODSEQ (" + str(message.modseq).encode() + b")"
    if name == "SAVEDATE":
        return b"SAVEDATE NIL"
    if name == "ENVELOPE":
        return b"ENVELOPE " + enc.encode_envelope(envelope(raw))
    if name == "BODYSTRUCTURE":
        return b"BODYSTRUCTURE " + enc.encode_value(bodystructure(raw, True))
    if name == "BODY" and attribute.section is None:
        return b"BODY " + enc.encode_value(bodystructure(raw, False))
    if name == "RFC822":
        return b"RFC822 " + _literal_head(raw) + raw
    if name == "RFC822.HEADER":
        data = section(raw, SectionSpec(text="HEADER"))
        return b"RFC822.HEADER " + _literal_head(data) + data
    if name == "RFC822.TEXT":
        data = section(raw, SectionSpec(text="TEXT"))
        return b"RFC822.TEXT " + _literal_head(data) + data
    assert attribute.section is not None
    if name == "BODY":
        data = section(raw, attribute.section, attribute.partial)
        return attribute.response_name().encode() + b" " + _literal_head(data) + data
    if name == "BINARY":
        decoded = binary_section(raw, attribute.section.part, attribute.partial)
        if decoded is None:
            return None
        return attribute.response_name().encode() + b" " + _literal_head(decoded, b"\x00" in decoded) + decoded
    if name == "BINARY.SIZE":
        decoded = binary_section(raw, attribute.section.part)
        if decoded is None:
            return None
        return attribute.response_name().encode() + b" " + str(len(decoded)).encode()
    return None
