#!/usr/bin/env python3
"""Benchmark: alias forwarding end to end, postern against a plain Postfix relay.

Generates N messages (2,000 by default, about 20 KB each: From with a display name,
To, Cc, Subject, Date, Message-ID, a DKIM-Signature, a multipart/alternative text
and HTML body) once, from a fixed seed, each to one of A aliases (100)
``a<i>@alias.test`` chosen at random (seeded), and sends the same messages over C
concurrent SMTP connections (20), each connection carrying many transactions, to

* Debian's Postfix, started by this script with a configuration directory, a queue
  and a log of its own in a temporary folder, relaying ``*@alias.test`` unchanged
  to the sink (the baseline: a plain relay, no rewriting);
* postern's MX door (``postern serve``, SQLite, ``POSTERN_FSYNC=true``), where each
  ``a<i>@alias.test`` is an alias forwarding to the verified mailbox
  ``m<i>@outside.test``: the message is accepted, rewritten (From to a reverse
  alias, envelope sender to a bounce address) and queued, and the outbound queue
  sends it to the sink through ``POSTERN_OUTBOUND_RELAY``.

The sink is an aiosmtpd server on loopback, in a process of its own, that accepts
everything and counts. A measurement starts when the client connects and ends when
the sink has received the N-th message, not when the client is done: queueing and
the onward delivery count. Each target gets a fresh queue/store in every round and
the order of the targets alternates from round to round. Target (issue 6, part 7):
postern's rate at least half of Postfix's (ratio of the medians >= 0.5).

    .venv/bin/python bench/alias_forwarding.py            # 2,000 messages, 3 rounds
    .venv/bin/python bench/alias_forwarding.py --quick    # 200 messages, 1 round
    .venv/bin/python bench/alias_forwarding.py --install  # apt-get install Postfix first

``--postern-mode hosted`` measures postern's plain delivery instead (the same
addresses as hosted users, no forwarding: the end is the client's last 250), the
fallback while forwarding is not built. This is a measurement: it exits 0 once it
has measured, PASS or FAIL (1 if a reply was not 250 or the sink did not receive
every message, 2 if it could not run). Method and recorded figures:
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import multiprocessing
import os
import random
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from common import COMMON_WORDS, FIRST_NAMES, LAST_NAMES, TOPICS, ServeProcess, paragraphs, free_port, load_average, machine_basics, verdict
from smtp_delivery import Connection, dot_stuff, session_cpu_seconds

TARGET_RATIO = 0.5  # postern forwarding messages/s divided by Postfix relaying messages/s
ALIAS_DOMAIN = "alias.test"
OUTSIDE_DOMAIN = "outside.test"
POSTERN_DOMAIN = "bench.test"
INSTALL_COMMAND = "DEBIAN_FRONTEND=noninteractive apt-get install -y postfix (preseeded: No configuration)"
FORWARDING_MODULE = Path(__file__).resolve().parent.parent / "src" / "postern" / "aliases" / "forwarding.py"

# Messages ---------------------------------------------------------------------------

SENDER_DOMAINS = ("example.org", "example.net", "mail.example.org", "lists.example.net", "corp.example")
WORDS = COMMON_WORDS + "alias forward newsletter order shipping account receipt offer unsubscribe".split()


@dataclass(slots=True)
class Message:
    index: int
    alias: int  # recipient: a<alias>@alias.test
    mail_from: str
    size: int
    wire: bytes  # dot-stuffed, ended by ".\r\n"


def make_message(i: int, rng: random.Random, aliases: int, size: int, base: datetime) -> Message:
    alias = rng.randrange(aliases)
    recipient = f"a{alias}@{ALIAS_DOMAIN}"
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    domain = SENDER_DOMAINS[i % len(SENDER_DOMAINS)]
    sender = f"{first.lower()}.{re.sub(r'[^a-z]', '', last.lower())}@{domain}"
    cc_first, cc_last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    cc = f"{cc_first.lower()}@{domain}"
    date = format_datetime(base + timedelta(seconds=i * 41 + rng.randint(0, 40)))
    subject = f"{TOPICS[i % len(TOPICS)]} #{i}: {' '.join(rng.choice(WORDS) for _ in range(rng.randint(2, 6)))}"
    boundary = f"=_bench_{rng.getrandbits(64):016x}"
    head = [
        f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d={domain}; s=s{i % 3}; t={1700000000 + i};",
        "\th=from:to:cc:subject:date:message-id:mime-version:content-type;",
        f"\tbh={base64.b64encode(rng.randbytes(32)).decode()};",
        f"\tb={base64.b64encode(rng.randbytes(256)).decode()}",
        f'From: "{first} {last}" <{sender}>',
        f"To: <{recipient}>",
        f"Cc: {cc_first} {cc_last} <{cc}>",
        f"Subject: {subject}",
        f"Date: {date}",
        f"Message-ID: <{i}.{rng.getrandbits(48):012x}@{domain}>",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative; boundary="{boundary}"',
    ]
    target = max(2000, int(size * rng.uniform(0.75, 1.25)))
    room = target - sum(len(h) + 2 for h in head) - 300
    # The HTML part carries the text again with its markup: about 45% text, 55% HTML.
    text = paragraphs(rng, WORDS, max(600, int(room * 0.45)))
    html_lines = ["<html><body>"] + [f"<p>{t}</p>" for t in text if t] + ["</body></html>"]
    parts = [
        "This is a multi-part message in MIME format.",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
        *text,
        f"--{boundary}",
        "Content-Type: text/html; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
        *html_lines,
        f"--{boundary}--",
    ]
    raw = ("\r\n".join(head) + "\r\n\r\n" + "\r\n".join(parts) + "\r\n").encode()
    return Message(i, alias, sender, len(raw), dot_stuff(raw))


def generate(count: int, aliases: int, size: int, seed: int) -> list[Message]:
    rng = random.Random(seed)
    base = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)
    return [make_message(i, rng, aliases, size, base) for i in range(count)]


# The sink: an SMTP server standing in for the internet, in a process of its own -------


class SinkCounters:
    """Shared with the sink process: what it has received since the last reset."""

    def __init__(self, ctx: Any):
        self.messages = ctx.Value("q", 0)
        self.rewritten = ctx.Value("q", 0)  # messages whose recipient is m<i>@outside.test
        self.relayed = ctx.Value("q", 0)  # messages whose recipient is a<i>@alias.test
        self.bytes = ctx.Value("q", 0)
        self.connections = ctx.Value("q", 0)
        self.first = ctx.Value("d", 0.0)  # time.monotonic() (system-wide) of the first message
        self.last = ctx.Value("d", 0.0)  # ... and of the latest one
        self.from_rewritten = ctx.Value("q", 0)  # messages whose From is no longer the sender's

    def reset(self) -> None:
        for value in (self.messages, self.rewritten, self.relayed, self.bytes, self.connections, self.from_rewritten):
            value.value = 0
        self.first.value = self.last.value = 0.0


def _sink_main(port: int, counters: SinkCounters, ready: Any) -> None:
    logging.disable(logging.CRITICAL)  # aiosmtpd logs every session
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from aiosmtpd.smtp import SMTP

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            now = time.monotonic()
            data = envelope.original_content or b""
            head = data[: data.find(b"\r\n\r\n") if b"\r\n\r\n" in data else 4096]
            rcpts = envelope.rcpt_tos
            with counters.messages.get_lock():
                counters.messages.value += 1
                counters.bytes.value += len(data)
                if any(r.lower().endswith("@" + OUTSIDE_DOMAIN) for r in rcpts):
                    counters.rewritten.value += 1
                if any(r.lower().endswith("@" + ALIAS_DOMAIN) for r in rcpts):
                    counters.relayed.value += 1
                match = re.search(rb"(?im)^From:[^\r\n]*<([^>\r\n]+)>", head)
                if match and not match.group(1).lower().endswith(tuple(d.encode() for d in SENDER_DOMAINS)):
                    counters.from_rewritten.value += 1
                if counters.first.value == 0.0:
                    counters.first.value = now
                counters.last.value = now
            return "250 2.0.0 OK: queued in the sink"

    handler = Handler()

    def factory() -> SMTP:
        with counters.connections.get_lock():
            counters.connections.value += 1
        return SMTP(handler, hostname="sink.test", ident="bench sink", data_size_limit=100 * 1024 * 1024, enable_SMTPUTF8=True, timeout=600)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(factory, "127.0.0.1", port, backlog=256)
        ready.set()
        async with server:
            await server.serve_forever()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


class Sink:
    def __init__(self) -> None:
        ctx = multiprocessing.get_context("fork")  # before any thread of this script starts
        self.port = free_port()
        self.counters = SinkCounters(ctx)
        ready = ctx.Event()
        self.process = ctx.Process(target=_sink_main, args=(self.port, self.counters, ready), daemon=True)
        self.process.start()
        if not ready.wait(30):
            self.stop()
            raise SystemExit("the SMTP sink did not start")

    def wait_for(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.counters.messages.value < count:
            if time.monotonic() > deadline or not self.process.is_alive():
                return False
            time.sleep(0.01)
        return True

    def wait_quiet(self, seconds: float = 1.0, timeout: float = 30.0) -> None:
        """Until nothing has arrived for ``seconds`` (late duplicates, stragglers)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            before = self.counters.messages.value
            time.sleep(seconds)
            if self.counters.messages.value == before:
                return

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(10)


