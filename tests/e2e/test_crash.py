"""Crash tests: ``postern serve`` killed with SIGKILL while mail flows, then restarted.

The promise under test (issue 3, item 7): every message that got a 250 is in the store
exactly once, and every queued outbound message is delivered once.

The server runs as a real process with POSTERN_FSYNC=true on a data directory of the
test's own (and the database the other tests use: SQLite in the data directory, or a
fresh schema of POSTERN_TEST_DATABASE_URL). Its outbound relay is a local sink in this
process (:class:`tests.e2e.crash_support.GatedSink`); no test reaches the network.

Outbound delivery and SIGKILL meet RFC 1047's window: if the remote has sent its 250
for DATA and the sender dies before it records that, the message is sent again after
restart, and nothing in SMTP can tell. The tests keep every kill out of that window, so
that they can demand "exactly once": before a kill the sink *holds* DATA replies (its
gate is closed), and the kill comes only once postern has recorded every acceptance
the sink has already sent. Messages held at the sink when the server dies were never
accepted (the sink drops them when the connection goes away) and must be delivered,
once, after restart.

The random delays are seeded: a failure prints the seed; POSTERN_CRASH_SEED replays it
(as far as thread timing allows). Every wait has an upper bound; nothing asserts how
long anything took.
"""

from __future__ import annotations

import collections
import os
import random
import secrets
import smtplib
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path

import pytest

from tests.e2e.crash_support import (
    GatedSink,
    Ledger,
    LoopThread,
    QueueView,
    admin_client,
    check_sources,
    create_user,
    new_schema,
    port_of,
    serve_env,
    subjects,
    tokens_in,
    wait_until,
)
from tests.e2e.serve_process import ServeProcess, drop_schema

SEED = int(os.environ.get("POSTERN_CRASH_SEED") or secrets.randbits(32))
PASSWORD = "crash test password"
REMOTE_SENDER = "someone@remote.example"
# Generous upper bounds for what must happen after a restart.
DELIVERY_TIMEOUT = 30.0
PROGRESS_TIMEOUT = 30.0
UNFINISHED = ("queued", "sending", "deferred")


def message(token: str, prefix: str, sender: str, recipient: str, rng: random.Random) -> bytes:
    """A message whose subject is ``"<prefix> <token>"``; bodies of varied sizes."""
    lines = [f"{prefix} {token} line {n:05d} " + "x" * rng.randrange(10, 70) for n in range(rng.choice((2, 20, 200, 600)))]
    head = (
        f"From: <{sender}>\r\nTo: <{recipient}>\r\nSubject: {prefix} {token}\r\n"
        f"Date: {formatdate()}\r\nMessage-ID: <{token}@crash.test>\r\n\r\n"
    )
    return (head + "\r\n".join(lines) + "\r\n").encode()


class Client(threading.Thread):
    """Sends one message per SMTP transaction until stopped, reconnecting when the
    server goes away, and records what each transaction came to in a ledger."""

    prefix = ""

    def __init__(self, name: str, port: int, ledger: Ledger, stop: threading.Event, rng: random.Random):
        super().__init__(name=name, daemon=True)
        self.port = port
        self.ledger = ledger
        self.stop = stop
        self.rng = rng
        self.count = 0
        self.raws: dict[str, bytes] = {}  # token -> the message as sent

    def connect(self) -> smtplib.SMTP:
        conn = smtplib.SMTP("127.0.0.1", self.port, local_hostname=f"{self.name}.crash.test", timeout=20)
        conn.ehlo()
        return conn

    def envelope(self, token: str) -> tuple[str, str, list[str]]:
        """(owner in the ledger, envelope sender, recipients)"""
        raise NotImplementedError

    def run(self) -> None:
        conn: smtplib.SMTP | None = None
        while not self.stop.is_set():
            if conn is None:
                try:
                    conn = self.connect()
                except (smtplib.SMTPException, OSError):
                    conn = None
                    time.sleep(0.05)  # the server is down, or not listening yet
                    continue
            self.count += 1
            token = f"{self.name}n{self.count}t{secrets.token_hex(3)}"
            owner, sender, recipients = self.envelope(token)
            raw = message(token, self.prefix, sender, ", ".join(recipients), self.rng)
            self.raws[token] = raw
            self.ledger.begin(token, owner)
            try:
                refused = conn.sendmail(sender, recipients, raw)
            except smtplib.SMTPRecipientsRefused as error:
                self.ledger.settle(token, "refused", repr(error.recipients))
            except smtplib.SMTPResponseException as error:
                self.ledger.settle(token, "refused", f"{error.smtp_code} {error.smtp_error!r}")
            except (smtplib.SMTPException, OSError):
                # The connection broke: whether DATA was answered is unknown.
                _close(conn)
                conn = None
            else:
                # A recipient refused at RCPT while another was accepted: not all acknowledged.
                self.ledger.settle(token, "refused" if refused else "acked", repr(refused) if refused else "")
        if conn is not None:
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                _close(conn)


