"""NAMESPACE (RFC 2342): one personal namespace, "/" as the hierarchy separator."""

from __future__ import annotations

from .. import commands as c
from ..session import Done, Session


async def handle(session: Session, command: c.Namespace) -> Done:
    session.untagged('NAMESPACE (("" "/")) NIL NIL')
    return Done()
