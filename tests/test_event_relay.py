"""Change events between processes through Redis: the codec, and relays on a real Redis.

Redis is expected at POSTERN_TEST_REDIS_URL (default redis://127.0.0.1:6379/15). Without
one, the Redis tests skip on a developer's machine and fail in CI (CI has one). Each
test uses a channel of its own."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import pytest
import redis.asyncio as redis
from redis.exceptions import RedisError

from postern.serve import event_relay
from postern.serve.event_relay import (
    EVENT_TYPES,
    MAX_BUFFERED,
    MAX_TEXT,
    MAX_UIDS,
    TARGET_PAYLOAD_BYTES,
    MalformedPayload,
    RedisEventRelay,
    decode_message,
    encode_message,
    event_from_wire,
    event_to_wire,
)
from postern.events import (
    CredentialsChanged,
    Event,
    EventsLost,
    FolderCreated,
    FolderDeleted,
    FolderRenamed,
    MessageAdded,
    MessagesChanged,
    MessagesExpunged,
    RulesChanged,
    UserDeleted,
    UserLoggedOut,
)

REDIS_URL = os.environ.get("POSTERN_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
# Only a deadline against hanging: every wait ends as soon as its condition holds.
PATIENCE_S = 30.0

SAMPLES: list[Event] = [
    MessageAdded("u1", "f1", uid=7, modseq=12),
    MessagesChanged("u1", "f1", uids=(1, 2, 3), modseq=2**63 - 1),
    MessagesChanged("u1", "f1", uids=(), modseq=0),
    MessagesExpunged("u1", "f1", uids=(4, 5), modseq=13),
    FolderCreated("u1", "f2", path="Archive/2026 — été"),
    FolderRenamed("u1", "f2", old_path="Archive/2026 — été", path='Old/"quoted"\\back\nline'),
    FolderDeleted("u1", "f2", path="Old"),
    UserDeleted("u1"),
    UserLoggedOut("u1"),
    UserLoggedOut("u1", "Password changed"),
    CredentialsChanged("u1", "2FA enabled"),
    EventsLost("u1"),
    RulesChanged("u1"),
]


# -- the codec ---------------------------------------------------------------------------


def test_the_samples_cover_every_event_type() -> None:
    assert {type(e).__name__ for e in SAMPLES} == set(EVENT_TYPES)
    assert "Event" not in EVENT_TYPES


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_every_event_type_round_trips(event: Event) -> None:
    message = decode_message(encode_message("origin", event_to_wire(event)))
    assert message.events == [event]
    assert type(message.events[0]) is type(event)
    assert (message.origin, message.gap, message.rejected) == ("origin", False, 0)


def test_a_message_keeps_its_events_in_order_and_its_gap_mark() -> None:
    parts = [part for event in SAMPLES for part in event_to_wire(event)]
    message = decode_message(encode_message("a" * 64, parts, gap=True))
    assert message.events == SAMPLES
    assert message.gap is True
    assert decode_message(encode_message("o", [], gap=True)).events == []


def test_an_event_with_too_many_uids_goes_as_several() -> None:
    uids = tuple(range(1, 2 * MAX_UIDS + 6))
    event = MessagesExpunged("u1", "f1", uids=uids, modseq=99)
    parts = event_to_wire(event)
    assert len(parts) == 3
    decoded = [event_from_wire(orjson.loads(part)) for part in parts]
    assert all(isinstance(d, MessagesExpunged) and d.modseq == 99 and d.folder_id == "f1" for d in decoded)
    assert tuple(uid for d in decoded for uid in d.uids) == uids  # type: ignore[attr-defined]


def test_an_event_beyond_the_limits_is_refused_on_the_way_out() -> None:
    with pytest.raises(MalformedPayload):
        event_to_wire(FolderCreated("u1", "f1", path="x" * (MAX_TEXT + 1)))
    with pytest.raises(MalformedPayload):
        event_to_wire(MessageAdded("u1", "f1", uid=-1, modseq=1))
    with pytest.raises(MalformedPayload):
        event_to_wire(Event("u1"))  # the base class is no event of its own


GOOD = {"type": "MessageAdded", "user_id": "u", "folder_id": "f", "uid": 1, "modseq": 1}


def _message(*events: Any, **extra: Any) -> bytes:
    return orjson.dumps({"o": "elsewhere", "e": list(events), **extra})


MALFORMED_MESSAGES = {
    "empty": b"",
    "not JSON": b"{not json",
    "invalid UTF-8": b'{"o":"\xff\xfe","e":[]}',
    "a list": b"[]",
    "null": b"null",
    "a string": b'"hello"',
    "a number": b"12",
    "no events": orjson.dumps({"o": "x"}),
    "no origin": orjson.dumps({"e": [GOOD]}),
    "origin not a string": orjson.dumps({"o": 5, "e": [GOOD]}),
    "empty origin": orjson.dumps({"o": "", "e": [GOOD]}),
    "origin too long": orjson.dumps({"o": "x" * 65, "e": [GOOD]}),
    "gap not a boolean": orjson.dumps({"o": "x", "g": 1, "e": [GOOD]}),
    "events not a list": orjson.dumps({"o": "x", "e": GOOD}),
    "unknown key": orjson.dumps({"o": "x", "e": [GOOD], "__class__": "os.system"}),
    "too big": orjson.dumps({"o": "x", "e": [{**GOOD, "folder_id": "f" * 100} for _ in range(12_000)]}),
    "deeply nested": b"[" * 100_000 + b"]" * 100_000,
    "NaN": b'{"o":"x","e":[{"type":"MessageAdded","user_id":"u","folder_id":"f","uid":NaN,"modseq":1}]}',
    "pickle": b"\x80\x04\x95\x1d\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x94\x8c\x06system\x94\x93\x94.",
}


@pytest.mark.parametrize("payload", MALFORMED_MESSAGES.values(), ids=MALFORMED_MESSAGES.keys())
def test_a_malformed_message_is_refused(payload: bytes) -> None:
    with pytest.raises(MalformedPayload):
        decode_message(payload)


MALFORMED_EVENTS = {
    "not an object": ["MessageAdded", "u"],
    "no type": {k: v for k, v in GOOD.items() if k != "type"},
    "unknown type": {**GOOD, "type": "MessageExploded"},
    "the base class": {"type": "Event", "user_id": "u"},
    "type not a string": {**GOOD, "type": ["MessageAdded"]},
    "missing field": {k: v for k, v in GOOD.items() if k != "uid"},
    "missing user": {k: v for k, v in GOOD.items() if k != "user_id"},
    "unknown field": {**GOOD, "flags": ["\\Seen"]},
    "uid as a string": {**GOOD, "uid": "1"},
    "uid as a float": {**GOOD, "uid": 1.0},
    "uid as a boolean": {**GOOD, "uid": True},
    "negative uid": {**GOOD, "uid": -1},
    "uid too big": {**GOOD, "uid": 2**63},
    "user as a number": {**GOOD, "user_id": 1},
    "user as null": {**GOOD, "user_id": None},
    "huge string": {**GOOD, "folder_id": "f" * (MAX_TEXT + 1)},
    "uids not a list": {"type": "MessagesExpunged", "user_id": "u", "folder_id": "f", "uids": 3, "modseq": 1},
    "uids of strings": {"type": "MessagesExpunged", "user_id": "u", "folder_id": "f", "uids": ["3"], "modseq": 1},
    "too many uids": {"type": "MessagesExpunged", "user_id": "u", "folder_id": "f", "uids": [1] * (MAX_UIDS + 1), "modseq": 1},
    "reason not a string": {"type": "UserLoggedOut", "user_id": "u", "reason": {"a": 1}},
}


@pytest.mark.parametrize("item", MALFORMED_EVENTS.values(), ids=MALFORMED_EVENTS.keys())
def test_a_malformed_event_is_dropped_and_the_others_kept(item: Any) -> None:
    with pytest.raises(MalformedPayload):
        event_from_wire(item)
    message = decode_message(_message(GOOD, item, GOOD))
    assert message.events == [MessageAdded("u", "f", 1, 1), MessageAdded("u", "f", 1, 1)]
    assert message.rejected == 1
    assert message.first_rejection


def test_an_integer_beyond_64_bits_is_refused() -> None:
    # orjson reads it as a float; the event goes, the message stays.
    payload = b'{"o":"x","e":[{"type":"MessageAdded","user_id":"u","folder_id":"f","uid":' + b"9" * 40 + b',"modseq":1}]}'
    message = decode_message(payload)
    assert (message.events, message.rejected) == ([], 1)


def test_a_field_with_a_default_may_be_left_out() -> None:
    assert event_from_wire({"type": "UserLoggedOut", "user_id": "u"}) == UserLoggedOut("u")
    assert event_from_wire({"type": "UserLoggedOut", "user_id": "u", "reason": None}) == UserLoggedOut("u")


# -- relays on a real Redis ----------------------------------------------------------------


async def _require_redis() -> None:
    client = redis.from_url(REDIS_URL)
    try:
        await asyncio.wait_for(client.ping(), 3)
    except (RedisError, OSError) as error:
        message = f"Redis is not reachable at {REDIS_URL}: {error}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    finally:
        await client.aclose()


class Recorder:
    """What a relay handed over: the events delivered, and how many gaps it reported."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.gaps = 0

    def deliver(self, events: list[Event]) -> None:
        self.events.extend(events)

    def on_gap(self) -> None:
        self.gaps += 1


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(PATIENCE_S):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.fixture
async def channel() -> str:
    await _require_redis()
    return f"postern-test:events:{secrets.token_hex(6)}"


