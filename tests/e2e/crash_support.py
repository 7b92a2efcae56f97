"""What the crash tests need around a ``postern serve`` process that they kill.

* :class:`ServeProcess` (from ``serve_process``) runs ``python -m postern serve``.
* :class:`LoopThread` runs an asyncio loop in a thread, for the SMTP sink and for
  reading the outbound queue's rows while the server runs.
* :class:`GatedSink` is the "rest of the internet" the outbound relay delivers to: it
  records what it accepts, can answer DATA slowly, and can *hold* DATA replies (a
  closed gate) so that a test kills the server while no acceptance is in flight.
* :class:`QueueView` reads the ``outbound`` table of the server's database.
* :class:`Ledger` records what every client was told, message by message.

Every wait has an upper bound; nothing asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import secrets
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from tests.e2e.serve_process import STOP_TIMEOUT, TEST_DATABASE_URL, ServeProcess, drop_schema, free_port

T = TypeVar("T")

ADMIN_TOKEN = "crash-test-admin-token-" + "x" * 16


def wait_until(condition: Callable[[], bool], timeout: float, what: str | Callable[[], str], interval: float = 0.05) -> None:
    """Poll ``condition`` until it holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what() if callable(what) else what}")
        time.sleep(interval)


def serve_env(data_dir: Path, sink_port: int, schema: str | None) -> dict[str, str]:
    """The environment of every life of one crash-tested server: same data, same ports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTERN_")}
    env.update(
        POSTERN_DATA_DIR=str(data_dir),
        POSTERN_FSYNC="true",
        POSTERN_HTTP_LISTEN=f"127.0.0.1:{free_port()}",
        POSTERN_SMTP_LISTEN=f"127.0.0.1:{free_port()}",
        POSTERN_LMTP_LISTEN=f"127.0.0.1:{free_port()}",
        POSTERN_SUBMISSION_LISTEN=f"127.0.0.1:{free_port()}",
        POSTERN_IMAP_LISTEN=f"127.0.0.1:{free_port()}",
        POSTERN_POP3_LISTEN=f"127.0.0.1:{free_port()}",
        POSTERN_ADMIN_TOKEN=ADMIN_TOKEN,
        POSTERN_CHECK_AUTHENTICATION="false",
        POSTERN_ARGON2_TIME_COST="1",
        POSTERN_ARGON2_MEMORY_KIB="8",
        POSTERN_DOMAIN="example.com",
        POSTERN_HOSTNAME="mx.example.com",
        POSTERN_OUTBOUND_RELAY=f"127.0.0.1:{sink_port}",
        POSTERN_OUTBOUND_RELAY_TLS="none",
        # Far away: the collector must not be what a crash test exercises by chance.
        POSTERN_GC_INTERVAL="3600",
        # The MX door in two worker processes, whatever the machine's CPU count.
        POSTERN_MAIL_WORKERS="2",
    )
    if TEST_DATABASE_URL and schema:
        env.update(POSTERN_DATABASE_URL=TEST_DATABASE_URL, POSTERN_DATABASE_SCHEMA=schema)
    return env


@contextlib.contextmanager
def serve_env_in(tmp_path: Path, **settings: str) -> Iterator[dict[str, str]]:
    """``serve_env`` under ``tmp_path`` with its own PostgreSQL schema (dropped after)
    and these settings on top."""
    schema = new_schema()
    values = serve_env(tmp_path / "data", free_port(), schema)
    values.update(settings)
    try:
        yield values
    finally:
        if schema:
            drop_schema(schema)


@contextlib.contextmanager
def serving(env: dict[str, str]) -> Iterator[ServeProcess]:
    """``postern serve`` started and ready; killed if the test left it running."""
    process = ServeProcess(env)
    try:
        assert process.wait_ready(), process.errors
        yield process
    finally:
        if process.proc.poll() is None:
            process.kill9()


def port_of(env: dict[str, str], name: str) -> int:
    return int(env[f"POSTERN_{name}_LISTEN"].rsplit(":", 1)[1])


# An asyncio loop in a thread ----------------------------------------------------------


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="crash-test-loop", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=STOP_TIMEOUT)
        if not self._thread.is_alive():
            self.loop.close()


# The sink -----------------------------------------------------------------------------


@dataclass
class Accepted:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class GatedSink:
    """An SMTP server on loopback that accepts everything.

    ``delay`` seconds pass before each DATA reply. While the gate is closed, DATA
    replies are held until it opens again; if the client goes away meanwhile (the
    server under test was killed), aiosmtpd cancels the handler and the message is
    *not* accepted: the sender never heard a 250 for it, so it was not delivered.
    A message counts as accepted at the moment the sink commits to its 250.
    """

    loop: LoopThread
    delay: float = 0.0
    port: int = 0
    accepted: list[Accepted] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _holding: int = 0
    _gate: asyncio.Event | None = None
    _server: asyncio.AbstractServer | None = None

    def start(self) -> None:
        self.loop.run(self._start())

    async def _start(self) -> None:
        sink = self
        self._gate = asyncio.Event()
        self._gate.set()

        class Handler:
            async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
                assert sink._gate is not None
                with sink._lock:
                    sink._holding += 1
                try:
                    if sink.delay:
                        await asyncio.sleep(sink.delay)
                    await sink._gate.wait()
                finally:
                    with sink._lock:
                        sink._holding -= 1
                # Nothing awaits between here and the reply: once recorded, the 250 is sent.
                with sink._lock:
                    sink.accepted.append(Accepted(envelope.mail_from or "", list(envelope.rcpt_tos), envelope.original_content or b""))
                return "250 2.0.0 Ok: queued by sink"

        self._server = await asyncio.get_running_loop().create_server(
            lambda: SMTP(Handler(), hostname="sink.example.net", decode_data=False, enable_SMTPUTF8=True), "127.0.0.1", 0
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def close_gate(self) -> None:
        """Hold DATA replies from now on (the gate is closed when this returns)."""
        self.loop.run(self._set_gate(False))

    def open_gate(self) -> None:
        self.loop.run(self._set_gate(True))

    async def _set_gate(self, open_: bool) -> None:
        assert self._gate is not None
        if open_:
            self._gate.set()
        else:
            self._gate.clear()

    @property
    def holding(self) -> int:
        """DATA replies being held (or delayed) right now."""
        with self._lock:
            return self._holding

    def recipients(self) -> collections.Counter[str]:
        """How many times each recipient address was accepted."""
        with self._lock:
            return collections.Counter(rcpt.lower() for item in self.accepted for rcpt in item.rcpt_tos)

    def stop(self) -> None:
        async def _stop() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()

        self.loop.run(_stop(), timeout=STOP_TIMEOUT)


# The outbound queue, read from the database ------------------------------------------


class QueueView:
    """Reads the ``outbound`` rows of the server's database (SQLite in the data
    directory, or the test's PostgreSQL schema) while the server runs."""

    def __init__(self, loop: LoopThread, data_dir: Path, schema: str | None):
        self.loop = loop
        if TEST_DATABASE_URL and schema:
            self.url = TEST_DATABASE_URL
            args: dict[str, Any] = {"connect_args": {"server_settings": {"search_path": schema}}}
        else:
            self.url = f"sqlite+aiosqlite:///{(data_dir / 'postern.sqlite3').resolve()}"
            args = {}
        self._args = args
        self._engine: AsyncEngine | None = None

    def states(self) -> dict[str, str]:
        """Recipient address -> state of its row (queued, sending, deferred, delivered, bounced)."""
        return self.loop.run(self._states())

    async def _states(self) -> dict[str, str]:
        if self._engine is None:
            # No pool: no connection of the test's stays open across a kill and restart.
            self._engine = create_async_engine(self.url, poolclass=NullPool, **self._args)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(text("SELECT rcpt, state FROM outbound"))).all()
        return {str(rcpt).lower(): str(state) for rcpt, state in rows}

    def close(self) -> None:
        if self._engine is not None:
            self.loop.run(self._engine.dispose())


