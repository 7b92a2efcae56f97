"""LOGIN reads the account afresh every time: what an operator changes (a password, a
disabled account, 2FA, an application password) holds from the next login on; every
successful login is in the authentication log; failures fill the rate limiter."""

from __future__ import annotations

import asyncio

import pyotp
from sqlalchemy import func, select

from postern.accounts.authlog import AuthMeta
from postern.storage.schema import application_passwords, authlog

from .conftest import PASSWORD, ImapDoor

NEW_PASSWORD = "a different horse"


async def login_answer(imap: ImapDoor, login: str, password: str) -> str:
    client = await imap.client(login=None)
    try:
        _, tagged = await client.command(f'LOGIN "{login}" "{password}"')
    finally:
        await client.close()
    return " ".join(tagged.split()[1:3])


async def successes(imap: ImapDoor, user_id: str) -> int:
    async with imap.runtime.db.read() as conn:
        stmt = select(func.count()).select_from(authlog).where(
            authlog.c.user_id == user_id, authlog.c.action == "authentication", authlog.c.result == "success"
        )
        return int((await conn.execute(stmt)).scalar_one())


async def test_a_password_change_holds_from_the_next_login(imap: ImapDoor, alice: str) -> None:
    assert (await login_answer(imap, "alice", PASSWORD)).startswith("OK")
    await imap.runtime.accounts.update_user(alice, {"password": NEW_PASSWORD})
    assert await login_answer(imap, "alice", PASSWORD) == "NO [AUTHENTICATIONFAILED]"
    assert (await login_answer(imap, "alice", NEW_PASSWORD)).startswith("OK")


async def test_a_disabled_account_is_refused_at_once(imap: ImapDoor, alice: str) -> None:
    assert (await login_answer(imap, "alice@example.com", PASSWORD)).startswith("OK")
    await imap.runtime.accounts.update_user(alice, {"disabled": True})
    assert await login_answer(imap, "alice", PASSWORD) == "NO [AUTHENTICATIONFAILED]"
    assert await login_answer(imap, "alice@example.com", PASSWORD) == "NO [AUTHENTICATIONFAILED]"
    await imap.runtime.accounts.update_user(alice, {"disabled": False})
    assert (await login_answer(imap, "alice", PASSWORD)).startswith("OK")


async def test_two_factor_and_application_passwords_hold_from_the_next_login(imap: ImapDoor, alice: str) -> None:
    runtime = imap.runtime
    assert (await login_answer(imap, "alice", PASSWORD)).startswith("OK")
    seed = (await runtime.two_factor.setup_totp(alice, issuer="Test", label="alice")).secret
    await runtime.two_factor.enable_totp(alice, pyotp.TOTP(seed).now())
    assert await login_answer(imap, "alice", PASSWORD) == "NO [AUTHENTICATIONFAILED]"

    created = await runtime.accounts.application_passwords.create(alice, "mail app", ["imap"])
    assert (await login_answer(imap, "alice", created.password)).startswith("OK")
    async with runtime.db.read() as conn:
        used = (await conn.execute(select(application_passwords.c.last_used_ms).where(application_passwords.c.id == created.id))).scalar()
    assert used is not None
    pop_only = await runtime.accounts.application_passwords.create(alice, "pop app", ["pop3"])
    assert await login_answer(imap, "alice", pop_only.password) == "NO [AUTHENTICATIONFAILED]"

    await runtime.accounts.application_passwords.delete(alice, created.id)
    assert await login_answer(imap, "alice", created.password) == "NO [AUTHENTICATIONFAILED]"
    await runtime.two_factor.disable_totp(alice)
    assert (await login_answer(imap, "alice", PASSWORD)).startswith("OK")


async def test_every_successful_login_is_logged(imap: ImapDoor, alice: str) -> None:
    before = await successes(imap, alice)
    for _ in range(3):
        assert (await login_answer(imap, "alice", PASSWORD)).startswith("OK")
    assert await login_answer(imap, "alice", "wrong") == "NO [AUTHENTICATIONFAILED]"
    assert await successes(imap, alice) == before + 3


async def test_failed_logins_fill_the_account_bucket(imap: ImapDoor, alice: str) -> None:
    # The failures of one client (address and account) hold it back first.
    limit = imap.runtime.rate_limiter.policies["login"].per_pair
    for _ in range(limit):
        assert await login_answer(imap, "alice", "wrong") == "NO [AUTHENTICATIONFAILED]"
    # Even the right password is refused now, and an unknown login is counted alike.
    assert await login_answer(imap, "alice", PASSWORD) == "NO [UNAVAILABLE]"
    for _ in range(limit):
        await login_answer(imap, "nobody", "wrong")
    assert await login_answer(imap, "nobody", "wrong") == "NO [UNAVAILABLE]"


async def test_the_log_entries_of_a_deleted_user_fail_alone(imap: ImapDoor, alice: str) -> None:
    """Concurrent entries share a statement; one whose user is gone fails by itself."""
    bob = await imap.user("bob")
    await imap.runtime.accounts.delete_user(bob)
    authlog_service = imap.runtime.authlog
    meta = AuthMeta(protocol="IMAP")
    before = await successes(imap, alice)
    results = await asyncio.gather(
        authlog_service.record_login(alice, meta, "imap", None),
        authlog_service.record_login(bob, meta, "imap", None),
        authlog_service.record_login(alice, meta, "imap", None),
        return_exceptions=True,
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], Exception)
    assert await successes(imap, alice) == before + 2
