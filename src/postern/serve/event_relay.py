"""Change events between ``postern serve`` processes, through Redis pub/sub.

Several processes (on several machines sharing the database and the blob store) each
have their own :class:`~postern.events.EventBus`. With ``POSTERN_REDIS_URL`` set, each
process publishes its events on one Redis channel and delivers the others' events to
its own bus, so an IMAP session sees a change made through any process.

Redis may be shared with other software, so a payload is data, never code: JSON,
each event as its type name and its fields, checked field by field on the way in and
dropped (with a warning, now and then) when anything is off.

Pub/sub keeps nothing for a subscriber that is away. When the subscription drops, the
relay reconnects with backoff and then calls ``on_gap``: events may have been missed,
and every session must resynchronise from the store. A publisher that had to drop
events (its buffer filled while Redis was unreachable) says so in its next message, and
its receivers call ``on_gap`` too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import secrets
import time
import types
import typing
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from redis.asyncio import ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from postern import events as event_types
from postern.events import Event
from postern.telemetry import metrics

log = logging.getLogger("postern.serve.event_relay")

# Limits of the wire format, checked on both sides. Folder paths and logout reasons
# are at most 1024 characters; ids are far shorter.
MAX_TEXT = 4096
# A MessagesChanged or MessagesExpunged over more UIDs goes out as several events.
MAX_UIDS = 10_000
MAX_INT = 2**63 - 1
MAX_ORIGIN = 64
# The receiver refuses anything bigger before parsing it; the sender aims lower.
MAX_PAYLOAD_BYTES = 1 << 20
TARGET_PAYLOAD_BYTES = 256 << 10
# Messages sent in one round trip (pipelined PUBLISHes).
MESSAGES_PER_ROUND = 16

# Events kept while the publishing connection is down; beyond, they are dropped and the
# next message tells the receivers to resynchronise.
MAX_BUFFERED = 10_000
# Sent messages waiting to come back, for the lag metric (older ones are forgotten).
MAX_IN_FLIGHT = 1_000
CONNECT_TIMEOUT_S = 5.0
PUBLISH_TIMEOUT_S = 10.0
# A subscription silent this long is PINGed; without an answer within as long again
# the connection is taken for dead (a peer that vanished sends no FIN).
KEEPALIVE_S = 10.0
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 10.0
# At most one warning about dropped payloads per this many seconds.
WARN_EVERY_S = 60.0
# How long close() lets the sender empty its buffer.
CLOSE_FLUSH_S = 2.0


class MalformedPayload(ValueError):
    """A relay message or event that is not what this version of postern sends."""


# -- the codec --------------------------------------------------------------------------

_Check = Callable[[Any], Any]


def _text(value: Any) -> str:
    if type(value) is not str:
        raise MalformedPayload(f"expected a string, got {type(value).__name__}")
    if len(value) > MAX_TEXT:
        raise MalformedPayload(f"string of {len(value)} characters (at most {MAX_TEXT})")
    return value


def _integer(value: Any) -> int:
    if type(value) is not int:
        raise MalformedPayload(f"expected an integer, got {type(value).__name__}")
    if not 0 <= value <= MAX_INT:
        raise MalformedPayload(f"integer out of range: {value}")
    return value


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _integers(value: Any) -> tuple[int, ...]:
    if type(value) not in (list, tuple):
        raise MalformedPayload(f"expected a list of integers, got {type(value).__name__}")
    if len(value) > MAX_UIDS:
        raise MalformedPayload(f"list of {len(value)} integers (at most {MAX_UIDS})")
    return tuple(_integer(item) for item in value)


def _check_for(hint: Any, where: str) -> _Check:
    if hint is str:
        return _text
    if hint is int:
        return _integer
    if hint == tuple[int, ...]:
        return _integers
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and set(typing.get_args(hint)) == {str, type(None)}:
        return _optional_text
    raise TypeError(f"{where}: the event relay cannot carry a field of type {hint!r}; teach it (event_relay._check_for)")


@dataclasses.dataclass(frozen=True, slots=True)
class _EventType:
    cls: type[Event]
    checks: dict[str, _Check]
    required: frozenset[str]
    # The field of UIDs that a big event is split on, if it has one.
    split_field: str | None


def _event_types() -> dict[str, _EventType]:
    """Every Event subclass of postern.events, found rather than listed: a new event
    type travels without anyone remembering this module (or fails here, at import,
    if it has a kind of field the codec does not know)."""
    found: dict[str, _EventType] = {}
    for cls in vars(event_types).values():
        if not (isinstance(cls, type) and issubclass(cls, Event) and cls is not Event):
            continue
        hints = typing.get_type_hints(cls)
        checks: dict[str, _Check] = {}
        required: set[str] = set()
        split_field = None
        for field in dataclasses.fields(cls):
            if field.name == "type":
                raise TypeError(f"{cls.__name__}: a field named 'type' would clash with the relay's type tag")
            checks[field.name] = _check_for(hints[field.name], f"{cls.__name__}.{field.name}")
            if checks[field.name] is _integers:
                split_field = field.name
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                required.add(field.name)
        found[cls.__name__] = _EventType(cls, checks, frozenset(required), split_field)
    return found


EVENT_TYPES: dict[str, _EventType] = _event_types()


def event_to_wire(event: Event) -> list[bytes]:
    """The event as JSON objects: one, or several when its UIDs are too many for one.

    Raises :class:`MalformedPayload` when the event breaks the wire format's limits
    (the receivers would refuse it)."""
    kind = EVENT_TYPES.get(type(event).__name__)
    if kind is None or kind.cls is not type(event):
        raise MalformedPayload(f"not an event the relay knows: {type(event).__name__}")
    parts = [event]
    if kind.split_field is not None:
        uids = getattr(event, kind.split_field)
        if len(uids) > MAX_UIDS:
            parts = [
                dataclasses.replace(event, **{kind.split_field: tuple(uids[i : i + MAX_UIDS])})  # type: ignore[arg-type]
                for i in range(0, len(uids), MAX_UIDS)
            ]
    wire = []
    for part in parts:
        fields = {name: check(getattr(part, name)) for name, check in kind.checks.items()}
        wire.append(orjson.dumps({"type": kind.cls.__name__, **fields}))
    return wire


def event_from_wire(obj: Any) -> Event:
    """The event a decoded JSON object describes, every field checked; raises
    :class:`MalformedPayload` otherwise."""
    if type(obj) is not dict:
        raise MalformedPayload(f"an event must be an object, not {type(obj).__name__}")
    name = obj.get("type")
    kind = EVENT_TYPES.get(name) if type(name) is str else None
    if kind is None:
        raise MalformedPayload(f"unknown event type {str(name)[:64]!r}")
    values: dict[str, Any] = {}
    for key, value in obj.items():
        if key == "type":
            continue
        check = kind.checks.get(key)
        if check is None:
            raise MalformedPayload(f"{kind.cls.__name__} has no field {str(key)[:64]!r}")
        try:
            values[key] = check(value)
        except MalformedPayload as error:
            raise MalformedPayload(f"{kind.cls.__name__}.{key}: {error}") from None
    missing = kind.required - values.keys()
    if missing:
        raise MalformedPayload(f"{kind.cls.__name__} without {', '.join(sorted(missing))}")
    return kind.cls(**values)


def encode_message(origin: str, parts: Sequence[bytes], *, gap: bool = False) -> bytes:
    """One relay message: ``{"o": origin, "e": [events...]}``, with ``"g": true`` when
    the sender dropped events before these."""
    head = orjson.dumps({"o": origin, "g": True} if gap else {"o": origin})
    return head[:-1] + b',"e":[' + b",".join(parts) + b"]}"


@dataclasses.dataclass(frozen=True, slots=True)
class RelayMessage:
    origin: str
    gap: bool
    events: list[Event]
    # Events of the message that were malformed or of an unknown type, and dropped.
    rejected: int
    first_rejection: str | None


def decode_message(payload: bytes) -> RelayMessage:
    """Parse and check a relay message. A malformed event inside an otherwise good
    message is dropped (counted in ``rejected``) and the others are kept: a newer
    postern may send event types this one does not know. Raises
    :class:`MalformedPayload` when the message itself is malformed."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise MalformedPayload(f"message of {len(payload)} bytes (at most {MAX_PAYLOAD_BYTES})")
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError as error:
        raise MalformedPayload(f"not JSON: {error}") from None
    if type(obj) is not dict:
        raise MalformedPayload(f"a message must be an object, not {type(obj).__name__}")
    origin = obj.get("o")
    if type(origin) is not str or not 0 < len(origin) <= MAX_ORIGIN:
        raise MalformedPayload("a message needs an origin of 1 to 64 characters")
    gap = obj.get("g", False)
    if type(gap) is not bool:
        raise MalformedPayload("a message's gap mark must be true or false")
    items = obj.get("e")
    if type(items) is not list:
        raise MalformedPayload("a message needs a list of events")
    if obj.keys() - {"o", "g", "e"}:
        raise MalformedPayload(f"unknown message keys: {sorted(obj.keys() - {'o', 'g', 'e'})[:5]}")
    decoded: list[Event] = []
    rejected = 0
    first_rejection = None
    for item in items:
        try:
            decoded.append(event_from_wire(item))
        except MalformedPayload as error:
            rejected += 1
            first_rejection = first_rejection or str(error)
    return RelayMessage(origin, gap, decoded, rejected, first_rejection)