@pytest.fixture
async def relays(channel: str) -> AsyncIterator[Callable[..., Any]]:
    """Makes started relays (closed after the test): ``await make(url=...)``."""
    made: list[RedisEventRelay] = []

    async def make(url: str = REDIS_URL) -> tuple[RedisEventRelay, Recorder]:
        recorder = Recorder()
        relay = RedisEventRelay(url, recorder.deliver, recorder.on_gap, channel=channel)
        await relay.start()
        made.append(relay)
        return relay, recorder

    yield make
    for relay in made:
        await relay.close()


@pytest.fixture
async def admin() -> AsyncIterator[redis.Redis]:
    await _require_redis()
    client = redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


def _added(n: int, user: str = "u1") -> list[Event]:
    return [MessageAdded(user, "f1", uid=i, modseq=i) for i in range(1, n + 1)]


async def test_events_reach_the_other_relays_in_order_and_not_their_own(relays: Any) -> None:
    a, from_a = await relays()
    b, from_b = await relays()
    _c, from_c = await relays()
    sent = [*SAMPLES, *_added(50)]
    a.publish(sent[:3])
    a.publish(sent[3:10])
    await asyncio.sleep(0)
    a.publish(sent[10:])
    await until(lambda: len(from_b.events) == len(sent) and len(from_c.events) == len(sent))
    assert from_b.events == sent
    assert from_c.events == sent
    # B answers; by the time A has B's event it has seen its own messages go by, and
    # delivered none of them.
    b.publish([UserDeleted("u2")])
    await until(lambda: len(from_a.events) == 1)
    assert from_a.events == [UserDeleted("u2")]
    await until(lambda: len(from_c.events) == len(sent) + 1)
    assert from_b.events == sent
    assert (from_a.gaps, from_b.gaps, from_c.gaps) == (0, 0, 0)


