"""ID (RFC 2971): the server says its name; the client's fields are only logged."""

from __future__ import annotations

import logging

from postern import __version__

from .. import commands as c
from .. import encode as enc
from ..session import Done, Session

log = logging.getLogger("postern.imap")


async def handle(session: Session, command: c.Id) -> Done:
    if command.parameters:
        log.debug("IMAP client %s says ID %s", session.peer, dict(command.parameters))
    fields = [enc.string("name"), enc.string("postern"), enc.string("version"), enc.string(__version__)]
    session.untagged(b"ID " + enc.paren_list(fields))
    return Done()
