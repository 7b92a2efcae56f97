"""ENABLE (RFC 5161): CONDSTORE and QRESYNC (RFC 7162)."""

from __future__ import annotations

from .. import commands as c
from ..session import Done, Session

SUPPORTED = ("CONDSTORE", "QRESYNC")


async def handle(session: Session, command: c.Enable) -> Done:
    newly: list[str] = []
    for capability in command.capabilities:
        if capability in SUPPORTED and capability not in session.enabled:
            session.enabled.add(capability)
            newly.append(capability)
            session.condstore = True  # QRESYNC implies CONDSTORE
    session.untagged(" ".join(["ENABLED", *newly]))
    return Done()