async def test_a_burst_goes_as_one_message(relays: Any, admin: redis.Redis, channel: str) -> None:
    async with admin.pubsub() as watcher:
        await watcher.subscribe(channel)
        await watcher.get_message(timeout=5)  # the subscription's confirmation
        a, _ = await relays()
        for start in range(0, 100, 20):
            a.publish(_added(100)[start : start + 20])
        message = await watcher.get_message(ignore_subscribe_messages=True, timeout=PATIENCE_S)
        assert message is not None
        decoded = decode_message(message["data"])
        assert decoded.origin == a.origin
        assert decoded.events == _added(100)


async def test_a_big_burst_is_split_into_bounded_messages(relays: Any, admin: redis.Redis, channel: str) -> None:
    async with admin.pubsub() as watcher:
        await watcher.subscribe(channel)
        await watcher.get_message(timeout=5)
        a, _ = await relays()
        _b, from_b = await relays()
        burst: list[Event] = [
            MessagesChanged("u1", "f1", uids=tuple(range(1, 3 * MAX_UIDS)), modseq=5),
            *[FolderCreated("u1", f"f{i}", path=f"Folder {i} " + "x" * 900) for i in range(600)],
        ]
        a.publish(burst)
        await until(lambda: len(from_b.events) >= 603)
        sizes = []
        while (message := await watcher.get_message(ignore_subscribe_messages=True, timeout=1)) is not None:
            sizes.append(len(message["data"]))
        assert len(sizes) > 1
        assert max(sizes) <= TARGET_PAYLOAD_BYTES
        assert from_b.events[3:] == burst[1:]
        assert tuple(uid for e in from_b.events[:3] for uid in e.uids) == burst[0].uids  # type: ignore[attr-defined]