def _close(conn: smtplib.SMTP) -> None:
    try:
        conn.close()
    except OSError:
        pass


class MxClient(Client):
    """Mail from the world, by MX, each message to a random user (one in five to two
    users: one transaction, two copies that must both be there, once)."""

    prefix = "mx"

    def __init__(self, *args: object, addresses: list[str]):
        super().__init__(*args)  # type: ignore[arg-type]
        self.addresses = addresses

    def envelope(self, token: str) -> tuple[str, str, list[str]]:
        recipients = self.rng.sample(self.addresses, 2 if self.rng.random() < 0.2 else 1)
        return ",".join(recipients), REMOTE_SENDER, recipients


class SubmissionClient(Client):
    """A user submitting mail for remote recipients: one recipient address per message,
    so that the sink and the queue's rows identify each message by its recipient."""

    prefix = "sub"

    def __init__(self, *args: object, username: str):
        super().__init__(*args)  # type: ignore[arg-type]
        self.username = username
        self.address = f"{username}@example.com"

    def connect(self) -> smtplib.SMTP:
        conn = super().connect()
        try:
            conn.login(self.username, PASSWORD)  # plain text: allowed on loopback
        except BaseException:
            _close(conn)
            raise
        return conn

    def envelope(self, token: str) -> tuple[str, str, list[str]]:
        recipient = remote_address(token)
        return recipient, self.address, [recipient]


def remote_address(token: str) -> str:
    return f"r-{token}@remote.org".lower()


# The rig: one data directory, one set of ports, one database, many lives --------------


class Rig:
    def __init__(self, data_dir: Path, delay: float = 0.0):
        self.loop = LoopThread()
        self.schema = new_schema()
        self.sink = GatedSink(self.loop, delay=delay)
        self.sink.start()
        self.env = serve_env(data_dir, self.sink.port, self.schema)
        self.view = QueueView(self.loop, data_dir, self.schema)
        self.lives: list[ServeProcess] = []
        self.held_at_kills: list[int] = []

    @property
    def server(self) -> ServeProcess:
        return self.lives[-1]

    def start(self) -> ServeProcess:
        life = ServeProcess(self.env)
        self.lives.append(life)
        life.wait_ready()
        return life

    def quiesce_then_kill(self, hold_at_least: int = 0) -> None:
        """SIGKILL the server outside RFC 1047's window: the sink holds every DATA reply
        from now on, and the kill waits until postern has recorded each acceptance the
        sink already sent (and until the sink holds ``hold_at_least`` deliveries, so that
        rows are "sending" when the server dies). Then the gate opens again."""
        self.sink.close_gate()
        wait_until(
            lambda: self.sink.holding >= hold_at_least,
            DELIVERY_TIMEOUT,
            lambda: f"the sink holds {self.sink.holding} deliveries, not {hold_at_least}; rows: {self.view.states()}",
        )
        wait_until(
            lambda: not self.sent_but_unrecorded(),
            DELIVERY_TIMEOUT,
            lambda: f"postern never recorded these deliveries the sink accepted: {sorted(self.sent_but_unrecorded())}",
        )
        accepted = self.sink.recipients()
        self.held_at_kills.append(self.sink.holding)
        self.server.kill9()
        # The held transactions die with their connections, unaccepted.
        wait_until(lambda: self.sink.holding == 0, DELIVERY_TIMEOUT, "the sink still holds DATA replies of a dead server")
        assert self.sink.recipients() == accepted, "the sink accepted a message after its gate closed"
        self.sink.open_gate()

    def sent_but_unrecorded(self) -> set[str]:
        states = self.view.states()
        return {rcpt for rcpt in self.sink.recipients() if states.get(rcpt) != "delivered"}

    def unfinished(self) -> dict[str, str]:
        return {rcpt: state for rcpt, state in self.view.states().items() if state in UNFINISHED}

    def close(self) -> None:
        for life in self.lives:
            if life.proc.poll() is None:
                life.kill9()
        try:
            self.view.close()
            self.sink.stop()
        finally:
            self.loop.close()
            if self.schema:
                drop_schema(self.schema)

    def tracebacks(self) -> str:
        return "\n".join(f"--- life {n} ---\n{life.errors}" for n, life in enumerate(self.lives) if "Traceback" in life.errors)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path / "data")
    try:
        yield rig
    finally:
        rig.close()


