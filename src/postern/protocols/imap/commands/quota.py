"""GETQUOTA, GETQUOTAROOT and SETQUOTA (RFC 2087 / RFC 9208): one root, "", the
user's storage quota, in KiB. The operator sets quotas (admin API), not IMAP."""

from __future__ import annotations

from .. import commands as c
from .. import encode as enc
from ..session import Done, Session, no


async def _quota_line(session: Session) -> bytes:
    used, limit = await session.services.view.quota(session.require_user())
    return b'QUOTA "" (STORAGE ' + str(used // 1024).encode() + b" " + str(limit // 1024).encode() + b")"


async def handle_getquota(session: Session, command: c.GetQuota) -> Done:
    if command.root != "":
        raise no("No such quota root", "NONEXISTENT")
    session.untagged(await _quota_line(session))
    return Done()


async def handle_getquotaroot(session: Session, command: c.GetQuotaRoot) -> Done:
    folder = await session.services.mailstore.folder_by_path(session.require_user(), command.mailbox)
    session.untagged(b"QUOTAROOT " + enc.mailbox(folder.path) + b' ""')
    session.untagged(await _quota_line(session))
    return Done()


async def handle_setquota(session: Session, command: c.SetQuota) -> Done:
    raise no("Quotas are set by the operator", "NOPERM")