class _Throttled:
    """A warning said once, then at most once per ``every`` seconds, with a count of
    what happened since: a flood of bad payloads must not flood the log."""

    def __init__(self, every: float = WARN_EVERY_S):
        self.every = every
        self.last = -every
        self.suppressed = 0

    def warn(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            self.suppressed += 1
            return
        if self.suppressed:
            message += " (and %d more since the last warning)"
            args = (*args, self.suppressed)
        self.last = now
        self.suppressed = 0
        log.warning(message, *args)


# -- the relay --------------------------------------------------------------------------


class RedisEventRelay:
    """This process's events out to Redis, and the other processes' events in.

    ``deliver`` receives, on the event loop, the events other relays published on the
    channel (never this relay's own). ``on_gap`` is called when events may have been
    missed: after the subscription came back from a lost connection, and when another
    relay says it dropped events. ``publish`` never waits: it buffers (at most
    ``MAX_BUFFERED`` events) and a background task sends each burst as it can, in
    order, in as few PUBLISH commands as the size limit allows."""

    def __init__(
        self,
        url: str,
        deliver: Callable[[list[Event]], None],
        on_gap: Callable[[], None],
        channel: str = "postern:events",
    ):
        self.channel = channel
        self.origin = secrets.token_hex(8)
        # The relay's connections are named "<client_name>:sub" and "<client_name>:pub"
        # (CLIENT LIST shows them).
        self.client_name = f"postern-events:{self.origin}"
        self._deliver = deliver
        self._on_gap = on_gap
        # The URL parsed as redis-py does it (redis://, rediss://, unix://, query
        # options); the relay makes its own connections from it. No automatic retry:
        # redis-py would reconnect and resubscribe silently, hiding a gap.
        pool = ConnectionPool.from_url(
            url,
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=CONNECT_TIMEOUT_S,
        )
        self._connection_class = pool.connection_class
        # Replies are parsed as RESP2 bytes whatever the URL's options say.
        self._connection_kwargs = {**pool.connection_kwargs, "decode_responses": False, "protocol": 2}
        self._own_prefix = encode_message(self.origin, [])[: -len(b',"e":[]}')]
        self._buffer: deque[Event] = deque()
        # When the event at the front of the buffer was published, and when each
        # message sent since was published (its oldest event), in order: Redis hands
        # our own messages back to our subscription in the same order, which gives
        # the bus's lag (publish() to the message on the bus) without a time stamp
        # on the wire.
        self._oldest_published: float | None = None
        self._in_flight: deque[float] = deque(maxlen=MAX_IN_FLIGHT)
        # Events dropped so far, and how many of those a sent message has told of.
        self._drops = 0
        self._drops_told = 0
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._subscriber: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._bad_payloads = _Throttled()

    # -- connections ---------------------------------------------------------------

    async def _connect(self, role: str, socket_timeout: float | None) -> Any:
        connection = self._connection_class(
            **{**self._connection_kwargs, "client_name": f"{self.client_name}:{role}", "socket_timeout": socket_timeout}
        )
        try:
            await connection.connect()
        except BaseException:
            await connection.disconnect(nowait=True)
            raise
        return connection

    async def _subscribe(self) -> Any:
        connection = await self._connect("sub", None)
        try:
            await connection.send_command("SUBSCRIBE", self.channel, check_health=False)
            reply = await connection.read_response(timeout=CONNECT_TIMEOUT_S)
            if not (isinstance(reply, list) and reply and reply[0] == b"subscribe"):
                raise ConnectionError(f"unexpected answer to SUBSCRIBE: {reply!r}"[:200])
        except BaseException:
            await connection.disconnect(nowait=True)
            raise
        return connection

    async def start(self) -> None:
        """Subscribe (raising if Redis cannot be reached), then relay in the background."""
        self._subscriber = await self._subscribe()
        self._tasks = [
            asyncio.create_task(self._receive_forever(), name="event-relay-receive"),
            asyncio.create_task(self._send_forever(), name="event-relay-send"),
        ]
        log.info("event relay: subscribed to Redis channel %s as %s", self.channel, self.origin)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._tasks and self._buffer:
            # Let the sender pass on what this process did last, briefly.
            try:
                await asyncio.wait_for(self._drained.wait(), CLOSE_FLUSH_S)
            except TimeoutError:
                log.warning("event relay: closing with %d events not sent", len(self._buffer))
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("event relay: a task failed")
        self._tasks = []
        if self._subscriber is not None:
            await self._subscriber.disconnect(nowait=True)
            self._subscriber = None
        self._buffer.clear()

    # -- receiving -----------------------------------------------------------------

    async def _receive_forever(self) -> None:
        while True:
            try:
                await self._receive(self._subscriber)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as error:
                log.warning("event relay: lost the Redis subscription (%s); reconnecting", error or type(error).__name__)
            except Exception:
                log.exception("event relay: the subscription failed; reconnecting")
            await self._subscriber.disconnect(nowait=True)
            self._subscriber = await self._resubscribe()
            self._in_flight.clear()  # messages of the gap never come back: no pairing
            log.warning("event relay: subscribed again; every session resynchronises (events may have been missed)")
            self._call(self._on_gap)

    async def _resubscribe(self) -> Any:
        delay = BACKOFF_FIRST_S
        attempts = 0
        while True:
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            attempts += 1
            try:
                return await self._subscribe()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as error:
                if attempts == 1 or attempts % 10 == 0:
                    log.warning("event relay: cannot subscribe to Redis (attempt %d: %s); retrying", attempts, error)
            delay = min(delay * 2, BACKOFF_MAX_S)

    async def _receive(self, connection: Any) -> None:
        """Read the subscription until the connection fails (raising why)."""
        ping_sent = False
        while True:
            reply = await connection.read_response(timeout=KEEPALIVE_S)
            if reply is None:
                if ping_sent:
                    raise ConnectionError(f"no answer from Redis in {2 * KEEPALIVE_S:.0f}s")
                await connection.send_command("PING", check_health=False)
                ping_sent = True
                continue
            ping_sent = False
            if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
                self._on_message(reply[2])

    def _on_message(self, payload: Any) -> None:
        if not isinstance(payload, bytes):
            self._bad_payloads.warn("event relay: dropped a message that is not bytes on %s", self.channel)
            return
        if payload.startswith(self._own_prefix):
            # This relay's own message (encode_message puts the origin first): only
            # the bus's lag to measure.
            if self._in_flight:
                metrics.M.event_bus_lag.observe(time.monotonic() - self._in_flight.popleft())
            return
        try:
            message = decode_message(payload)
        except MalformedPayload as error:
            self._bad_payloads.warn("event relay: dropped a malformed message on %s: %s", self.channel, error)
            return
        if message.rejected:
            self._bad_payloads.warn(
                "event relay: dropped %d malformed or unknown events from %s: %s",
                message.rejected,
                message.origin,
                message.first_rejection,
            )
        if message.gap:
            log.warning("event relay: %s dropped events; every session resynchronises", message.origin)
            self._call(self._on_gap)
        if message.events:
            self._call(self._deliver, message.events)

    @staticmethod
    def _call(callback: Callable[..., None], *args: Any) -> None:
        # The relay outlives a failing callback: the next events still come.
        try:
            callback(*args)
        except Exception:
            log.exception("event relay: %s failed", getattr(callback, "__qualname__", callback))

    # -- sending -------------------------------------------------------------------

    def publish(self, events: Sequence[Event]) -> None:
        """Queue these events for the other processes; never waits. Call it on the
        event loop."""
        if self._closed or not events:
            return
        room = MAX_BUFFERED - len(self._buffer)
        if room < len(events):
            if self._drops == self._drops_told:
                log.warning("event relay: buffer full (%d events); dropping events until Redis answers", MAX_BUFFERED)
            self._drops += len(events) - max(room, 0)
            events = events[: max(room, 0)]
        if not self._buffer and events:
            self._oldest_published = time.monotonic()
        self._buffer.extend(events)
        if self._buffer:
            self._drained.clear()
            self._wake.set()

    @property
    def buffered(self) -> int:
        """Events waiting to be sent."""
        return len(self._buffer)

    def _next_round(self) -> tuple[list[bytes], int]:
        """Messages for the events at the front of the buffer (at most
        MESSAGES_PER_ROUND of them), and how many events they carry. An event the
        wire format cannot carry is dropped here, and counted as such. The first
        message is marked when events were dropped since the last mark was sent:
        the receivers resynchronise, which covers the dropped ones (their changes
        were committed before they were published)."""
        batches: list[list[bytes]] = [[]]
        size = 0
        taken = 0
        for event in self._buffer:
            if len(batches) > MESSAGES_PER_ROUND:
                break
            try:
                wire = event_to_wire(event)
            except MalformedPayload as error:
                log.error("event relay: cannot send %s: %s", type(event).__name__, error)
                # A change the others will not hear of, unless it is no change at all
                # but a signal between the parts of one process.
                if type(event).__name__ in EVENT_TYPES:
                    self._drops += 1
                taken += 1
                continue
            for part in wire:
                if batches[-1] and size + len(part) > TARGET_PAYLOAD_BYTES:
                    batches.append([])
                    size = 0
                batches[-1].append(part)
                size += len(part) + 1
            taken += 1
        gap = self._drops > self._drops_told
        return [encode_message(self.origin, parts, gap=gap and i == 0) for i, parts in enumerate(batches)], taken

    async def _send_forever(self) -> None:
        connection: Any = None
        delay = BACKOFF_FIRST_S
        failures = 0
        try:
            while True:
                if not self._buffer and self._drops == self._drops_told:
                    self._drained.set()
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                if connection is None:
                    try:
                        connection = await self._connect("pub", PUBLISH_TIMEOUT_S)
                    except asyncio.CancelledError:
                        raise
                    except (RedisError, OSError) as error:
                        failures += 1
                        if failures == 1 or failures % 10 == 0:
                            log.warning("event relay: cannot connect to Redis to publish (attempt %d: %s); retrying", failures, error)
                        await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                        delay = min(delay * 2, BACKOFF_MAX_S)
                        continue
                    if failures:
                        log.warning("event relay: publishing again after %d failed attempts", failures)
                    failures = 0
                    delay = BACKOFF_FIRST_S
                messages, taken = self._next_round()
                drops = self._drops
                try:
                    await connection.send_packed_command(
                        connection.pack_commands([("PUBLISH", self.channel, m) for m in messages]), check_health=False
                    )
                    for _ in messages:
                        await connection.read_response()
                except asyncio.CancelledError:
                    raise
                except (RedisError, OSError) as error:
                    # The round is sent again on a new connection: a receiver may get
                    # some events twice, which sessions take as they take any event
                    # (a hint to look at the store), rather than never.
                    log.warning("event relay: publishing failed (%s); reconnecting", error or type(error).__name__)
                    await connection.disconnect(nowait=True)
                    connection = None
                    self._in_flight.clear()  # part of the round may come back twice
                    continue
                for _ in range(taken):
                    self._buffer.popleft()
                # Each message counts from when its round's oldest event was published.
                published = self._oldest_published or time.monotonic()
                self._in_flight.extend(published for _ in messages)
                self._oldest_published = time.monotonic() if self._buffer else None
                # Events dropped while the round was in flight get a mark of their own.
                self._drops_told = drops
        finally:
            if connection is not None:
                await connection.disconnect(nowait=True)