async def test_hostile_payloads_are_dropped_and_the_relay_carries_on(relays: Any, admin: redis.Redis, channel: str) -> None:
    b, from_b = await relays()
    for payload in [*MALFORMED_MESSAGES.values(), *(_message(item) for item in MALFORMED_EVENTS.values())]:
        await admin.publish(channel, payload)
    # Even a message claiming B's own origin but malformed goes nowhere.
    await admin.publish(channel, b'{"o":"' + b.origin.encode() + b'","e":[{"type":"Nope"}]}')
    await admin.publish(channel, _message(GOOD, {"type": "Nope"}, GOOD))
    await until(lambda: len(from_b.events) == 2)
    assert from_b.events == [MessageAdded("u", "f", 1, 1), MessageAdded("u", "f", 1, 1)]
    # A sender that dropped events says so, and B's sessions resynchronise.
    await admin.publish(channel, _message(g=True))
    await until(lambda: from_b.gaps == 1)
    a, _ = await relays()
    a.publish([UserDeleted("u3")])
    await until(lambda: len(from_b.events) == 3)
    assert from_b.events[-1] == UserDeleted("u3")
    assert from_b.gaps == 1


async def test_an_event_the_relay_cannot_carry_is_left_out(relays: Any) -> None:
    a, _ = await relays()
    _b, from_b = await relays()
    # A bare Event (like the signals between the parts of one process) is no change:
    # it is left out, and nobody needs to resynchronise.
    a.publish([UserDeleted("u1"), Event("u1"), UserDeleted("u2")])
    await until(lambda: len(from_b.events) == 2)
    assert from_b.events == [UserDeleted("u1"), UserDeleted("u2")]
    assert from_b.gaps == 0
    # A change that breaks the wire's limits is lost on the way: B resynchronises.
    a.publish([FolderCreated("u1", "f", path="x" * (MAX_TEXT + 1)), UserDeleted("u3")])
    await until(lambda: len(from_b.events) == 3)
    assert from_b.events[-1] == UserDeleted("u3")
    assert from_b.gaps == 1


async def test_a_failing_deliver_does_not_stop_the_relay(relays: Any, channel: str) -> None:
    got: list[Event] = []

    def deliver(events: list[Event]) -> None:
        got.extend(events)
        if len(got) == 1:
            raise RuntimeError("a subscriber's bug")

    a, _ = await relays()
    b = RedisEventRelay(REDIS_URL, deliver, lambda: None, channel=channel)
    await b.start()
    try:
        a.publish([UserDeleted("u1")])
        await until(lambda: len(got) == 1)
        a.publish([UserDeleted("u2")])
        await until(lambda: len(got) == 2)
        assert got == [UserDeleted("u1"), UserDeleted("u2")]
    finally:
        await b.close()


async def _kill_client(admin: redis.Redis, name: str) -> None:
    clients = [c for c in await admin.client_list() if c.get("name") == name]
    assert len(clients) == 1, f"expected one Redis client named {name}"
    await admin.execute_command("CLIENT", "KILL", "ID", clients[0]["id"])


async def test_a_lost_subscription_comes_back_and_reports_one_gap(relays: Any, admin: redis.Redis) -> None:
    a, from_a = await relays()
    b, from_b = await relays()
    a.publish(_added(3))
    await until(lambda: len(from_b.events) == 3)
    await _kill_client(admin, f"{b.client_name}:sub")
    await until(lambda: from_b.gaps == 1)
    # Subscribed again: what A publishes now reaches B.
    a.publish([UserDeleted("u9")])
    await until(lambda: len(from_b.events) == 4)
    assert from_b.events[-1] == UserDeleted("u9")
    assert from_b.gaps == 1
    assert from_a.gaps == 0


async def test_a_lost_publishing_connection_is_replaced(relays: Any, admin: redis.Redis) -> None:
    a, _ = await relays()
    _b, from_b = await relays()
    a.publish(_added(1))
    await until(lambda: len(from_b.events) == 1)
    await _kill_client(admin, f"{a.client_name}:pub")
    a.publish([UserDeleted("u1")])
    await until(lambda: len(from_b.events) >= 2)
    # The round in flight when the connection broke may come twice, never not at all.
    assert set(from_b.events[1:]) == {UserDeleted("u1")}
    assert from_b.gaps == 0