# The client --------------------------------------------------------------------------


async def _send_all(port: int, messages: list[Message], connections: int) -> tuple[float, float, int, list[str], list[float]]:
    """Returns (monotonic start, client seconds, bad transactions, examples, latencies)."""
    started = time.monotonic()
    conns = await asyncio.gather(*(Connection.open("127.0.0.1", port, False) for _ in range(connections)))
    todo = iter(messages)
    bad = 0
    examples: list[str] = []
    latencies: list[float] = []

    async def worker(conn: Connection) -> None:
        nonlocal bad
        for message in todo:  # a shared iterator: each connection takes the next message
            t0 = time.perf_counter()
            try:
                replies = await conn.send(message.mail_from, f"a{message.alias}@{ALIAS_DOMAIN}", message.wire, message.size)
            except (OSError, asyncio.IncompleteReadError, ValueError) as error:
                bad += 1
                examples.append(f"message {message.index}: connection failed: {error!r}")
                return
            latencies.append(time.perf_counter() - t0)
            if [code for code, _ in replies] != [250, 250, 354, 250]:
                bad += 1
                if len(examples) < 5:
                    examples.append(f"message {message.index}: " + " | ".join(f"{c} {t}" for c, t in replies))

    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.monotonic() - started
    await asyncio.gather(*(c.close() for c in conns))
    return started, elapsed, bad, examples, latencies


def send_all(port: int, messages: list[Message], connections: int) -> tuple[float, float, int, list[str], list[float]]:
    try:
        import uvloop

        return uvloop.run(_send_all(port, messages, connections))
    except ImportError:
        return asyncio.run(_send_all(port, messages, connections))


@dataclass
class Run:
    target: str
    round: int
    messages: int
    seconds: float  # from the client's first connection to the sink's N-th message
    rate: float  # messages per second, end to end
    client_seconds: float  # until the client's last 250
    accept_rate: float  # messages per second accepted (the client's view)
    delivered: int  # messages the sink received
    rewritten: int  # ... whose envelope recipient was m<i>@outside.test
    from_rewritten: int  # ... whose From was no longer the original sender
    bad: int
    sink_connections: int = 0
    examples: list[str] = field(default_factory=list)
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    server_cpu_ms: float = 0.0  # server CPU (all its processes) per message
    load_before: str = ""
    complete: bool = False


