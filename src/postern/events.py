"""Typed domain events and the in-process bus every door follows.

Services publish events after their transaction commits; IMAP IDLE, POP3 and the
update stream subscribe per user. A Redis-backed bus (for many processes) implements
the same two methods.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Event:
    user_id: str


@dataclass(frozen=True, slots=True)
class MessageAdded(Event):
    folder_id: str
    uid: int
    modseq: int


@dataclass(frozen=True, slots=True)
class MessagesChanged(Event):
    """Flags or expiry of these messages changed; their MODSEQ is now ``modseq``."""

    folder_id: str
    uids: tuple[int, ...]
    modseq: int


@dataclass(frozen=True, slots=True)
class MessagesExpunged(Event):
    folder_id: str
    uids: tuple[int, ...]
    modseq: int


@dataclass(frozen=True, slots=True)
class FolderCreated(Event):
    folder_id: str
    path: str


@dataclass(frozen=True, slots=True)
class FolderRenamed(Event):
    folder_id: str
    old_path: str
    path: str


@dataclass(frozen=True, slots=True)
class FolderDeleted(Event):
    folder_id: str
    path: str


@dataclass(frozen=True, slots=True)
class UserDeleted(Event):
    pass


@dataclass(frozen=True, slots=True)
class UserLoggedOut(Event):
    """The operator ended the user's sessions (``PUT /users/{user}/logout``), or the
    user's credentials changed: every open IMAP and POP3 session of the user closes,
    saying ``reason`` when there is one."""

    reason: str | None = None


@dataclass(frozen=True, slots=True)
class CredentialsChanged(Event):
    """What opens the user's account changed without its sessions being ended: the
    account was disabled or enabled, a second factor turned on or off, an application
    password deleted. Every process forgets the user's remembered logins
    (``accounts.login_cache``)."""

    reason: str | None = None


@dataclass(frozen=True, slots=True)
class RulesChanged(Event):
    """The user's filters or autoreply changed: delivery reloads them."""


@dataclass(frozen=True, slots=True)
class EventsLost(Event):
    """Events for this user may have been lost on the way from another process (a
    Redis connection broke, a worker's channel overflowed): the subscriber is marked
    ``overflowed`` and this wakes it to resynchronise from the store."""


class Subscription:
    """A bounded queue of one user's events. A subscriber that falls too far behind
    is marked ``overflowed`` and must resynchronise from the store."""

    def __init__(self, bus: EventBus, user_id: str, maxsize: int):
        self._bus = bus
        self.user_id = user_id
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.overflowed = False

    def deliver(self, event: Event) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True

    async def get(self) -> Event:
        return await self.queue.get()

    def close(self) -> None:
        self._bus._unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """One process's subscribers. ``publish`` delivers an event of this process to
    them and hands it to every forwarder (to the other processes of ``serve``, to
    Redis); ``deliver`` is for events that come from elsewhere, and goes no further."""

    def __init__(self, queue_size: int = 1000):
        self._queue_size = queue_size
        self._subscribers: dict[str, set[Subscription]] = defaultdict(set)
        self._forwarders: list[Callable[[list[Event]], None]] = []
        self._watchers: list[Callable[[list[Event] | None], None]] = []

    def watch(self, watcher: Callable[[list[Event] | None], None]) -> None:
        """Also give ``watcher`` every event this process's subscribers get, whatever
        the user (a cache that follows changes); None when events may have been lost."""
        self._watchers.append(watcher)

    def forward_to(self, forwarder: Callable[[list[Event]], None]) -> None:
        """Also give every event published here to ``forwarder`` (after local delivery)."""
        self._forwarders.append(forwarder)

    def subscribe(self, user_id: str) -> Subscription:
        subscription = Subscription(self, user_id, self._queue_size)
        self._subscribers[user_id].add(subscription)
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        subscribers = self._subscribers.get(subscription.user_id)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[subscription.user_id]

    def publish(self, events: Iterable[Event]) -> None:
        batch = list(events)
        if not batch:
            return
        self.deliver(batch)
        for forwarder in self._forwarders:
            forwarder(batch)

    def mark_all_overflowed(self) -> None:
        """Every subscriber resynchronises from the store: events may have been lost."""
        for watcher in self._watchers:
            watcher(None)
        for subscriptions in tuple(self._subscribers.values()):
            for subscription in tuple(subscriptions):
                subscription.overflowed = True
                subscription.deliver(EventsLost(subscription.user_id))

    def deliver(self, events: Iterable[Event]) -> None:
        if self._watchers:
            events = list(events)
            for watcher in self._watchers:
                watcher(events)
        for event in events:
            for subscription in tuple(self._subscribers.get(event.user_id, ())):
                subscription.deliver(event)
