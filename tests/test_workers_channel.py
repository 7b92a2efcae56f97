"""The channel between ``postern serve`` and its mail workers (``postern.serve.workers``):
events travel in messages that fit the channel, in order, and a worker too busy to
read never blocks the serving process; if its backlog overflows, it is told to
resynchronise instead of being sent an unbounded queue."""

from __future__ import annotations

import asyncio
import pickle
import socket

import pytest

from postern.events import EventBus, EventsLost, MessageAdded, MessagesChanged
from postern.serve.workers import (
    MAX_MESSAGE,
    Dispatcher,
    WorkerLink,
    _receive,
    event_messages,
)


def unpack(messages: list[bytes], kind: bytes) -> list[object]:
    events: list[object] = []
    for data in messages:
        assert data[:1] == kind and len(data) <= MAX_MESSAGE
        events.extend(pickle.loads(data[1:]))
    return events


def test_many_events_travel_in_order_in_several_messages() -> None:
    events = [MessageAdded("u1", "f1", uid, uid) for uid in range(1, 1001)]
    messages = event_messages(b"E", events)
    assert len(messages) >= 10
    assert unpack(messages, b"E") == events


def test_an_event_too_large_for_one_message_is_split_by_its_uids() -> None:
    big = MessagesChanged("u1", "f1", tuple(range(1, 200_001)), 7)
    messages = event_messages(b"B", [big])
    assert len(messages) > 1
    parts = unpack(messages, b"B")
    assert all(isinstance(p, MessagesChanged) and p.modseq == 7 and p.folder_id == "f1" for p in parts)
    assert tuple(uid for p in parts for uid in p.uids) == big.uids  # type: ignore[attr-defined]


def _drain(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(MAX_MESSAGE, socket.MSG_DONTWAIT))
        except BlockingIOError:
            return out


async def _dispatcher_with_worker() -> tuple[Dispatcher, WorkerLink, socket.socket]:
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for sock in (parent, child):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    dispatcher = Dispatcher([], {}, lambda link: None, lambda events, link: None)
    ready = asyncio.get_running_loop().create_future()
    ready.set_result(None)
    link = WorkerLink(0, parent, ready)
    dispatcher.workers.append(link)  # no reader: this test reads the worker's end itself
    return dispatcher, link, child


async def test_a_busy_worker_gets_its_events_later_in_order_without_blocking() -> None:
    dispatcher, link, worker_end = await _dispatcher_with_worker()
    try:
        events = [MessageAdded("u1", "f1", uid, uid) for uid in range(1, 3001)]
        for start in range(0, len(events), 100):
            dispatcher.broadcast(events[start : start + 100])  # returns at once
        assert link.waiting, "the small channel filled up, the rest waits"
        received: list[object] = []
        for _ in range(2000):
            received.extend(unpack(_drain(worker_end), b"B"))
            if len(received) == len(events):
                break
            await asyncio.sleep(0.005)  # the loop flushes the waiting messages as room appears
        assert received == events
        assert not link.waiting and not link.lost_events
    finally:
        dispatcher.close()
        worker_end.close()


async def test_an_overflowing_backlog_is_dropped_and_the_worker_told_to_resynchronise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("postern.serve.workers.MAX_WAITING_MESSAGES", 5)
    dispatcher, link, worker_end = await _dispatcher_with_worker()
    try:
        for uid in range(1, 500):
            dispatcher.broadcast([MessageAdded("u1", "f1", uid, uid)])
        assert link.lost_events and len(link.waiting) <= 5
        tail: list[bytes] = []
        for _ in range(2000):
            tail.extend(_drain(worker_end))
            if tail and tail[-1] == b"G":
                break
            await asyncio.sleep(0.005)
        assert tail[-1] == b"G", "after what was kept, the worker hears that events were lost"
        assert not link.lost_events
    finally:
        dispatcher.close()
        worker_end.close()


async def test_marking_every_subscriber_overflowed_wakes_it() -> None:
    bus = EventBus()
    with bus.subscribe("u1") as first, bus.subscribe("u2") as second:
        bus.mark_all_overflowed()
        for subscription in (first, second):
            assert subscription.overflowed
            assert isinstance(await asyncio.wait_for(subscription.get(), 5), EventsLost)


def test_publish_forwards_what_deliver_keeps_local() -> None:
    bus = EventBus()
    forwarded: list[list[object]] = []
    bus.forward_to(forwarded.append)
    with bus.subscribe("u1") as subscription:
        bus.publish([MessageAdded("u1", "f1", 1, 1)])
        bus.deliver([MessageAdded("u1", "f1", 2, 2)])
        assert subscription.queue.qsize() == 2
    assert forwarded == [[MessageAdded("u1", "f1", 1, 1)]]


async def test_a_connection_handed_to_a_busy_worker_waits_for_it_and_is_never_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("postern.serve.workers.MAX_WAITING_MESSAGES", 5)
    dispatcher, link, worker_end = await _dispatcher_with_worker()
    client, accepted = socket.socketpair()
    try:
        for uid in range(1, 200):
            dispatcher.broadcast([MessageAdded("u1", "f1", uid, uid)])
        dispatcher._hand_over("imap", accepted, ("127.0.0.1", 4000))
        for uid in range(200, 400):  # overflowing events again: the connection stays queued
            dispatcher.broadcast([MessageAdded("u1", "f1", uid, uid)])
        assert any(conn is not None for _, conn in link.waiting)
        handed: list[int] = []
        for _ in range(2000):
            message = _receive(worker_end)  # as the worker reads its channel
            if message is None:
                await asyncio.sleep(0.005)
                continue
            data, fds = message
            if data.startswith(b"Aimap "):
                handed.extend(fds)
                break
        assert len(handed) == 1, "the worker got the connection"
        with socket.socket(fileno=handed[0]) as taken:
            client.sendall(b"hello")
            assert taken.recv(5) == b"hello"
        assert len(link.connections) == 1
    finally:
        dispatcher.close()
        worker_end.close()
        client.close()


def test_reading_an_empty_blocking_channel_returns_at_once() -> None:
    """Under plain asyncio the channel stays blocking: reading must still never wait."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with parent, child:
        assert parent.getblocking()
        child.send(b"R")
        assert _receive(parent) == (b"R", [])
        assert _receive(parent) is None
        child.close()
        assert _receive(parent) == (b"", [])