def measure(target: str, round_: int, port: int, server_sid: int | None, sink: Sink | None, messages: list[Message], args: argparse.Namespace) -> Run:
    """Sends the messages and, with a sink, waits until it has them all."""
    load = load_average()
    if sink is not None:
        sink.counters.reset()
    cpu0 = session_cpu_seconds(server_sid) if server_sid else 0.0
    started, client_s, bad, examples, latencies = send_all(port, messages, args.connections)
    n = len(messages)
    if sink is not None:
        complete = sink.wait_for(n, timeout=max(args.timeout, 5 * client_s))
        end = sink.counters.last.value if complete else time.monotonic()
        seconds = max(end - started, client_s)
        delivered = sink.counters.messages.value
    else:
        complete, seconds, delivered = bad == 0, client_s, 0
    cpu1 = session_cpu_seconds(server_sid) if server_sid else 0.0
    latencies.sort()

    def quantile(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else 0.0

    run = Run(
        target, round_, n, seconds, (n if complete else delivered) / seconds, client_s, n / client_s, delivered,
        sink.counters.rewritten.value if sink else 0, sink.counters.from_rewritten.value if sink else 0, bad,
        sink.counters.connections.value if sink else 0, examples, quantile(0.5), quantile(0.99),
        (cpu1 - cpu0) / n * 1000, load, complete,
    )
    if sink is not None:
        sink.wait_quiet(0.5, 10)
        run.delivered = sink.counters.messages.value
    return run


# Postfix -----------------------------------------------------------------------------

POSTFIX_SERVICES = """\
# service type  private unpriv  chroot  wakeup  maxproc command + args
{listen}      inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def postfix_installed() -> bool:
    return shutil.which("postfix") is not None or Path("/usr/sbin/postfix").exists()


def install_postfix() -> None:
    if os.geteuid() != 0:
        raise SystemExit(f"--install runs apt-get and needs root; as root: {INSTALL_COMMAND}")
    print(f"installing Postfix: {INSTALL_COMMAND}", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["debconf-set-selections"], input="postfix postfix/main_mailer_type select No configuration\n", text=True, check=True)
    if subprocess.run(["apt-get", "install", "-y", "postfix"], env=env).returncode != 0:
        subprocess.run(["apt-get", "update"], check=True, env=env)  # stale package lists
        subprocess.run(["apt-get", "install", "-y", "postfix"], check=True, env=env)
    if not postfix_installed():
        raise SystemExit("apt-get finished but the postfix command is still not found")


def postfix_version() -> str:
    out = subprocess.run(["postconf", "-d", "-h", "mail_version"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or "unknown"


class Postfix:
    """One Postfix instance: its own configuration directory, queue, data directory and
    log under ``root``, smtpd on a free loopback port, everything relayed to the sink.
    Needs root (the master runs as root, the daemons as ``mail_owner``)."""

    def __init__(self, root: Path, sink_port: int, connections: int):
        self.root = root
        self.port = free_port()
        self.conf = root / "etc"
        self.queue = root / "queue"
        self.data = root / "data"
        for path in (self.conf, self.queue, self.data):
            path.mkdir(parents=True, exist_ok=True)
        # The daemons run as `postfix` and chdir into the queue: they must reach it.
        for path in (root, *root.parents):
            if path == Path("/"):
                break
            os.chmod(path, os.stat(path).st_mode | 0o011)
        shutil.chown(self.data, "postfix", "postfix")
        self.log = root / "maillog"
        nexthop = f"[127.0.0.1]:{sink_port}"
        main = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue),
            "data_directory": str(self.data),
            "maillog_file": str(self.log),
            "maillog_file_prefixes": str(root),
            "myhostname": "postfix.bench.test",
            "mydomain": "bench.test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "local_recipient_maps": "",
            "local_transport": "error:no local delivery",
            "alias_maps": "",
            "alias_database": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "relay_domains": ALIAS_DOMAIN,
            "relay_recipient_maps": "",
            "relayhost": nexthop,
            "relay_transport": f"relay:{nexthop}",
            "default_transport": f"smtp:{nexthop}",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "smtpd_recipient_restrictions": "",
            "smtpd_peername_lookup": "no",  # no reverse lookup of 127.0.0.1
            "smtp_host_lookup": "native",
            "smtp_dns_support_level": "disabled",  # `disable_dns_lookups = yes` of old versions
            "smtpd_tls_security_level": "none",
            "smtp_tls_security_level": "none",
            "message_size_limit": str(100 * 1024 * 1024),
            "smtpd_client_connection_count_limit": str(max(50, connections * 2)),
            "smtpd_client_message_rate_limit": "0",
            "anvil_rate_time_unit": "60s",
            "biff": "no",
            "append_dot_mydomain": "no",
            "readme_directory": "no",
            "notify_classes": "",
            "bounce_notice_recipient": "postmaster",
        }
        (self.conf / "main.cf").write_text(
            "# Written by bench/alias_forwarding.py: a plain relay of *@alias.test to the sink, for one run.\n"
            + "".join(f"{k} = {v}\n" for k, v in main.items())
        )
        (self.conf / "master.cf").write_text(POSTFIX_SERVICES.format(listen=f"127.0.0.1:{self.port}"))
        self._run("check")
        try:
            self._run("start")
        except SystemExit:
            self.stop()  # whatever part of it did start
            raise

    def _run(self, command: str) -> None:
        out = subprocess.run(["postfix", "-c", str(self.conf), command], capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise SystemExit(f"postfix -c {self.conf} {command} failed ({out.returncode}):\n{out.stdout}{out.stderr}\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def master_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int((self.queue / "pid" / "master.pid").read_text().split()[0])
        return None

    def wait_ready(self, timeout: float = 30.0) -> None:
        import socket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                if s.recv(256).startswith(b"220"):
                    return
            time.sleep(0.1)
        log = self.log_tail()
        self.stop()
        raise SystemExit(f"postfix did not answer on port {self.port}:\n{log}")

    def problems(self) -> list[str]:
        with contextlib.suppress(OSError):
            return [
                line for line in self.log.read_text(errors="replace").splitlines()
                if re.search(r"(fatal|panic|error):|status=(deferred|bounced)", line)
            ]
        return []

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", str(self.conf), "stop"], capture_output=True, text=True, check=False)
        pid = self.master_pid()
        deadline = time.monotonic() + 20
        while pid and time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.1)


def session_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[3])


def run_postfix(root: Path, round_: int, sink: Sink, messages: list[Message], args: argparse.Namespace) -> Run:
    postfix = Postfix(root, sink.port, args.connections)
    try:
        postfix.wait_ready()
        pid = postfix.master_pid()
        run = measure("postfix relay", round_, postfix.port, session_of(pid) if pid else None, sink, messages, args)
        run.examples += postfix.problems()[:3]
    finally:
        postfix.stop()
    return run


# postern -----------------------------------------------------------------------------


def postern_settings(data_dir: Path, database_url: str | None, sink_port: int, connections: int, workers: str) -> dict[str, str]:
    env = {
        "POSTERN_DATA_DIR": str(data_dir),
        "POSTERN_DOORS": "http,smtp,queue",
        "POSTERN_FSYNC": "true",  # durable: 250 only once the blob is synced and the rows committed
        "POSTERN_CHECK_AUTHENTICATION": "false",  # no SPF/DKIM/DMARC, hence no DNS (Postfix checks nothing either)
        "POSTERN_DOMAIN": POSTERN_DOMAIN,
        "POSTERN_HOSTNAME": "mx.bench.test",
        "POSTERN_ALIAS_DOMAINS": ALIAS_DOMAIN,
        "POSTERN_OUTBOUND_RELAY": f"127.0.0.1:{sink_port}",
        "POSTERN_OUTBOUND_RELAY_TLS": "none",
        "POSTERN_DNS_SERVERS": "127.0.0.1:9",  # nothing should need DNS; if something does, it fails fast
        "POSTERN_SMTP_CONNECTIONS_PER_IP": str(max(20, connections + 4)),
        "POSTERN_ADMIN_TOKEN": secrets.token_urlsafe(24),
        "POSTERN_ARGON2_TIME_COST": "1",
        "POSTERN_ARGON2_MEMORY_KIB": "8",
        "POSTERN_DEFAULT_FORWARDS": str(10**9),
        "POSTERN_DEFAULT_RECIPIENTS": str(10**9),
        "POSTERN_LOG_LEVEL": "warning",
        "POSTERN_MAIL_WORKERS": workers,
    }
    if database_url:
        env["POSTERN_DATABASE_URL"] = database_url
    return env


async def _seed_postern(env: dict[str, str], aliases: int, hosted: bool) -> dict[str, float]:
    """Writes the user, its mailboxes and aliases (or, ``hosted``, users with those
    addresses) with postern's own code, before the server starts."""
    from postern.accounts.addressing import normalise_address
    from postern.accounts.service import NewUser
    from postern.config import Settings
    from postern.serve.runtime import Runtime
    from postern.storage import aliases as alias_store
    from postern.storage import mailboxes as mailbox_store
    from postern.storage.ids import now_ms

    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("POSTERN_")}
    os.environ.update(env)
    try:
        settings = Settings()
    finally:
        for k in env:
            os.environ.pop(k, None)
        os.environ.update(saved)
    runtime = Runtime.build(settings)
    t0 = time.perf_counter()
    try:
        await runtime.start(create_token=False)
        if hosted:
            for i in range(aliases):
                await runtime.accounts.create_user(NewUser(username=f"a{i}", password=None, address=f"a{i}@{ALIAS_DOMAIN}"))
        else:
            user_id = await runtime.accounts.create_user(
                NewUser(username="bench", password=None, address=f"bench@{POSTERN_DOMAIN}", email=f"owner@{OUTSIDE_DOMAIN}")
            )
            created = now_ms()
            async with runtime.db.write() as conn:
                for i in range(aliases):
                    box = normalise_address(f"m{i}@{OUTSIDE_DOMAIN}")
                    mailbox_id = await mailbox_store.insert(
                        conn,
                        {"user_id": user_id, "email": box.display, "email_key": box.key, "verified": True, "is_default": i == 0, "created_ms": created},
                    )
                    alias = normalise_address(f"a{i}@{ALIAS_DOMAIN}")
                    await alias_store.insert_alias(
                        conn, user_id=user_id, email=alias.display, email_key=alias.key, mailbox_ids=[mailbox_id], created_ms=created
                    )
    finally:
        await runtime.close()
    return {"seeding s": time.perf_counter() - t0}


