"""The session state machine with a fake login and maildrop: the answers the sockets
tests cannot provoke easily (rate limits, disabled accounts, failures)."""

from __future__ import annotations

from array import array
from typing import Any

import pytest

from postern.accounts.service import ApplicationPasswordRequired
from postern.errors import AuthFailed, Forbidden, RateLimited
from postern.mailstore.pop3_view import Maildrop
from postern.protocols.pop3 import parser
from postern.protocols.pop3.session import MAX_AUTH_FAILURES, Session, State

pytestmark = pytest.mark.asyncio


class FakeView:
    def __init__(self, fail: bool = False):
        self.fail = fail
        self.updates: list[tuple[list[int], list[int]]] = []

    async def open_maildrop(self, user_id: str) -> Maildrop:
        if self.fail:
            raise RuntimeError("database down")
        return Maildrop("folder", 7, None, array("q", [10, 11, 12]), array("q", [100, 200, 300]))

    async def update(self, user_id: str, maildrop: Maildrop, *, seen: list[int], deleted: list[int]) -> int:
        if self.fail:
            raise RuntimeError("database down")
        self.updates.append((list(seen), list(deleted)))
        return len(deleted)


def session_with(error: Exception | None = None, view: Any = None, **options: Any) -> Session:
    async def authenticate(login: str, password: str) -> str:
        if error is not None:
            raise error
        return "user-1"

    kwargs: dict[str, Any] = {"secure": False, "plaintext_allowed": True, "tls_available": True, **options}
    return Session(view or FakeView(), authenticate, **kwargs)


async def login(session: Session) -> str:
    await session.handle(parser.User("alice"))
    return (await session.handle(parser.Pass("pw"))).line


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (AuthFailed("no"), "-ERR [AUTH] Invalid login or password"),
        (Forbidden("User account is disabled", code="UserDisabled"), "-ERR [AUTH] This account is disabled"),
        (RateLimited(42), "-ERR [SYS/TEMP] Too many attempts, try again in 42 seconds"),
        (ApplicationPasswordRequired("2fa"), "-ERR [AUTH] Two-factor authentication is on: log in with an application password"),
    ],
)
async def test_login_errors(error: Exception, expected: str) -> None:
    session = session_with(error)
    assert await login(session) == expected
    assert session.state is State.AUTHORIZATION


async def test_too_many_failures_close_the_connection() -> None:
    session = session_with(AuthFailed("no"))
    for _ in range(MAX_AUTH_FAILURES - 1):
        await session.handle(parser.User("alice"))
        assert not (await session.handle(parser.Pass("pw"))).close
    await session.handle(parser.User("alice"))
    assert (await session.handle(parser.Pass("pw"))).close


async def test_maildrop_that_cannot_open() -> None:
    session = session_with(view=FakeView(fail=True))
    assert (await login(session)).startswith("-ERR [SYS/TEMP]")
    assert session.state is State.AUTHORIZATION


async def test_update_failure_says_so() -> None:
    view = FakeView()
    session = session_with(view=view)
    assert (await login(session)).startswith("+OK Logged in, 3 messages (600 octets)")
    assert (await session.handle(parser.Dele(2))).ok
    assert (await session.handle(parser.Stat())).line == "+OK 2 400"
    view.fail = True
    reply = await session.handle(parser.Quit())
    assert reply.line.startswith("-ERR [SYS/TEMP]") and reply.close


async def test_quit_moves_deleted_uids() -> None:
    view = FakeView()
    session = session_with(view=view)
    await login(session)
    await session.handle(parser.Dele(1))
    await session.handle(parser.Dele(3))
    reply = await session.handle(parser.Quit())
    assert reply.ok and reply.close and "2 messages moved to Trash" in reply.line
    assert view.updates == [([], [10, 12])]
    assert session.state is State.UPDATE


async def test_states() -> None:
    session = session_with()
    for command in (parser.Stat(), parser.List(), parser.Retr(1), parser.Dele(1), parser.Noop(), parser.Rset(), parser.Pass("x")):
        assert not (await session.handle(command)).ok, command
    await login(session)
    for command in (parser.User("a"), parser.Pass("x"), parser.Auth("PLAIN"), parser.Stls()):
        assert not (await session.handle(command)).ok, command
    assert (await session.handle(parser.Uidl(1))).line == "+OK 1 7.10"
    assert (await session.handle(parser.List(4))).line.startswith("-ERR")
    capa = b"".join(list((await session.handle(parser.Capa())).body or []))  # type: ignore[arg-type]
    assert b"USER" not in capa and b"STLS" not in capa and b"UIDL" in capa


async def test_capabilities_follow_the_connection() -> None:
    plain = b"".join((await session_with(plaintext_allowed=False).handle(parser.Capa())).body or [])  # type: ignore[arg-type]
    assert b"STLS\r\n" in plain and b"USER\r\n" not in plain and b"SASL" not in plain
    secure = session_with(plaintext_allowed=False, secure=True)
    capa = b"".join((await secure.handle(parser.Capa())).body or [])  # type: ignore[arg-type]
    assert b"STLS" not in capa and b"USER\r\n" in capa and b"SASL PLAIN\r\n" in capa
    no_tls = b"".join((await session_with(tls_available=False).handle(parser.Capa())).body or [])  # type: ignore[arg-type]
    assert b"STLS" not in no_tls
