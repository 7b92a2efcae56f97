"""LOGIN (RFC 3501 §6.2.3), and the login itself, which AUTHENTICATE shares.

Passwords go only over TLS or loopback (LOGINDISABLED otherwise). The account's
password or an application password with the ``imap`` scope is accepted.
"""

from __future__ import annotations

import logging

from postern.accounts.authlog import AuthMeta
from postern.accounts.service import ApplicationPasswordRequired
from postern.errors import AuthFailed, DomainError, Forbidden, RateLimited
from postern.telemetry import metrics

from .. import commands as c
from .. import encode as enc
from ..session import Done, ImapError, Session, no

log = logging.getLogger("postern.imap.login")


async def log_in(session: Session, login: str, password: str) -> Done:
    """Authenticate and enter the authenticated state, or raise ``NO``."""
    if not session.login_allowed:
        raise no("Plaintext authentication is disallowed without TLS", "PRIVACYREQUIRED")
    accounts = session.services.accounts
    meta = AuthMeta(protocol="IMAP", ip=session.peer or None)
    try:
        result = await accounts.authenticate(login, password, "imap", meta=meta)
    except RateLimited as error:
        _log(session, login, "rate limited")
        raise ImapError("NO", f"Too many failed logins; try again in {error.retry_after} seconds", "UNAVAILABLE") from None
    except ApplicationPasswordRequired:
        _log(session, login, "application password required")
        raise no("Two-factor authentication is on: use an application password", "AUTHENTICATIONFAILED") from None
    except (AuthFailed, Forbidden, DomainError):
        _log(session, login, "failed")
        raise no("Authentication failed", "AUTHENTICATIONFAILED") from None
    if getattr(result, "require_2fa", None):
        # A password alone cannot pass a second factor: IMAP needs an application password.
        _log(session, login, "application password required")
        raise no("Two-factor authentication is on: use an application password", "AUTHENTICATIONFAILED")
    _log(session, login, "ok")
    session.user_id = result.user.id
    session.username = result.user.username
    session.state = "authenticated"
    session.subscribe()
    if session.connection is not None:
        session.connection.authenticated()
    caps = " ".join(session.capabilities())
    return Done("completed; logged in", enc.response_code("CAPABILITY", caps.encode()))


def _log(session: Session, login: str, result: str) -> None:
    """One line per login (the login name, never the password)."""
    if result != "ok":
        metrics.M.auth_failures("imap").inc()
    log.info(
        "imap login %s from %s: %s",
        login,
        session.peer,
        result,
        extra={"door": "imap", "user": login, "ip": session.peer, "result": result},
    )


async def handle(session: Session, command: c.Login) -> Done:
    login = command.username.decode("utf-8", "replace")
    password = command.password.decode("utf-8", "replace")
    return await log_in(session, login, password)