async def test_an_unreachable_redis_fails_the_start() -> None:
    relay = RedisEventRelay("redis://127.0.0.1:1/15", lambda events: None, lambda: None)
    with pytest.raises((RedisError, OSError)):
        await relay.start()
    await relay.close()


class Proxy:
    """A TCP relay to Redis that the test can cut and restore, to make Redis
    unreachable for one relay only."""

    def __init__(self, upstream_host: str, upstream_port: int):
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        # Connections made before the last freeze() pass nothing on (a peer gone
        # without a word); later ones work.
        self.generation = 0

    def freeze(self) -> None:
        self.generation += 1

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()
        await self.server.wait_closed()
        self.server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        generation = self.generation
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self.writers.update((writer, up_writer))

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await source.read(65536):
                    if generation == self.generation:
                        sink.write(data)
                        await sink.drain()
            sink.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.fixture
async def proxy() -> AsyncIterator[Proxy]:
    parts = urlsplit(REDIS_URL)
    proxy = Proxy(parts.hostname or "127.0.0.1", parts.port or 6379)
    await proxy.start()
    try:
        yield proxy
    finally:
        if proxy.server is not None:
            await proxy.stop()


def _through(proxy: Proxy) -> str:
    parts = urlsplit(REDIS_URL)
    userinfo = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{userinfo + '@' if userinfo else ''}127.0.0.1:{proxy.port}"))


async def test_a_silent_subscription_is_taken_for_dead(proxy: Proxy, relays: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(event_relay, "KEEPALIVE_S", 0.5)
    a, _ = await relays()
    _b, from_b = await relays(_through(proxy))
    a.publish([UserDeleted("u1")])
    await until(lambda: len(from_b.events) == 1)
    # B's connection stays open but nothing comes through, PONGs included: B gives
    # up on it, subscribes anew and reports the gap.
    proxy.freeze()
    await until(lambda: from_b.gaps >= 1)
    a.publish([UserDeleted("u2")])
    await until(lambda: len(from_b.events) == 2)
    assert from_b.events == [UserDeleted("u1"), UserDeleted("u2")]


async def test_publishing_while_redis_is_unreachable_neither_blocks_nor_grows(proxy: Proxy, relays: Any) -> None:
    via_proxy = _through(proxy)
    a, from_a = await relays(via_proxy)
    _b, from_b = await relays()
    await proxy.stop()
    sent = _added(MAX_BUFFERED + 5_000)
    for start in range(0, len(sent), 1000):
        a.publish(sent[start : start + 1000])  # returns at once, Redis or not
        assert a.buffered <= MAX_BUFFERED
    assert a.buffered == MAX_BUFFERED
    await asyncio.sleep(0.2)  # the sender meets the cut; nothing leaves the buffer
    assert a.buffered == MAX_BUFFERED
    await proxy.start()
    # A sends what it kept, marked: B resynchronises once for what A dropped.
    await until(lambda: len(from_b.events) == MAX_BUFFERED and from_b.gaps == 1)
    assert from_b.events == sent[:MAX_BUFFERED]
    # A's own subscription broke too: it comes back and says so.
    await until(lambda: from_a.gaps == 1)
    a.publish([UserDeleted("u7")])
    await until(lambda: len(from_b.events) == MAX_BUFFERED + 1)
    assert from_b.events[-1] == UserDeleted("u7")
    assert from_b.gaps == 1
    await until(lambda: a.buffered == 0)


async def test_publish_after_close_is_ignored(relays: Any) -> None:
    a, _ = await relays()
    await a.close()
    a.publish(_added(5))
    assert a.buffered == 0



async def test_the_bus_lag_is_measured_on_the_relays_own_messages(relays: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each message a relay sends comes back to its own subscription, in order: that
    pairing gives the lag from publish() to the message on the bus (the metric
    postern_event_bus_lag_seconds), with no time stamp on the wire."""
    from postern.telemetry import metrics

    observed: list[float] = []

    class Lag:
        def observe(self, value: float) -> None:
            observed.append(value)

    monkeypatch.setattr(metrics.M, "event_bus_lag", Lag())
    a, _ = await relays()
    _b, from_b = await relays()
    before = time.monotonic()
    a.publish(_added(3))
    await until(lambda: len(from_b.events) == 3 and len(observed) == 1)
    a.publish(_added(2, user="u2"))
    await until(lambda: len(from_b.events) == 5 and len(observed) == 2)
    elapsed = time.monotonic() - before
    assert all(0 <= value <= elapsed for value in observed)
