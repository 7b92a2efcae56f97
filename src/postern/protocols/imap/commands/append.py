"""APPEND (RFC 3501 §6.3.11) with MULTIAPPEND (RFC 3502), UIDPLUS's APPENDUID
(RFC 4315), literal8 (RFC 3516) and CATENATE (RFC 4469). Messages are stored with
CRLF line endings."""

from __future__ import annotations

from dataclasses import replace

from postern.errors import DomainError, NotFound
from postern.mailstore.imap_view import ImapView, canonical_flag
from postern.mailstore.service import AppendRequest
from postern.mime.binary_parts import encode_binary_parts
from postern.mime.imap_structure import section, to_crlf

from .. import commands as c
from .. import encode as enc
from ..parser.imap_url import BadUrl, MessageUrl, parse_message_url
from ..session import Done, Session, no


async def handle(session: Session, command: c.Append) -> Done:
    user_id = session.require_user()
    mailstore = session.services.mailstore
    try:
        folder = await session.services.view.folder_at(user_id, command.mailbox)
    except NotFound:
        raise no("Mailbox does not exist", "TRYCREATE") from None
    requests: list[AppendRequest] = []
    for message in command.messages:
        if message.catenate:
            message = replace(message, message=await _catenate(session, user_id, message.catenate))
        if not message.message:
            raise no("Empty messages can not be stored", "CANNOT")
        flags = [f for f in (canonical_flag(flag) for flag in message.flags) if f is not None]
        internal_ms = int(message.internaldate.timestamp() * 1000) if message.internaldate else None
        # literal8 (RFC 3516): binary parts are stored base64-encoded, the rest as sent
        raw = encode_binary_parts(message.message) if message.binary else to_crlf(message.message)
        if len(raw) > session.services.max_message_size:
            raise no("Message is too large", "TOOBIG")
        requests.append(
            AppendRequest(
                user_id, folder.id, raw, flags, internal_ms, event={"source": "IMAP", "origin": session.peer, "transtype": "APPEND"}
            )
        )
    assert session.services.appender is not None
    results = await session.services.appender(requests)
    stored = [r for r in results if not isinstance(r, DomainError)]
    failed = [r for r in results if isinstance(r, DomainError)]
    if failed:
        if stored:
            # MULTIAPPEND is all or nothing: take back what was stored.
            await mailstore.delete_messages(user_id, folder.id, [r.uid for r in stored])
        raise failed[0]
    uidvalidity = stored[0].uidvalidity
    code = enc.response_code("APPENDUID", enc.number(uidvalidity), enc.sequence_set(r.uid for r in stored))
    return Done("completed", code)


async def _catenate(session: Session, user_id: str, parts: tuple[tuple[str, bytes], ...]) -> bytes:
    """The message CATENATE's parts make (RFC 4469 §5): texts as sent, URLs resolved to
    the bytes they name in the user's own mailboxes; ``NO [BADURL]`` for one that
    names nothing."""
    view = session.services.view
    pieces: list[bytes] = []
    total = 0
    for kind, value in parts:
        if kind != "URL":
            pieces.append(value)
        else:
            url = value.decode("utf-8", "replace")
            try:
                pieces.append(await _resolve(view, user_id, parse_message_url(url)))
            except (BadUrl, NotFound):
                safe = len(url) < 256 and all(32 <= ord(ch) < 127 and ch not in '"\\' for ch in url)
                raise no("The URL names no message here", f'BADURL "{url}"' if safe else "BADURL") from None
        total += len(pieces[-1])
        if total > session.services.max_message_size:
            raise no("Message is too large", "TOOBIG")
    return b"".join(pieces)


async def _resolve(view: ImapView, user_id: str, url: MessageUrl) -> bytes:
    folder = await view.folder_at(user_id, url.mailbox)
    if url.uidvalidity is not None and url.uidvalidity != int(folder.uidvalidity):
        raise BadUrl("UIDVALIDITY changed")
    found = await view.messages_by_uid(folder.id, [url.uid])
    if not found:
        raise BadUrl("no such message")
    raw = await view.raw(found[0])
    data = section(raw, url.section) if url.section is not None else raw
    if url.partial is not None:
        offset, length = url.partial
        data = data[offset:] if length is None else data[offset : offset + length]
    return data
