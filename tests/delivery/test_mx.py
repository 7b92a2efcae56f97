from __future__ import annotations

import random

import pytest

from postern.delivery.mx import (
    MAX_QUEUE_LIFETIME_S,
    DeliveryTarget,
    classify_smtp_reply,
    enhanced_status,
    is_null_mx,
    mx_targets,
    order_mx,
    parse_relay,
    retry_delay,
)

# --- MX ordering -----------------------------------------------------------------


def test_order_by_preference() -> None:
    records = [(20, "b.example.net"), (10, "a.example.net"), (30, "c.example.net.")]
    assert order_mx(records, "example.net") == ["a.example.net", "b.example.net", "c.example.net"]


def test_equal_preferences_are_shuffled_repeatably_and_completely() -> None:
    records = [(10, f"mx{i}.example.net") for i in range(6)] + [(5, "first.example.net"), (50, "last.example.net")]
    orders = {tuple(order_mx(records, "example.net", rng=random.Random(seed))) for seed in range(40)}
    for order in orders:
        assert order[0] == "first.example.net" and order[-1] == "last.example.net"
        assert sorted(order[1:-1]) == [f"mx{i}.example.net" for i in range(6)]
    assert len(orders) > 10  # really shuffled
    # the same seed gives the same order, whatever the input order
    shuffled = list(reversed(records))
    assert order_mx(records, "example.net", rng=random.Random(7)) == order_mx(
        shuffled, "example.net", rng=random.Random(7)
    )


def test_every_equal_preference_host_comes_first_sometimes() -> None:
    records = [(10, "a.example.net"), (10, "b.example.net"), (10, "c.example.net")]
    rng = random.Random(1)
    firsts = {order_mx(records, "example.net", rng=rng)[0] for _ in range(200)}
    assert firsts == {"a.example.net", "b.example.net", "c.example.net"}


def test_without_rng_the_order_is_still_complete() -> None:
    records = [(10, "a.example.net"), (10, "b.example.net")]
    assert sorted(order_mx(records, "example.net")) == ["a.example.net", "b.example.net"]


def test_hosts_are_normalised_and_deduplicated() -> None:
    records = [(20, "MX.Example.NET."), (10, "mx.example.net"), (30, "other.example.net")]
    assert order_mx(records, "example.net") == ["mx.example.net", "other.example.net"]


@pytest.mark.parametrize("records", [[(0, ".")], [(0, "")], [(10, ".")]])
def test_null_mx(records: list[tuple[int, str]]) -> None:
    assert is_null_mx(records)
    assert order_mx(records, "example.net") == []
    assert mx_targets(records, "example.net") == []


def test_null_mx_mixed_with_real_ones_is_ignored() -> None:
    records = [(0, "."), (10, "mx.example.net")]
    assert not is_null_mx(records)
    assert order_mx(records, "example.net") == ["mx.example.net"]
    assert order_mx([(0, "."), (0, ".")], "example.net") == []


def test_not_null_mx() -> None:
    assert not is_null_mx([])
    assert not is_null_mx([(10, "mx.example.net")])


def test_implicit_mx() -> None:
    assert order_mx([], "Example.NET.") == ["example.net"]
    assert order_mx([], "bücher.example") == ["xn--bcher-kva.example"]
    assert mx_targets([], "example.net") == [DeliveryTarget("example.net", 25, 0)]
    with pytest.raises(ValueError):
        order_mx([], "not a domain")


def test_mx_targets() -> None:
    records = [(20, "b.example.net"), (10, "a.example.net"), (10, "a.example.net")]
    assert mx_targets(records, "example.net") == [
        DeliveryTarget("a.example.net", 25, 10),
        DeliveryTarget("b.example.net", 25, 20),
    ]
    assert mx_targets(records, "example.net", port=2525)[0].port == 2525


