"""Remembered logins (accounts/login_cache.py) over IMAP LOGIN, with the changes made
through the admin API: a repeated login with the same password is not verified
again, and every change of what opens the account takes effect at the next LOGIN."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pyotp
import pytest

from postern.events import EventsLost

from .conftest import PASSWORD, ImapDoor, RawClient, status_of


@pytest.fixture
def verifications(imap: ImapDoor, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The passwords argon2id was asked to verify (in this process)."""
    seen: list[str] = []
    passwords = imap.runtime.accounts.passwords
    original = passwords.verify

    async def counting(stored_hash: str | None, password: str) -> bool:
        seen.append(password)
        return await original(stored_hash, password)

    monkeypatch.setattr(passwords, "verify", counting)
    yield seen


async def login(imap: ImapDoor, user: str, password: str) -> str:
    client = await RawClient.connect(imap.port)
    try:
        _, tagged = await client.command(f'LOGIN {user} "{password}"')
        return tagged
    finally:
        await client.close()


def ok(tagged: str) -> bool:
    return status_of(tagged) == "OK"


async def test_a_repeated_login_is_not_verified_again(imap: ImapDoor, alice: str, verifications: list[str]) -> None:
    assert ok(await login(imap, "alice", PASSWORD))
    assert ok(await login(imap, "alice", PASSWORD))
    assert ok(await login(imap, "alice", PASSWORD))
    assert verifications == [PASSWORD]


async def test_a_wrong_password_never_hits_the_cache(imap: ImapDoor, alice: str, verifications: list[str]) -> None:
    assert ok(await login(imap, "alice", PASSWORD))
    for _ in range(2):
        tagged = await login(imap, "alice", PASSWORD + "x")
        assert tagged.split()[1:3] == ["NO", "[AUTHENTICATIONFAILED]"]
    # Each wrong one was verified in full, and none was remembered.
    assert verifications == [PASSWORD, PASSWORD + "x", PASSWORD + "x"]
    assert ok(await login(imap, "alice", PASSWORD))
    assert len(verifications) == 3


async def test_password_change_through_the_api_takes_effect_at_once(imap: ImapDoor, alice: str, client: httpx.AsyncClient) -> None:
    assert ok(await login(imap, "alice", PASSWORD))
    response = await client.put(f"/users/{alice}", json={"password": "a brand new password"})
    assert response.status_code == 200, response.text
    tagged = await login(imap, "alice", PASSWORD)
    assert tagged.split()[1:3] == ["NO", "[AUTHENTICATIONFAILED]"]
    assert ok(await login(imap, "alice", "a brand new password"))


async def test_a_changed_hash_misses_even_without_the_event(imap: ImapDoor, alice: str, verifications: list[str]) -> None:
    """The stored hash is part of what is remembered: another node's change, whose
    event has not arrived, is seen at the next login all the same."""
    assert ok(await login(imap, "alice", PASSWORD))
    accounts = imap.runtime.accounts
    bus, accounts.bus = accounts.bus, _Silent()
    try:
        await accounts.update_user(alice, {"password": "changed elsewhere"})
    finally:
        accounts.bus = bus
    assert len(accounts.login_cache) == 1  # not forgotten: no event came
    assert not ok(await login(imap, "alice", PASSWORD))
    assert ok(await login(imap, "alice", "changed elsewhere"))


class _Silent:
    def publish(self, events: Any) -> None:
        pass


async def test_disabling_the_account_takes_effect_at_once(imap: ImapDoor, alice: str, client: httpx.AsyncClient) -> None:
    assert ok(await login(imap, "alice", PASSWORD))
    assert (await client.put(f"/users/{alice}", json={"disabled": True})).status_code == 200
    assert len(imap.runtime.accounts.login_cache) == 0
    tagged = await login(imap, "alice", PASSWORD)
    assert status_of(tagged) == "NO"
    assert (await client.put(f"/users/{alice}", json={"disabled": False})).status_code == 200
    assert ok(await login(imap, "alice", PASSWORD))


async def test_enabling_2fa_takes_effect_at_once(imap: ImapDoor, alice: str, client: httpx.AsyncClient) -> None:
    assert ok(await login(imap, "alice", PASSWORD))
    setup = await client.post(f"/users/{alice}/2fa/totp/setup", json={})
    assert setup.status_code == 200, setup.text
    enabled = await client.post(f"/users/{alice}/2fa/totp/enable", json={"token": pyotp.TOTP(setup.json()["seed"]).now()})
    assert enabled.status_code == 200, enabled.text
    assert len(imap.runtime.accounts.login_cache) == 0
    # With 2FA on, the master password no longer opens IMAP, remembered or not.
    assert status_of(await login(imap, "alice", PASSWORD)) == "NO"
    assert (await client.delete(f"/users/{alice}/2fa")).status_code == 200
    assert ok(await login(imap, "alice", PASSWORD))


async def test_deleting_an_application_password_takes_effect_at_once(
    imap: ImapDoor, alice: str, client: httpx.AsyncClient, verifications: list[str]
) -> None:
    created = await client.post(f"/users/{alice}/asps", json={"description": "phone", "scopes": ["imap"]})
    assert created.status_code == 200, created.text
    asp, asp_id = created.json()["password"], created.json()["id"]
    assert ok(await login(imap, "alice", asp))
    assert ok(await login(imap, "alice", PASSWORD))
    assert ok(await login(imap, "alice", asp))
    assert (await client.delete(f"/users/{alice}/asps/{asp_id}")).status_code == 200
    assert status_of(await login(imap, "alice", asp)) == "NO"
    # The master password was remembered, and forgotten with the deletion: verified again.
    assert ok(await login(imap, "alice", PASSWORD))
    assert verifications.count(PASSWORD) == 2


async def test_a_gap_in_the_events_forgets_everything(imap: ImapDoor, alice: str, verifications: list[str]) -> None:
    await imap.user("bob")
    assert ok(await login(imap, "alice", PASSWORD))
    assert ok(await login(imap, "bob", PASSWORD))
    imap.runtime.bus.mark_all_overflowed()
    assert len(imap.runtime.accounts.login_cache) == 0
    imap.runtime.bus.deliver([EventsLost(alice)])
    assert ok(await login(imap, "alice", PASSWORD))
    assert len(verifications) == 3


async def test_an_operator_logout_forgets_the_user(imap: ImapDoor, alice: str, client: httpx.AsyncClient, verifications: list[str]) -> None:
    assert ok(await login(imap, "alice", PASSWORD))
    assert (await client.put(f"/users/{alice}/logout", json={})).status_code == 200
    assert ok(await login(imap, "alice", PASSWORD))
    assert len(verifications) == 2
