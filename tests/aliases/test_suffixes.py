"""Signed suffixes: bound to the user and the suffix, valid 10 minutes, and untouched
by a client that changes the letter case."""

from __future__ import annotations

import pytest

from postern.accounts.server_key import ServerKey
from postern.aliases.suffixes import EXPIRED, TTL_S, SuffixRejected, SuffixSigner

USER = "5f1e2d3c4b5a69788796a5b4"
OTHER = "5f1e2d3c4b5a69788796a5b5"


class Clock:
    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def signer(clock: Clock) -> SuffixSigner:
    return SuffixSigner(ServerKey(b"k" * 32), clock=clock)


def test_round_trip_and_lowercase(signer: SuffixSigner) -> None:
    signed = signer.sign(".cat42@example.com", USER)
    assert signed == signed.lower()
    assert signed.startswith(".cat42@example.com.")
    assert signer.unsign(signed, USER) == ".cat42@example.com"


def test_case_folding_is_harmless(signer: SuffixSigner) -> None:
    signed = signer.sign("@mydomain.example", USER)
    assert signer.unsign(signed.upper(), USER) == "@mydomain.example"
    assert signer.unsign(signed.casefold(), USER) == "@mydomain.example"
    assert signer.unsign(f"  {signed}\n", USER) == "@mydomain.example"


def test_bound_to_the_user(signer: SuffixSigner) -> None:
    signed = signer.sign(".cat42@example.com", USER)
    with pytest.raises(SuffixRejected) as caught:
        signer.unsign(signed, OTHER)
    assert not caught.value.expired


@pytest.mark.parametrize(
    "tamper",
    [
        lambda s: s.replace(".cat42@", ".dog42@"),
        lambda s: s.replace("@example.com", "@premium.example"),
        lambda s: s[:-1] + ("a" if s[-1] != "a" else "b"),
        lambda s: s.rsplit(".", 1)[0],
        lambda s: "",
        lambda s: "garbage",
        lambda s: "a.b.c",
        lambda s: s + "é",
        lambda s: s * 20,
    ],
)
def test_tampering_is_refused(signer: SuffixSigner, tamper: object) -> None:
    signed = signer.sign(".cat42@example.com", USER)
    with pytest.raises(SuffixRejected) as caught:
        signer.unsign(tamper(signed), USER)  # type: ignore[operator]
    assert not caught.value.expired


def test_expires_after_ten_minutes(signer: SuffixSigner, clock: Clock) -> None:
    signed = signer.sign(".cat42@example.com", USER)
    clock.now += TTL_S
    assert signer.unsign(signed, USER) == ".cat42@example.com"
    clock.now += 1
    with pytest.raises(SuffixRejected) as caught:
        signer.unsign(signed, USER)
    assert caught.value.expired and caught.value.message == EXPIRED


def test_from_the_future_is_refused(signer: SuffixSigner, clock: Clock) -> None:
    clock.now += 3600
    signed = signer.sign(".cat42@example.com", USER)
    clock.now -= 3600
    with pytest.raises(SuffixRejected):
        signer.unsign(signed, USER)


def test_another_server_key_refuses(clock: Clock) -> None:
    signed = SuffixSigner(ServerKey(b"k" * 32), clock=clock).sign(".cat42@example.com", USER)
    with pytest.raises(SuffixRejected):
        SuffixSigner(ServerKey(b"j" * 32), clock=clock).unsign(signed, USER)
