"""Password hashes: cheap ones are checked in the event loop's thread, costlier ones in
a worker thread; either way the answer is the same, and a missing hash never matches."""

from __future__ import annotations

import threading

import pytest

from postern.accounts import passwords as passwords_module
from postern.accounts.passwords import Passwords


@pytest.mark.parametrize(("memory_kib", "inline"), [(8, True), (1024, False)])
async def test_verify_inline_only_when_cheap(memory_kib: int, inline: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    passwords = Passwords(time_cost=1, memory_kib=memory_kib)
    stored = await passwords.hash("right")
    threads: list[str] = []
    real_verify = passwords._verify

    def recording_verify(stored_hash: str | None, password: str) -> bool:
        threads.append(threading.current_thread().name)
        return real_verify(stored_hash, password)

    monkeypatch.setattr(passwords, "_verify", recording_verify)
    assert await passwords.verify(stored, "right") is True
    assert await passwords.verify(stored, "wrong") is False
    assert await passwords.verify(None, "postern-decoy-password") is False
    assert await passwords.verify("not a hash", "right") is False
    on_loop = threading.current_thread().name
    assert [name == on_loop for name in threads] == [inline, inline, inline, False]
    assert passwords_module._cheap(stored) is inline