def run_postern(root: Path, round_: int, sink: Sink, messages: list[Message], args: argparse.Namespace, hosted: bool) -> tuple[Run, dict[str, Any]]:
    database_url = None
    schema = None
    if args.database_url:
        schema = f"bench_{secrets.token_hex(4)}"
        database_url = args.database_url
    env = postern_settings(root, database_url, sink.port, args.connections, args.workers)
    if schema:
        env["POSTERN_DATABASE_SCHEMA"] = schema
    env.update(item.split("=", 1) for item in args.postern_env)
    try:
        extra = asyncio.run(_seed_postern(env, args.aliases, hosted))
        smtp_port = free_port()
        env["POSTERN_SMTP_LISTEN"] = f"127.0.0.1:{smtp_port}"
        if args.profile:
            env.update(profile_environment(root, args.profile.resolve()))
        server = ServeProcess(env)
        try:
            server.wait_ready()
            target = "postern hosted" if hosted else "postern forward"
            go = Path(str(args.profile.resolve()) + ".go") if args.profile else None
            if go is not None:
                go.touch()
            try:
                run = measure(target, round_, smtp_port, server.pid, None if hosted else sink, messages, args)
            finally:
                if go is not None:
                    go.unlink(missing_ok=True)
        finally:
            code = server.stop()
        if not run.complete or run.bad:
            run.examples += asyncio.run(_postern_state(env))
            run.examples += [line for line in server.output if "ERROR" in line or "Traceback" in line or "rror:" in line][:5]
    finally:
        if schema:
            asyncio.run(_drop_schema(database_url, schema))
    if code not in (0, None):
        print(f"  postern exited with {code}:\n" + "\n".join(server.output[-20:]))
    if args.profile:
        show_profile(args.profile, run.seconds, run.messages)
    return run, extra