@pytest.fixture
def slow_rig(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path / "data", delay=1.0)
    try:
        yield rig
    finally:
        rig.close()


def wait_for_progress(ledger: Ledger, at_least: int, what: str) -> None:
    """Until ``at_least`` more messages than now have been acknowledged."""
    target = len(ledger.tokens("acked")) + at_least
    wait_until(lambda: len(ledger.tokens("acked")) >= target, PROGRESS_TIMEOUT, f"{what}: fewer than {at_least} messages acknowledged")


def check_counts(label: str, ledger: Ledger, found: collections.Counter[str], problems: list[str]) -> None:
    """Acknowledged: exactly once. Unknown or refused: at most once. Nothing else."""
    for token in sorted(ledger.all()):
        outcome, count = ledger.outcome[token], found.get(token, 0)
        if outcome == "acked" and count != 1:
            problems.append(f"{label}: acknowledged {token} found {count} times")
        elif outcome != "acked" and count > 1:
            problems.append(f"{label}: {outcome} {token} found {count} times")
    strangers = {token: n for token, n in found.items() if token not in ledger.outcome}
    if strangers:
        problems.append(f"{label}: messages nobody sent: {strangers}")


# The tests ---------------------------------------------------------------------------


def test_sigkill_while_clients_stream(rig: Rig) -> None:
    """Six clients stream mail by MX to five users and one submits mail for remote
    recipients, while the server is killed three times, each time after a seeded random
    delay (longer each cycle, so each life takes more mail) and restarted on the same
    data, ports and database. Then: every acknowledged message is in its user's INBOX
    exactly once, every acknowledged submission is in Sent Mail once and reached the
    sink once; what was unanswered is there at most once; nothing else is anywhere."""
    rng = random.Random(SEED)
    rig.start()
    usernames = [f"user{n}" for n in range(5)]
    folders: dict[str, tuple[str, dict[str, str]]] = {}
    with admin_client(rig.env) as api:
        for username in usernames:
            folders[f"{username}@example.com"] = create_user(api, username, PASSWORD)

    mx, submitted = Ledger(), Ledger()
    stop = threading.Event()
    smtp_port, submission_port = port_of(rig.env, "SMTP"), port_of(rig.env, "SUBMISSION")
    clients: list[Client] = [
        MxClient(f"mx{n}", smtp_port, mx, stop, random.Random(rng.random()), addresses=sorted(folders)) for n in range(6)
    ]
    clients.append(SubmissionClient("sub", submission_port, submitted, stop, random.Random(rng.random()), username=usernames[0]))
    for client in clients:
        client.start()
    try:
        for cycle in range(3):
            # Each life takes mail before it dies.
            wait_for_progress(mx, 5, f"life {cycle}, MX (seed {SEED})")
            wait_for_progress(submitted, 1, f"life {cycle}, submission (seed {SEED})")
            time.sleep(rng.uniform(0.5, 1.5) + 0.5 * cycle)
            rig.quiesce_then_kill(hold_at_least=1)
            rig.start()
        wait_for_progress(mx, 5, f"last life, MX (seed {SEED})")
        wait_for_progress(submitted, 1, f"last life, submission (seed {SEED})")
        time.sleep(rng.uniform(0.2, 0.8))
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=60)
    assert not any(client.is_alive() for client in clients), "a client did not stop"

    problems: list[str] = []
    refused = mx.tokens("refused") | submitted.tokens("refused")
    if refused:
        problems.append(f"refused by a running server: {mx.notes + submitted.notes}")

    # Every queued message reaches the sink (upper bound only), and the queue drains.
    acked_out = {remote_address(t) for t in submitted.tokens("acked")}
    wait_until(
        lambda: acked_out <= set(rig.sink.recipients()),
        DELIVERY_TIMEOUT,
        lambda: f"acknowledged submissions never delivered: {sorted(acked_out - set(rig.sink.recipients()))}; "
        f"queue rows not final: {rig.unfinished()} (seed {SEED})",
    )
    wait_until(lambda: not rig.unfinished(), DELIVERY_TIMEOUT, lambda: f"queue rows not final: {rig.unfinished()} (seed {SEED})")

    with admin_client(rig.env) as api:
        inboxes = {address: tokens_in(subjects(api, user, boxes["INBOX"]), "mx") for address, (user, boxes) in folders.items()}
        sender_user, sender_boxes = folders[f"{usernames[0]}@example.com"]
        sent = tokens_in(subjects(api, sender_user, sender_boxes["Sent Mail"]), "sub")
        mx_raws = {t: raw for client in clients[:-1] for t, raw in client.raws.items()}
        for user, boxes in folders.values():
            check_sources(api, user, boxes["INBOX"], mx_raws, "mx", problems)
        check_sources(api, sender_user, sender_boxes["Sent Mail"], clients[-1].raws, "sub", problems)

    # MX: in the INBOX of each recipient, once; in no other.
    for address, found in inboxes.items():
        mine = {t for t in mx.all() if address in mx.owner[t].split(",")}
        check_counts(f"INBOX of {address}", mx.subset(mine), found, problems)

    # Submission: the Sent copy once, the delivery once.
    check_counts("Sent Mail", submitted, sent, problems)
    by_token = {remote_address(t): t for t in submitted.all()}
    delivered = collections.Counter({by_token.get(rcpt, "?" + rcpt): n for rcpt, n in rig.sink.recipients().items()})
    check_counts("sink", submitted, delivered, problems)
    by_rcpt = {remote_address(t): raw for t, raw in clients[-1].raws.items()}
    torn = [item.rcpt_tos for item in rig.sink.accepted if any(by_rcpt.get(r.lower()) != item.data for r in item.rcpt_tos)]
    if torn:
        problems.append(f"the sink received other bytes than were submitted for {torn}")
    without_sent_copy = [t for t in delivered if not t.startswith("?") and sent.get(t, 0) == 0]
    if without_sent_copy:
        problems.append(f"delivered without a copy in Sent Mail: {without_sent_copy}")
    states = rig.view.states()
    not_recorded = [t for t in submitted.tokens("acked") if states.get(remote_address(t)) != "delivered"]
    if not_recorded:
        problems.append(f"delivered but not recorded as delivered: {not_recorded}")

    assert rig.server.stop() == 0, rig.server.errors
    tracebacks = rig.tracebacks()
    if tracebacks:
        problems.append(f"tracebacks in the server's log:\n{tracebacks}")

    stored = set().union(*inboxes.values())
    summary = (
        f"seed {SEED}; MX acked {len(mx.tokens('acked'))}, unknown {len(mx.tokens('unknown'))} "
        f"(of which stored {len(mx.tokens('unknown') & stored)}); submissions acked {len(submitted.tokens('acked'))}, "
        f"unknown {len(submitted.tokens('unknown'))} (of which delivered {len(submitted.tokens('unknown') & set(delivered))}); "
        f"deliveries held at the sink at each kill: {rig.held_at_kills}"
    )
    print(summary)
    assert not problems, summary + "\n" + "\n".join(problems)


