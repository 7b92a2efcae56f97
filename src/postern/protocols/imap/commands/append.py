"""APPEND (RFC 3501 §6.3.11) with MULTIAPPEND (RFC 3502), UIDPLUS's APPENDUID
(RFC 4315) and literal8 (RFC 3516). Messages are stored with CRLF line endings."""

from __future__ import annotations

from postern.errors import DomainError, NotFound
from postern.mailstore.imap_view import canonical_flag
from postern.mailstore.service import AppendRequest
from postern.mime.binary_parts import encode_binary_parts
from postern.mime.imap_structure import to_crlf

from .. import commands as c
from .. import encode as enc
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
        if not message.message:
            raise no("Empty messages can not be stored", "CANNOT")
        flags = [f for f in (canonical_flag(flag) for flag in message.flags) if f is not None]
        internal_ms = int(message.internaldate.timestamp() * 1000) if message.internaldate else None
        # literal8 (RFC 3516): binary parts are stored base64-encoded, the rest as sent
        raw = encode_binary_parts(message.message) if message.binary else to_crlf(message.message)
        if len(raw) > session.services.max_message_size:
            raise no("Message is too large", "TOOBIG")
        requests.append(AppendRequest(user_id, folder.id, raw, flags, internal_ms, event={"source": "IMAP", "origin": session.peer, "transtype": "APPEND"}))
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