async def _postern_state(env: dict[str, str]) -> list[str]:
    """Where the messages are when the sink did not get them all: the outbound queue's
    rows by state (with a last response) and the messages stored."""
    from sqlalchemy import func, select

    from postern.config import Settings
    from postern.storage.database import Database
    from postern.storage.schema import messages as message_rows
    from postern.storage.schema import outbound

    settings = Settings(data_dir=Path(env["POSTERN_DATA_DIR"]), database_url=env.get("POSTERN_DATABASE_URL"), database_schema=env.get("POSTERN_DATABASE_SCHEMA"))
    db = Database(settings.resolved_database_url, schema=settings.database_schema)
    try:
        async with db.read() as conn:
            states = (await conn.execute(select(outbound.c.state, func.count(), func.max(outbound.c.last_response)).group_by(outbound.c.state))).all()
            stored = await conn.scalar(select(func.count()).select_from(message_rows))
    finally:
        await db.close()
    found = [f"postern outbound queue: {n:,} {state} (a last response: {last!r})" for state, n, last in states] or ["postern outbound queue: empty"]
    return found + [f"postern messages stored: {stored:,}"]


async def _drop_schema(url: str, schema: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from postern.config import async_database_url

    engine = create_async_engine(async_database_url(url))
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        await engine.dispose()


def forwarding_available() -> bool:
    return FORWARDING_MODULE.exists()


# Profiling (--profile) ---------------------------------------------------------------
# Every Python process of postern (``serve`` and its mail workers) imports a
# sitecustomize.py that this script writes and puts on PYTHONPATH; it calls
# ``install_profiler``, which samples the stacks of all the process's threads 200
# times a second (unlike cProfile it sees through coroutines and SQLAlchemy's
# greenlets), times the database's write transactions, and at the end (and every 5
# seconds) writes <prefix>.<role>.<pid>.{stacks,writes,threads}.

SITECUSTOMIZE = """\
import sys
sys.path.insert(0, {bench!r})
import alias_forwarding
alias_forwarding.install_profiler({prefix!r})
"""


def profile_environment(root: Path, prefix: Path) -> dict[str, str]:
    hook = root / "profile-hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE.format(bench=str(Path(__file__).resolve().parent), prefix=str(prefix)))
    prefix.parent.mkdir(parents=True, exist_ok=True)
    for old in prefix.parent.glob(prefix.name + ".*"):
        old.unlink()
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH", "")) if p)}


def install_profiler(prefix: str) -> None:
    import atexit
    import collections
    import threading

    role = "worker" if "mail_worker" in " ".join(getattr(sys, "orig_argv", sys.argv)) else "serve"
    # The sampler needs the GIL to look: with the default 5 ms switch interval it
    # would mostly see the event loop idle (the moments the GIL is free) and miss the
    # short bursts of Python between; 0.2 ms makes it see them, at some cost.
    sys.setswitchinterval(0.0002)
    base = f"{prefix}.{role}.{os.getpid()}"
    counts: collections.Counter[str] = collections.Counter()
    stop = threading.Event()
    main_id = threading.main_thread().ident
    writes = _time_database_writes()
    cpu0 = _thread_cpu()

    go = Path(prefix + ".go")  # the bench makes it while it measures: only then are samples kept
    measuring = [False]  # the sampler looks at `go`; the statement counter reads this
    statements = _count_statements(measuring)
    short_names: dict[str, str] = {}

    def short(filename: str) -> str:
        name = short_names.get(filename)
        if name is None:
            match = re.search(r"(?:/src/|/site-packages/|/lib/python3\.\d+/)(.+)$", filename)
            name = short_names[filename] = match.group(1) if match else Path(filename).name
        return name

    def label(code: Any) -> str:
        return f"{code.co_name} ({short(code.co_filename)}:{code.co_firstlineno})"

    def thread_name(name: str) -> str:
        return re.sub(r"[-_ ]?\d+.*$", "", name) or "thread"

    def dump() -> None:
        Path(base + ".stacks").write_text("".join(f"{stack} {n}\n" for stack, n in counts.copy().most_common()))
        Path(base + ".writes").write_text(json.dumps({**writes.copy(), **{f"statements: {k}": [v, 0, 0, 0] for k, v in statements.copy().items()}}))
        cpu = _thread_cpu()
        Path(base + ".threads").write_text(json.dumps({k: cpu.get(k, 0.0) - cpu0.get(k, 0.0) for k in cpu}))

    def sample() -> None:
        me = threading.get_ident()
        last = time.monotonic()
        ticks = 0
        while not stop.wait(0.005):
            measuring[0] = go.exists()
            if not measuring[0]:
                continue
            names = {t.ident: t.name for t in threading.enumerate()}
            for tid, frame in sys._current_frames().items():
                if tid == me:
                    continue
                stack = []
                while frame is not None:
                    stack.append(label(frame.f_code))
                    frame = frame.f_back
                thread = "main" if tid == main_id else thread_name(names.get(tid, "thread"))
                counts[";".join([thread, *reversed(stack)])] += 1
            ticks += 1
            if ticks % 100 == 0:
                _thread_cpu()  # note the threads while they live
            if time.monotonic() - last > 5:
                last = time.monotonic()
                dump()

    sampler = threading.Thread(target=sample, name="bench-sampler", daemon=True)

    def finish() -> None:
        stop.set()
        sampler.join(2)
        dump()

    sampler.start()
    atexit.register(finish)


_THREADS: dict[int, tuple[str, float, float]] = {}  # native id: name, user s, system s (kept after a thread ends)


def _thread_cpu() -> dict[str, float]:
    """User and system CPU seconds of this process's threads so far, by Python thread
    name ("main user", "main sys", "Thread user", ...; "other": not a Python thread),
    the threads that have ended included (as last seen)."""
    import threading

    names = {t.native_id: ("main" if t is threading.main_thread() else re.sub(r"[-_ ]?\d+.*$", "", t.name) or "thread") for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.scandir("/proc/self/task"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/self/task/{entry.name}/stat").read_text().rpartition(")")[2].split()
            tid = int(entry.name)
            name = names.get(tid) or (_THREADS[tid][0] if tid in _THREADS else "other")
            _THREADS[tid] = (name, int(fields[11]) / tick, int(fields[12]) / tick)
    found: dict[str, float] = {}
    for name, user, system in list(_THREADS.values()):
        found[f"{name} user"] = found.get(f"{name} user", 0.0) + user
        found[f"{name} sys"] = found.get(f"{name} sys", 0.0) + system
    return found


def _count_statements(measuring: list[bool]) -> dict[str, int]:
    """SQL statements sent while the bench measures, by their first word."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    counts: dict[str, int] = {}

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if measuring[0]:
            word = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "?"
            counts[word] = counts.get(word, 0) + 1

    event.listen(Engine, "before_cursor_execute", count)
    return counts


def _time_database_writes() -> dict[str, list[float]]:
    """Wraps postern's ``Database.write`` and ``writer_turn`` (the database's single
    writer on SQLite) to time, per caller: waiting for the turn, the transaction's
    body, and its commit (with synchronous=FULL, the fsync)."""
    from contextlib import asynccontextmanager

    from postern.storage.database import Database

    stats: dict[str, list[float]] = {}
    skip = {"__aenter__", "wrapper", "write", "writer_turn", "helper"}

    def caller() -> str:
        frame = sys._getframe(2)
        while frame is not None and frame.f_code.co_name in skip:
            frame = frame.f_back
        return f"{frame.f_code.co_name} ({Path(frame.f_code.co_filename).name})" if frame else "?"

    def timed(original: Any, kind: str) -> Any:
        @asynccontextmanager
        async def wrapper(self: Any) -> Any:
            if kind == "turn" and (self._write_lock is None or self._turn_owner is asyncio.current_task()):
                async with original(self) as value:
                    yield value
                return
            in_turn = kind == "write" and self._write_lock is not None and self._turn_owner is asyncio.current_task()
            name = f"{'write in a turn' if in_turn else kind}: {caller()}"
            t0 = time.perf_counter()
            async with original(self) as value:
                t1 = time.perf_counter()
                try:
                    yield value
                finally:
                    t2 = time.perf_counter()
            t3 = time.perf_counter()
            entry = stats.setdefault(name, [0, 0.0, 0.0, 0.0])
            entry[0] += 1
            entry[1] += t1 - t0
            entry[2] += t2 - t1
            entry[3] += t3 - t2

        return wrapper

    Database.write = timed(Database.write, "write")  # type: ignore[method-assign]
    Database.writer_turn = timed(Database.writer_turn, "turn")  # type: ignore[method-assign]
    return stats


# Where a main thread waits: the event loop (uvloop's is C code under asyncio.run, so
# its samples end in asyncio.run), or a worker's main thread before its loop runs.
IDLE = ("select (selectors.py", "run_forever (asyncio/base_events.py", "_run_once (asyncio/base_events.py", "run (asyncio/runners.py",
        "main (postern/serve/mail_worker.py")


def show_profile(prefix: Path, seconds: float, messages: int, lines: int = 25) -> None:
    """Per role (serve, worker): thread CPU per message, the write transactions
    per message, and the busy samples of the main threads by function."""
    import collections

    files = sorted(prefix.parent.glob(prefix.name + ".*.stacks"))
    if not files:
        print(f"  no profile was written to {prefix}.*")
        return
    out: list[str] = [f"profile of postern during the run ({len(files)} processes; {messages:,} messages in {seconds:.1f} s)"]
    for role in ("serve", "worker"):
        role_files = [f for f in files if f".{role}." in f.name]
        if not role_files:
            continue
        threads: collections.Counter[str] = collections.Counter()
        writes: dict[str, list[float]] = {}
        inclusive: collections.Counter[str] = collections.Counter()
        leaf: collections.Counter[str] = collections.Counter()
        busy = idle = 0
        for f in role_files:
            base = str(f)[: -len(".stacks")]
            with contextlib.suppress(OSError, ValueError):
                threads.update(json.loads(Path(base + ".threads").read_text()))
            with contextlib.suppress(OSError, ValueError):
                for k, v in json.loads(Path(base + ".writes").read_text()).items():
                    entry = writes.setdefault(k, [0, 0.0, 0.0, 0.0])
                    for i in range(4):
                        entry[i] += v[i]
            for line in f.read_text().splitlines():
                stack, _, n_text = line.rpartition(" ")
                frames = stack.split(";")
                if frames[0] != "main":
                    continue
                n = int(n_text)
                if len(frames) < 2 or frames[-1].startswith(IDLE):
                    idle += n
                    continue
                busy += n
                leaf[frames[-1]] += n
                for frame in dict.fromkeys(frames[1:]):
                    inclusive[frame] += n
        out.append(f"{role} ({len(role_files)} process{'es' if len(role_files) > 1 else ''}): CPU ms per message by thread: "
                   + ", ".join(f"{t} {c / messages * 1000:.2f}" for t, c in threads.most_common() if c > 0))
        if writes:
            out.append("  write transactions (SQLite's one writer): calls per message, mean ms waiting / in the body / committing, held s in all")
            counted = {k.partition(": ")[2]: v[0] for k, v in writes.items() if k.startswith("statements: ")}
            writes = {k: v for k, v in writes.items() if not k.startswith("statements: ")}
            if counted:
                out.append(f"  SQL statements per message: {sum(counted.values()) / messages:.1f} ("
                           + ", ".join(f"{k} {v / messages:.1f}" for k, v in sorted(counted.items(), key=lambda kv: -kv[1])) + ")")
            for k, (n, wait, held, commit) in sorted(writes.items(), key=lambda kv: -(kv[1][2] + kv[1][3])):
                out.append(f"    {n / messages:5.2f}  {wait / n * 1000:7.1f} / {held / n * 1000:6.1f} / {commit / n * 1000:5.1f}  {held + commit:6.1f} s  {k}")
        total = busy + idle
        out.append(f"  main threads: {busy:,} of {total:,} samples running Python ({busy / max(total, 1):.0%}); postern's functions, inclusive:")
        out += [f"    {n / busy:6.1%}  {f}" for f, n in inclusive.most_common() if "(postern/" in f][:lines]
        out.append("  self (leaf):")
        out += [f"    {n / busy:6.1%}  {f}" for f, n in leaf.most_common(lines)]
    summary = prefix.with_name(prefix.name + ".summary.txt")
    summary.write_text("\n".join(out) + "\n")
    print(f"  {out[0]} (also in {summary}):")
    print("\n".join("    " + line for line in out[1:]))


# Reporting ---------------------------------------------------------------------------


def report(run: Run) -> None:
    flags = []
    if run.bad:
        flags.append(f"{run.bad} not 250")
    if not run.complete:
        flags.append(f"INCOMPLETE: the sink received {run.delivered:,} of {run.messages:,}")
    elif run.delivered > run.messages:
        flags.append(f"the sink received {run.delivered - run.messages:,} more than sent")
    what = f"{run.rewritten:,} to {OUTSIDE_DOMAIN}, {run.from_rewritten:,} with From rewritten" if run.target.endswith("forward") else (
        f"{run.delivered:,} at the sink" if run.target.startswith("postfix") else "stored (no sink)"
    )
    print(
        f"  round {run.round}  {run.target:<16} {run.rate:>7,.1f} messages/s end to end ({run.seconds:.1f} s; accepted {run.accept_rate:,.1f}/s "
        f"in {run.client_seconds:.1f} s, p50 {run.latency_p50_ms:.0f} ms, p99 {run.latency_p99_ms:.0f} ms; server CPU {run.server_cpu_ms:.2f} ms/message; "
        f"{run.sink_connections} sink connections; {what}; load {run.load_before})" + ("  <-- " + "; ".join(flags) if flags else ""),
        flush=True,
    )
    for example in run.examples[:5]:
        print(f"      {example}")


def machine() -> dict[str, str]:
    disk = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["df", "--output=source,fstype", tempfile.gettempdir()], capture_output=True, text=True, check=False)
        disk = " ".join(out.stdout.splitlines()[-1].split())
    import aiosmtpd

    return {**machine_basics(), "disk": f"{disk} ({tempfile.gettempdir()})", "aiosmtpd": getattr(aiosmtpd, "__version__", "?")}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2000, help="messages per target and round (default 2,000)")
    parser.add_argument("--connections", type=int, default=20, help="concurrent SMTP connections, each carrying many transactions (default 20)")
    parser.add_argument("--aliases", type=int, default=100, help="aliases a0..aN-1@alias.test, each forwarding to m<i>@outside.test (default 100)")
    parser.add_argument("--size", type=int, default=20_000, help="average message size in bytes (default 20,000; each within +-25%%)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over the targets, each with a fresh queue; the median counts (default 3)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 200 messages, one round")
    parser.add_argument("--seed", type=int, default=20240506, help="seed of the messages and their recipients")
    parser.add_argument("--postern-mode", choices=("auto", "forward", "hosted"), default="auto",
                        help="forward: to aliases (the measurement); hosted: the same addresses as hosted users, plain delivery; "
                        "auto (default): forward when postern has src/postern/aliases/forwarding.py")
    parser.add_argument("--targets", default="postfix,postern", help="comma-separated: postfix, postern (default both)")
    parser.add_argument("--database-url", help="postern on PostgreSQL (a fresh schema per run, dropped afterwards) instead of SQLite")
    parser.add_argument("--workers", default="auto", help="POSTERN_MAIL_WORKERS: auto (one per CPU, default) or a number")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the sink after the client is done (default 300)")
    parser.add_argument("--postern-env", action="append", default=[], metavar="POSTERN_X=VALUE",
                        help="a setting for postern (repeatable), e.g. POSTERN_FSYNC=false to see what the syncs cost (diagnosis only)")
    parser.add_argument("--profile", type=Path, help="profile postern's processes (stacks sampled 200/s, write transactions timed, thread CPU) into files named PREFIX.*, "
                        "summary printed and in PREFIX.summary.txt; use with --targets postern; rates are a little lower")
    parser.add_argument("--install", action="store_true", help="install Postfix if it is missing (needs root)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (Postfix config, queue and log; postern data)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    args = parser.parse_args()
    if args.quick:
        args.messages, args.rounds = 200, 1
    if args.messages < 1 or args.connections < 1 or args.aliases < 1 or args.rounds < 1:
        parser.error("--messages, --connections, --aliases and --rounds must be positive")
    if args.size < 2000:
        parser.error("--size must be at least 2000")
    if any("=" not in item or not item.startswith("POSTERN_") for item in args.postern_env):
        parser.error("--postern-env: POSTERN_NAME=VALUE")
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if not set(args.targets) <= {"postfix", "postern"} or not args.targets:
        parser.error("--targets: postfix and/or postern")
    return args


def main() -> int:
    args = parse_args()
    sink = Sink()  # first: it forks, and must not inherit threads
    try:
        return _main(args, sink)
    finally:
        sink.stop()


def _main(args: argparse.Namespace, sink: Sink) -> int:
    if "postfix" in args.targets:
        if os.geteuid() != 0:
            print("The Postfix baseline runs a Postfix master, which needs root. Run as root, or with --targets postern.")
            return 2
        if not postfix_installed():
            if not args.install:
                print(f"Postfix is not installed. On Debian or Ubuntu, as root:\n    {INSTALL_COMMAND}\nor run with --install.")
                return 2
            install_postfix()
    hosted = args.postern_mode == "hosted" or (args.postern_mode == "auto" and not forwarding_available())
    info = machine()
    if "postfix" in args.targets:
        info["postfix"] = postfix_version()
    info["database"] = "PostgreSQL" if args.database_url else "SQLite"
    if args.postern_env:
        info["postern env"] = " ".join(args.postern_env)
    print("postern alias forwarding benchmark: SMTP in, rewritten, SMTP out to a sink; against a Postfix relay")
    for key, value in info.items():
        print(f"  {key + ':':<12} {value}")
    if hosted and "postern" in args.targets:
        why = "asked for" if args.postern_mode == "hosted" else f"{FORWARDING_MODULE.relative_to(FORWARDING_MODULE.parents[3])} does not exist yet"
        print(f"  postern mode: HOSTED ({why}): plain delivery to hosted users, measured to the client's last 250, not forwarding")

    t0 = time.perf_counter()
    messages = generate(args.messages, args.aliases, args.size, args.seed)
    total = sum(m.size for m in messages)
    print(
        f"\n{len(messages):,} messages generated in {time.perf_counter() - t0:.1f} s (seed {args.seed}): {total / 1e6:.1f} MB, "
        f"average {total / len(messages):,.0f} bytes ({min(m.size for m in messages):,}..{max(m.size for m in messages):,}), "
        f"to {args.aliases} aliases @{ALIAS_DOMAIN}"
    )
    print(f"{args.connections} connections, each carrying transactions until the messages run out; {args.rounds} round(s); sink on port {sink.port}")
    print(f"load average before: {load_average()}\n")

    temp = Path(tempfile.mkdtemp(prefix="postern-bench-alias-"))
    runs: list[Run] = []
    setup: list[dict[str, Any]] = []
    targets = [("postfix relay" if t == "postfix" else "postern hosted" if hosted else "postern forward") for t in args.targets]
    try:
        for round_ in range(1, args.rounds + 1):
            order = targets if round_ % 2 else targets[::-1]
            for target in order:
                root = temp / f"round{round_}" / target.replace(" ", "-")
                root.mkdir(parents=True)
                if target == "postfix relay":
                    run = run_postfix(root, round_, sink, messages, args)
                else:
                    run, extra = run_postern(root, round_, sink, messages, args, hosted)
                    setup.append(extra)
                runs.append(run)
                report(run)
                if not args.keep:
                    shutil.rmtree(root, ignore_errors=True)
        print(f"load average after:  {load_average()}")
    finally:
        if args.keep:
            print(f"\nkept {temp}")
        else:
            shutil.rmtree(temp, ignore_errors=True)

    median = {t: statistics.median(r.rate for r in runs if r.target == t) for t in targets}
    accept = {t: statistics.median(r.accept_rate for r in runs if r.target == t) for t in targets}
    cpu = {t: statistics.median(r.server_cpu_ms for r in runs if r.target == t) for t in targets}
    bad = sum(r.bad for r in runs)
    incomplete = [r for r in runs if not r.complete]
    print(f"\nresults: median of {args.rounds} round(s); {args.messages:,} messages of ~{args.size:,} bytes, {args.connections} connections, {args.aliases} aliases")
    print(f"  {'target':<16} {'messages/s end to end':>21}  {'accepted/s':>10}  {'server CPU ms/msg':>17}")
    for t in targets:
        print(f"  {t:<16} {median[t]:>21,.1f}  {accept[t]:>10,.1f}  {cpu[t]:>17.2f}")
    ratio = None
    per_round: list[float] = []
    if "postfix relay" in targets and len(targets) == 2:
        other = targets[1] if targets[0] == "postfix relay" else targets[0]
        ratio = median[other] / median["postfix relay"]
        per_round = [
            next(r.rate for r in runs if r.round == n and r.target == other) / next(r.rate for r in runs if r.round == n and r.target == "postfix relay")
            for n in range(1, args.rounds + 1)
        ]
        print()
        print(f"  postfix relay:   {median['postfix relay']:,.1f} messages/s")
        print(f"  {other}: {median[other]:,.1f} messages/s")
        note = "" if other == "postern forward" else "  (NOT the target: postern delivered to hosted users, no forwarding)"
        print(
            f"  {other} / postfix relay: {ratio:.2f} (per round: {', '.join(f'{x:.2f}' for x in per_round)})  "
            f"target >= {TARGET_RATIO:.1f}  {verdict(ratio >= TARGET_RATIO) if other == 'postern forward' else '-'}{note}"
        )
    print(f"  every reply 250:               {'yes' if bad == 0 else f'NO ({bad} transactions were not)'}")
    print(f"  the sink received every message: {'yes' if not incomplete else 'NO: ' + '; '.join(f'{r.target} round {r.round}: {r.delivered:,}' for r in incomplete)}")

    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "date": datetime.now(UTC).isoformat(timespec="seconds"),
                    "machine": info,
                    "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                    "messages bytes": total,
                    "runs": [asdict(r) for r in runs],
                    "median": median,
                    "accepted median": accept,
                    "server cpu ms per message": cpu,
                    "ratio": ratio,
                    "ratio per round": per_round,
                    "postern setup": setup,
                },
                indent=2,
            )
            + "\n"
        )
        print(f"  results written to {args.json}")
    return 0 if bad == 0 and not incomplete else 1


if __name__ == "__main__":
    sys.exit(main())
