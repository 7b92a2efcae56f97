"""Running one command: the state it needs, its handler (one module per command in
:mod:`.commands`), the pending updates announced at its end, the tagged answer.

Whatever a handler raises, the session lives on: an :class:`~.session.ImapError`
becomes its ``NO``/``BAD``, a domain error its ``NO`` with the matching code, and
anything else is logged and answered ``NO [SERVERBUG]``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from postern.errors import (
    AuthFailed,
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    OverQuota,
    RateLimited,
    TooLarge,
)
from postern.telemetry import metrics

from . import commands as c
from . import encode as enc
from .commands import (
    append,
    authenticate,
    cancelupdate,
    capability,
    close,
    copy,
    create,
    delete,
    enable,
    expunge,
    fetch,
    idle,
    login,
    logout,
    namespace,
    noop,
    quota,
    rename,
    search,
    select,
    sort,
    starttls,
    status,
    store,
    subscribe,
    thread,
)
from .commands import (
    id as id_,
)
from .commands import (
    list as list_,
)
from .session import ConnectionClosed, Done, ImapError, Session

log = logging.getLogger("postern.imap")

Handler = Callable[[Session, Any], Awaitable[Done | None]]

ANY = frozenset({"not_authenticated", "authenticated", "selected"})
NOT_AUTH = frozenset({"not_authenticated"})
AUTH = frozenset({"authenticated", "selected"})
SELECTED = frozenset({"selected"})

# command class -> (states it is valid in, handler)
HANDLERS: dict[type[c.Command], tuple[frozenset[str], Handler]] = {
    c.Capability: (ANY, capability.handle),
    c.Noop: (ANY, noop.handle),
    c.Logout: (ANY, logout.handle),
    c.Id: (ANY, id_.handle),
    c.StartTls: (NOT_AUTH, starttls.handle),
    c.Authenticate: (NOT_AUTH, authenticate.handle),
    c.Login: (NOT_AUTH, login.handle),
    c.Enable: (AUTH, enable.handle),
    c.Select: (AUTH, select.handle),
    c.Examine: (AUTH, select.handle),
    c.Create: (AUTH, create.handle),
    c.Delete: (AUTH, delete.handle),
    c.Rename: (AUTH, rename.handle),
    c.Subscribe: (AUTH, subscribe.handle),
    c.Unsubscribe: (AUTH, subscribe.handle),
    c.List: (AUTH, list_.handle),
    c.Lsub: (AUTH, list_.handle_lsub),
    c.Namespace: (AUTH, namespace.handle),
    c.Status: (AUTH, status.handle),
    c.Append: (AUTH, append.handle),
    c.Idle: (AUTH, idle.handle),
    c.GetQuota: (AUTH, quota.handle_getquota),
    c.GetQuotaRoot: (AUTH, quota.handle_getquotaroot),
    c.SetQuota: (AUTH, quota.handle_setquota),
    c.Check: (SELECTED, noop.handle),
    c.Close: (SELECTED, close.handle),
    c.Unselect: (SELECTED, close.handle),
    c.Expunge: (SELECTED, expunge.handle),
    c.Search: (SELECTED, search.handle),
    c.Fetch: (SELECTED, fetch.handle),
    c.Store: (SELECTED, store.handle),
    c.Copy: (SELECTED, copy.handle),
    c.Move: (SELECTED, copy.handle),
    c.Sort: (SELECTED, sort.handle),
    c.Thread: (SELECTED, thread.handle),
    c.CancelUpdate: (SELECTED, cancelupdate.handle),
}

# RFC 3501 §7.4.1: no EXPUNGE while answering FETCH, STORE or SEARCH (nor SORT and
# THREAD, which are searches); their UID forms may have them.
_NO_EXPUNGE = (c.Fetch, c.Store, c.Search, c.Sort, c.Thread, c.Copy, c.Move)


def expunges_allowed(command: c.Command) -> bool:
    if isinstance(command, _NO_EXPUNGE):
        return bool(getattr(command, "uid", False))
    return True


def domain_error(error: DomainError) -> ImapError:
    """A domain error as IMAP says it."""
    if isinstance(error, RateLimited):
        return ImapError("NO", f"Too many attempts, try again in {error.retry_after} seconds", "UNAVAILABLE")
    if isinstance(error, AuthFailed):
        return ImapError("NO", "Authentication failed", "AUTHENTICATIONFAILED")
    if isinstance(error, OverQuota):
        return ImapError("NO", error.message, "OVERQUOTA")
    if isinstance(error, TooLarge):
        return ImapError("NO", error.message, "TOOBIG")
    if isinstance(error, NotFound):
        return ImapError("NO", error.message, "NONEXISTENT")
    if isinstance(error, Conflict):
        return ImapError("NO", error.message, "ALREADYEXISTS")
    if isinstance(error, Forbidden):
        return ImapError("NO", error.message, "CANNOT")
    if isinstance(error, InvalidInput):
        return ImapError("NO", error.message, "CANNOT")
    return ImapError("NO", error.message, "SERVERBUG")


async def dispatch(session: Session, command: c.Command) -> None:
    """Run one command and write its tagged answer (and the updates due with it)."""
    start = time.perf_counter()
    try:
        await _dispatch(session, command)
    finally:
        metrics.M.imap_duration(command.name).observe(time.perf_counter() - start)


async def _dispatch(session: Session, command: c.Command) -> None:
    entry = HANDLERS.get(type(command))
    tag = command.tag
    done: Done | None = None
    if entry is None:
        session.write(enc.status_response(tag, "BAD", f"{command.name} is not supported"))
        return
    states, handler = entry
    if session.state not in states:
        if session.state == "not_authenticated":
            text = "Log in first"
        elif session.state == "authenticated" and states == SELECTED:
            text = "Select a mailbox first"
        else:
            text = "Command not valid in this state"
        session.write(enc.status_response(tag, "BAD", f"{command.name}: {text}"))
        return
    try:
        done = await handler(session, command)
    except ImapError as error:
        await _updates(session, command)
        code = enc.response_code(error.code) if error.code else None
        session.write(enc.status_response(tag, error.status, error.text, code))
        return
    except DomainError as error:
        imap_error = domain_error(error)
        await _updates(session, command)
        code = enc.response_code(imap_error.code) if imap_error.code else None
        session.write(enc.status_response(tag, imap_error.status, imap_error.text, code))
        return
    except (ConnectionError, OSError, ConnectionClosed):
        raise
    except Exception:
        log.exception("IMAP %s failed (user %s)", command.name, session.user_id)
        session.write(enc.status_response(tag, "NO", "Internal error; the command was not completed", b"[SERVERBUG]"))
        return
    if session.state == "logout":
        if done is not None:
            session.write(enc.status_response(tag, done.status, f"{command.name} {done.text}", done.code))
        return
    if done is not None and not done.send:
        return
    await _updates(session, command)
    if done is None:
        done = Done()
    session.write(enc.status_response(tag, done.status, f"{command.name} {done.text}", done.code))


async def _updates(session: Session, command: c.Command) -> None:
    try:
        await session.flush_updates(allow_expunge=expunges_allowed(command))
        await search.refresh_updates(session)
    except Exception:
        log.exception("IMAP updates after %s failed", command.name)