def test_sigkill_while_the_queue_waits_for_a_slow_sink(slow_rig: Rig) -> None:
    """The queue is delivering to a slow remote (each DATA reply takes a second) when
    the server is killed; after restart every queued message is delivered, none twice.

    A kill that lands after the remote sent its 250 for DATA but before postern recorded
    the delivery would make one legitimate duplicate (RFC 1047): SMTP cannot avoid it.
    So the kill comes while the sink is still *holding* every DATA reply in flight (its
    gate is closed; the one-second delay means replies are pending anyway), and only once
    postern has recorded the deliveries the sink completed earlier. The held messages
    were never accepted; the rows that were "sending" when the process died must come
    back at the restart, not after the lease of a dead process runs out."""
    rig = slow_rig
    rig.start()
    with admin_client(rig.env) as api:
        user, boxes = create_user(api, "sender", PASSWORD)
    ledger = Ledger()
    rng = random.Random(SEED)
    client = SubmissionClient("slow", port_of(rig.env, "SUBMISSION"), ledger, threading.Event(), rng, username="sender")

    def submit(count: int) -> list[str]:
        conn = client.connect()
        tokens = []
        try:
            for n in range(count):
                token = f"slow{len(ledger.all())}t{secrets.token_hex(3)}"
                recipient = remote_address(token)
                ledger.begin(token, recipient)
                conn.sendmail(client.address, [recipient], message(token, "sub", client.address, recipient, rng))
                ledger.settle(token, "acked")
                tokens.append(token)
        finally:
            conn.quit()
        return tokens

    # Delivered before the kill, slowly: these must not be sent again.
    early = submit(3)
    wait_until(
        lambda: {remote_address(t) for t in early} <= set(rig.sink.recipients()) and not rig.sent_but_unrecorded(),
        DELIVERY_TIMEOUT,
        lambda: f"early messages not delivered: {rig.view.states()}",
    )

    # In flight at the kill: the sink holds their DATA replies.
    rig.sink.close_gate()
    held = submit(5)
    wait_until(
        lambda: rig.sink.holding == len(held),
        DELIVERY_TIMEOUT,
        lambda: f"the sink holds {rig.sink.holding} of {len(held)} messages; rows: {rig.view.states()}",
    )
    assert all(rig.view.states()[remote_address(t)] == "sending" for t in held), rig.view.states()
    rig.server.kill9()
    wait_until(lambda: rig.sink.holding == 0, DELIVERY_TIMEOUT, "the sink still holds DATA replies of a dead server")
    before_restart = rig.sink.recipients()
    assert all(before_restart[remote_address(t)] == 0 for t in held), before_restart
    rig.sink.open_gate()

    rig.start()
    everything = {remote_address(t) for t in early + held}
    wait_until(
        lambda: everything <= set(rig.sink.recipients()) and not rig.unfinished(),
        DELIVERY_TIMEOUT + 10 * rig.sink.delay,
        lambda: f"not delivered after restart: {sorted(everything - set(rig.sink.recipients()))}; rows: {rig.view.states()}",
    )
    delivered = rig.sink.recipients()
    assert {rcpt: n for rcpt, n in delivered.items() if n != 1} == {}, f"delivered more than once (seed {SEED})"
    assert set(delivered) == everything
    assert set(rig.view.states().values()) == {"delivered"}

    with admin_client(rig.env) as api:
        sent = tokens_in(subjects(api, user, boxes["Sent Mail"]), "sub")
    assert sent == collections.Counter({t: 1 for t in early + held})

    assert rig.server.stop() == 0, rig.server.errors
    assert not rig.tracebacks(), rig.tracebacks()