def new_schema() -> str | None:
    return f"t_{secrets.token_hex(6)}" if TEST_DATABASE_URL else None


# What the clients were told ----------------------------------------------------------


class Ledger:
    """Per message token: "acked" (the DATA reply was 250), "refused" (a reply other
    than 250), or "unknown" (sent, but the connection broke before any reply)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.outcome: dict[str, str] = {}
        self.owner: dict[str, str] = {}  # token -> the recipients, comma separated
        self.notes: list[str] = []

    def begin(self, token: str, owner: str) -> None:
        with self._lock:
            self.outcome[token] = "unknown"
            self.owner[token] = owner

    def settle(self, token: str, outcome: str, note: str = "") -> None:
        with self._lock:
            self.outcome[token] = outcome
            if note:
                self.notes.append(f"{token}: {note}")

    def tokens(self, outcome: str) -> set[str]:
        with self._lock:
            return {t for t, o in self.outcome.items() if o == outcome}

    def all(self) -> set[str]:
        with self._lock:
            return set(self.outcome)

    def subset(self, tokens: Iterable[str]) -> Ledger:
        part = Ledger()
        with self._lock:
            for token in tokens:
                part.outcome[token] = self.outcome[token]
                part.owner[token] = self.owner[token]
        return part


# The admin API ------------------------------------------------------------------------


def admin_client(env: dict[str, str]) -> httpx.Client:
    return httpx.Client(base_url=f"http://{env['POSTERN_HTTP_LISTEN']}", timeout=30, headers={"X-Access-Token": ADMIN_TOKEN})


def create_user(client: httpx.Client, username: str, password: str) -> tuple[str, dict[str, str]]:
    """A user at ``username@example.com``; returns its id and its folders by path."""
    created = client.post("/users", json={"username": username, "password": password, "address": f"{username}@example.com"})
    assert created.status_code == 200, created.text
    user = created.json()["id"]
    boxes = client.get(f"/users/{user}/mailboxes")
    assert boxes.status_code == 200, boxes.text
    return user, {m["path"]: m["id"] for m in boxes.json()["results"]}


def listing(client: httpx.Client, user: str, mailbox: str) -> list[tuple[int, str]]:
    """(id, subject) of every message in one folder, following the cursors page by page."""
    found: list[tuple[int, str]] = []
    params: dict[str, Any] = {"limit": 250, "order": "asc"}
    for _ in range(10_000):
        page = client.get(f"/users/{user}/mailboxes/{mailbox}/messages", params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        found.extend((int(m["id"]), str(m["subject"])) for m in body["results"])
        if not body["nextCursor"]:
            return found
        params["next"] = body["nextCursor"]
    raise AssertionError("the cursors of the message list never ended")


def subjects(client: httpx.Client, user: str, mailbox: str) -> list[str]:
    return [subject for _, subject in listing(client, user, mailbox)]


def check_sources(
    client: httpx.Client, user: str, mailbox: str, raws: dict[str, bytes], prefix: str, problems: list[str]
) -> None:
    """Each listed message's message.eml ends with the bytes that were sent (the server
    adds only trace headers in front): no blob lost or torn by a crash."""
    for uid, subject in listing(client, user, mailbox):
        head, _, token = subject.partition(" ")
        if head != prefix or token not in raws:
            continue
        eml = client.get(f"/users/{user}/mailboxes/{mailbox}/messages/{uid}/message.eml")
        if eml.status_code != 200:
            problems.append(f"{mailbox} of {user}: message.eml of {token} answers {eml.status_code}: {eml.text[:200]}")
        elif not eml.content.endswith(raws[token]):
            problems.append(f"{mailbox} of {user}: message.eml of {token} is not the message sent ({len(eml.content)} bytes)")


def tokens_in(texts: Iterable[str], prefix: str) -> collections.Counter[str]:
    """Count the tokens in subjects like ``"<prefix> <token>"``; other subjects count under ``"?" + subject``."""
    counts: collections.Counter[str] = collections.Counter()
    for subject in texts:
        head, _, token = subject.partition(" ")
        counts[token if head == prefix and token else "?" + subject] += 1
    return counts