# --- relay -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("smtp.example.com", ("smtp.example.com", 587)),
        ("smtp.example.com:25", ("smtp.example.com", 25)),
        (" SMTP.Example.com.:2525 ", ("smtp.example.com", 2525)),
        ("[smtp.example.com]:465", ("smtp.example.com", 465)),
        ("[smtp.example.com]", ("smtp.example.com", 587)),
        ("192.0.2.10:25", ("192.0.2.10", 25)),
        ("[192.0.2.10]", ("192.0.2.10", 587)),
        ("[2001:db8::1]:587", ("2001:db8::1", 587)),
        ("[2001:DB8::1]", ("2001:db8::1", 587)),
        ("2001:db8::1", ("2001:db8::1", 587)),
        ("localhost:1025", ("localhost", 1025)),
        ("relais.bücher.example:587", ("relais.xn--bcher-kva.example", 587)),
    ],
)
def test_parse_relay(value: str, expected: tuple[str, int]) -> None:
    assert parse_relay(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "host:",
        "host:0",
        "host:65536",
        "host:abc",
        "host:-1",
        "host:２５",  # fullwidth digits
        ":25",
        "[]:25",
        "[2001:db8::1",
        "smtp://host:25",
        "user@host:25",
        "host name:25",
        "host:25:26",
        "[host]:25:26",
        "256.1.1.1:25",
        "1.2.3:25",
        "-bad-.example.com",
        "[not an ip]:25",
        None,
    ],
)
def test_parse_relay_errors(value: str) -> None:
    with pytest.raises(ValueError):
        parse_relay(value)


# --- retries ---------------------------------------------------------------------


def test_retry_schedule_without_jitter() -> None:
    minutes = [retry_delay(n) / 60 for n in range(1, 11)]
    assert minutes == [5, 10, 20, 40, 60, 120, 240, 240, 240, 240]
    assert retry_delay(0) == retry_delay(1) == retry_delay(-3)
    assert retry_delay(10_000) == 4 * 3600


def test_retry_delay_is_monotonic_and_capped() -> None:
    delays = [retry_delay(n) for n in range(1, 50)]
    assert delays == sorted(delays)
    assert max(delays) == 4 * 3600


def test_retry_jitter_stays_within_ten_percent() -> None:
    rng = random.Random(42)
    for attempt in range(1, 12):
        base = retry_delay(attempt)
        values = [retry_delay(attempt, rng=rng) for _ in range(200)]
        assert all(0.9 * base <= v <= 1.1 * base for v in values)
        assert len(set(values)) > 1
    assert retry_delay(3, rng=random.Random(5)) == retry_delay(3, rng=random.Random(5))


def test_schedule_fits_in_the_queue_lifetime() -> None:
    assert MAX_QUEUE_LIFETIME_S == 5 * 24 * 3600
    elapsed, attempts = 0.0, 0
    while elapsed < MAX_QUEUE_LIFETIME_S:
        attempts += 1
        elapsed += retry_delay(attempts)
    assert 30 <= attempts <= 40  # about 33 tries over five days


# --- replies ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (250, "2.0.0 OK", "ok"),
        (251, "User not local; will forward", "ok"),
        (421, "4.3.2 Service shutting down", "temporary"),
        (450, "4.2.0 mailbox busy", "temporary"),
        (452, "4.5.3 Too many recipients", "temporary"),
        (550, "5.1.1 user unknown", "permanent"),
        (554, "5.7.1 rejected", "permanent"),
        (552, "5.3.4 message too big", "permanent"),
        (552, "5.5.3 Too many recipients", "temporary"),
        (552, "Too many recipients", "temporary"),
        (354, "go ahead", "temporary"),
        (199, "", "temporary"),
        (600, "", "temporary"),
        (0, "", "temporary"),
        (-1, "", "temporary"),
    ],
)
def test_classify_smtp_reply(code: int, message: str, expected: str) -> None:
    assert classify_smtp_reply(code, message) == expected


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (550, "5.1.1 user unknown", "5.1.1"),
        (550, "550 5.1.1 user unknown", "5.1.1"),
        (550, "550-5.1.1 The email account\n550-5.1.1 does not exist\n550 5.1.1 bye", "5.1.1"),
        (550, "user unknown", "5.0.0"),
        (550, "", "5.0.0"),
        (451, "4.7.1 greylisted", "4.7.1"),
        (451, "try again later", "4.0.0"),
        (250, "2.6.0 queued", "2.6.0"),
        (250, "ok", "2.0.0"),
        (556, "5.1.10 Recipient address has null MX", "5.1.10"),
        (550, "4.2.2 mailbox full", "5.2.2"),  # the reply code decides the class
        (450, "5.1.1 unknown", "4.1.1"),
        (552, "5.5.3 Too many recipients", "4.5.3"),
        (550, "Postfix 5.4.13 says no", "5.0.0"),  # not at the start: not a status code
        (550, "5.1.1234 bad", "5.0.0"),
        (550, "5.1.1.2 bad", "5.0.0"),
        (550, "5.001.01 padded", "5.1.1"),
        (354, "start input", "4.0.0"),
    ],
)
def test_enhanced_status(code: int, message: str, expected: str) -> None:
    assert enhanced_status(code, message) == expected
