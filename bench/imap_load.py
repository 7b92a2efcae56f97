#!/usr/bin/env python3
"""Benchmark: IMAP under load, postern against Dovecot, in one run.

Seeds the same messages (M per user, about 3 KB each, from a fixed seed) for the same
U users into postern and into Dovecot (Debian's ``dovecot-imapd`` and
``dovecot-lmtpd``, maildir, passwd-file users), both through their LMTP doors, then
measures three figures, each beside Dovecot's in the same run:

1. **Operations per second** under load. C clients (each a user's session), in a
   loop until the round's time is up: LOGIN, SELECT INBOX, FETCH 1:100 (FLAGS
   ENVELOPE), STORE +FLAGS (\\Seen) on a few messages, APPEND a message, SEARCH
   UNSEEN, SEARCH FROM <name>, SEARCH SUBJECT <word>, an IDLE wake-up (a second,
   long-lived connection of the same client idles on the INBOX; the APPEND wakes it:
   the operation is IDLE, the EXISTS, DONE and its OK), LOGOUT. Target (issue 5):
   postern's operations per second at least Dovecot's (ratio >= 1.0).
2. **10,000 concurrent IDLE connections** (LOGIN, SELECT, IDLE each), opened from
   several client processes: the resident memory (VmRSS) of postern's processes (the
   serving process and its mail workers, which hold the IMAP sessions) before and
   after, per connection. Target: <= 50 KB per connection. Dovecot's total
   (RSS and PSS over all its processes, with ``service imap { client_limit }``) for
   the same connections is the baseline. Then one message goes to every user and the
   time until every connection has seen its EXISTS is printed.
3. **LMTP delivery -> IDLE EXISTS latency**: one client idles on user0's INBOX, and
   messages are delivered one at a time over LMTP; the time from the last byte of
   DATA to the ``* n EXISTS`` line. Median over the deliveries; target <= 50 ms.

    .venv/bin/python bench/imap_load.py              # full size
    .venv/bin/python bench/imap_load.py --quick      # a smoke run, a minute or two
    .venv/bin/python bench/imap_load.py --install    # apt-get install Dovecot first (root)

This is a measurement: it exits 0 once it has measured, PASS or FAIL (1 if commands
failed, 2 if it could not run). Method and recorded figures: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import grp
import json
import multiprocessing as mp
import os
import pwd
import random
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from common import COMMON_WORDS, FIRST_NAMES, LAST_NAMES, TOPICS, ServeProcess, free_port, load_average, machine_basics, sentence, verdict
from smtp_delivery import Api, Message, _deliver, dot_stuff, dovecot_binary, dovecot_version, mail_owner, session_cpu_seconds
from smtp_delivery import Connection as LmtpConnection

DOMAIN = "example.com"
PASSWORD = "bench-imap-password"
INSTALL_COMMAND = "apt-get update && apt-get install -y dovecot-imapd dovecot-lmtpd dovecot-core"
TARGET_RATIO = 1.0  # postern operations/s divided by Dovecot's
TARGET_KB_PER_IDLE = 50.0
TARGET_EXISTS_MS = 50.0
WORDS = COMMON_WORDS + "mailbox folder inbox sync flag unread archive draft reply thread".split()
OPERATIONS = ("LOGIN", "SELECT", "FETCH", "STORE", "APPEND", "SEARCH UNSEEN", "SEARCH FROM", "SEARCH SUBJECT", "IDLE wake-up", "LOGOUT")


def run_loop(coro: Any) -> Any:
    try:
        import uvloop  # cheaper for the load generator, which shares the CPUs

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


# Messages ---------------------------------------------------------------------------


def make_raw(i: int, user: int, rng: random.Random, base: datetime) -> tuple[str, bytes]:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    sender = f"{first.lower()}.{re.sub(r'[^a-z]', '', last.lower())}@example.org"
    date = format_datetime(base + timedelta(seconds=i * 61 + rng.randint(0, 60)))
    subject = f"{TOPICS[i % len(TOPICS)]} #{i}: {' '.join(rng.choice(WORDS) for _ in range(rng.randint(2, 5)))}"
    body: list[str] = []
    while sum(len(b) + 2 for b in body) < rng.randint(1500, 4000):
        body += [sentence(rng, WORDS), ""]
    head = [
        f"Received: from mx.example.org (mx.example.org [192.0.2.{i % 250 + 1}]) by mx.{DOMAIN}; {date}",
        f"From: {first} {last} <{sender}>",
        f"To: User {user} <user{user}@{DOMAIN}>",
        f"Subject: {subject}",
        f"Date: {date}",
        f"Message-ID: <{i}.{rng.getrandbits(48):012x}@example.org>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ]
    return sender, ("\r\n".join(head) + "\r\n\r\n" + "\r\n".join(body) + "\r\n").encode()


def seed_messages(users: int, per_user: int, seed: int) -> list[Message]:
    rng = random.Random(seed)
    base = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
    out = []
    for n in range(per_user):
        for user in range(users):
            i = n * users + user
            sender, raw = make_raw(i, user, rng, base)
            out.append(Message(i, user, sender, len(raw), dot_stuff(raw)))
    return out


# An IMAP client over asyncio streams -------------------------------------------------

_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")


class Imap:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.tag = 0

    @classmethod
    async def open(cls, port: int) -> Imap:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        client = cls(reader, writer)
        greeting = await client.line()
        if not greeting.startswith(b"* OK"):
            raise ConnectionError(f"greeting: {greeting!r}")
        return client

    async def line(self) -> bytes:
        out = await self.reader.readuntil(b"\r\n")
        while True:
            m = _LITERAL.search(out)
            if not m:
                return out
            out += await self.reader.readexactly(int(m.group(1)))
            out += await self.reader.readuntil(b"\r\n")

    async def until(self, tag: bytes) -> tuple[list[bytes], bytes]:
        lines = []
        while True:
            line = await self.line()
            if line.startswith(tag):
                return lines, line
            lines.append(line)

    async def command(self, text: bytes) -> tuple[list[bytes], bytes]:
        self.tag += 1
        tag = b"t%d " % self.tag
        self.writer.write(tag + text + b"\r\n")
        return await self.until(tag)

    async def ok(self, text: bytes) -> list[bytes]:
        lines, tagged = await self.command(text)
        if tagged.split(b" ", 2)[1] != b"OK":
            raise CommandFailed(f"{text[:60]!r}: {tagged.strip()!r}")
        return lines

    async def append(self, mailbox: bytes, raw: bytes) -> None:
        # LITERAL+ (both servers offer it): one round trip.
        self.tag += 1
        tag = b"t%d " % self.tag
        self.writer.write(tag + b"APPEND " + mailbox + b" {%d+}\r\n" % len(raw) + raw + b"\r\n")
        _, tagged = await self.until(tag)
        if tagged.split(b" ", 2)[1] != b"OK":
            raise CommandFailed(f"APPEND: {tagged.strip()!r}")

    async def idle_start(self) -> bytes:
        self.tag += 1
        tag = b"t%d " % self.tag
        self.writer.write(tag + b"IDLE\r\n")
        while True:
            line = await self.line()
            if line.startswith(b"+"):
                return tag
            if line.startswith(tag):
                raise CommandFailed(f"IDLE: {line.strip()!r}")

    async def wait_exists(self) -> bytes:
        while True:
            line = await self.line()
            if line.endswith(b" EXISTS\r\n"):
                return line

    async def idle_done(self, tag: bytes) -> None:
        self.writer.write(b"DONE\r\n")
        _, tagged = await self.until(tag)
        if tagged.split(b" ", 2)[1] != b"OK":
            raise CommandFailed(f"IDLE DONE: {tagged.strip()!r}")

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 2)


class CommandFailed(Exception):
    pass


def quote(text: str) -> bytes:
    return b'"' + text.replace("\\", "\\\\").replace('"', '\\"').encode() + b'"'


# Servers ----------------------------------------------------------------------------


@dataclass
class Target:
    name: str  # "postern" or "dovecot"
    imap_port: int
    lmtp_port: int
    pid: int  # the serving process (postern) / the master (dovecot), leader of its session

    def login(self, user: int) -> bytes:
        name = f"user{user}" if self.name == "postern" else f"user{user}@{DOMAIN}"
        return b"LOGIN " + quote(name) + b" " + quote(PASSWORD)


class Postern(ServeProcess):
    def __init__(self, data_dir: Path, token: str, workers: str, extra: dict[str, str] | None = None):
        self.http_port, self.lmtp_port, self.imap_port = free_port(), free_port(), free_port()
        super().__init__(
            {
                "POSTERN_DATA_DIR": str(data_dir),
                "POSTERN_HTTP_LISTEN": f"127.0.0.1:{self.http_port}",
                "POSTERN_LMTP_LISTEN": f"127.0.0.1:{self.lmtp_port}",
                "POSTERN_IMAP_LISTEN": f"127.0.0.1:{self.imap_port}",
                "POSTERN_DOORS": "http,lmtp,imap",
                "POSTERN_FSYNC": "true",  # durable, as Dovecot's mail_fsync=optimized
                "POSTERN_ADMIN_TOKEN": token,
                "POSTERN_ARGON2_TIME_COST": "1",  # cheap password hashes: LOGIN is measured, not argon2
                "POSTERN_ARGON2_MEMORY_KIB": "8",
                "POSTERN_DOMAIN": DOMAIN,
                "POSTERN_LOG_LEVEL": "warning",
                "POSTERN_MAIL_WORKERS": workers,
                "POSTERN_IMAP_CONNECTIONS_PER_IP": "100000",  # every client comes from 127.0.0.1 (Dovecot's limit is raised too)
                **(extra or {}),  # --postern-env: for diagnosis (such as POSTERN_FSYNC=false)
            }
        )


def create_users(api: Api, users: int) -> None:
    for n in range(users):
        status, body = api.call("POST", "/users", {"username": f"user{n}", "password": PASSWORD, "address": f"user{n}@{DOMAIN}"})
        if status != 200 or not body.get("success"):
            raise SystemExit(f"creating user{n} failed: {status} {body}")


def dovecot_installed() -> bool:
    if dovecot_binary() is None:
        return False
    libexec = [Path("/usr/lib/dovecot"), Path("/usr/libexec/dovecot"), Path("/usr/local/libexec/dovecot")]
    return any((d / "lmtp").exists() and (d / "imap").exists() for d in libexec)


def install_dovecot() -> None:
    if os.geteuid() != 0:
        raise SystemExit(f"--install runs apt-get and needs root; run as root: {INSTALL_COMMAND}")
    print(f"installing Dovecot: {INSTALL_COMMAND}", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "dovecot-imapd", "dovecot-lmtpd", "dovecot-core"], check=True, env=env)
    if not dovecot_installed():
        raise SystemExit("apt-get finished but Dovecot's imap or lmtp is still not found")


def dovecot_config(root: Path, imap_port: int, lmtp_port: int, users: int, client_limit: int) -> str:
    """Dovecot's IMAP and LMTP on loopback, maildir, passwd-file users. Defaults
    everywhere else, except the limits a benchmark from one address needs, and, for
    the many-connections figure, ``client_limit`` connections per imap process."""
    uid, gid, _ = mail_owner()
    (root / "passwd").write_text("".join(f"user{n}@{DOMAIN}:{{PLAIN}}{PASSWORD}::::::\n" for n in range(users)))
    os.chmod(root / "passwd", 0o644)
    lines = [
        "# Written by bench/imap_load.py: Dovecot's IMAP and LMTP, on loopback, for one run.",
        f"base_dir = {root}/run",
        f"state_dir = {root}/state",
        f"log_path = {root}/dovecot.log",
        f"info_log_path = {root}/dovecot.log",
        "protocols = imap lmtp",
        "ssl = no",
        "disable_plaintext_auth = no",
        "auth_mechanisms = plain login",
        "first_valid_uid = 0",
        f"mail_location = maildir:{root}/mail/%u",
        "passdb {",
        "  driver = passwd-file",
        f"  args = scheme=PLAIN {root}/passwd",
        "}",
        "userdb {",
        "  driver = static",
        f"  args = uid={uid} gid={gid} home={root}/mail/%u",
        "}",
        "protocol imap {",
        "  mail_max_userip_connections = 100000",  # every client comes from 127.0.0.1
        "}",
        "service lmtp {",
        "  inet_listener lmtp {",
        "    address = 127.0.0.1",
        f"    port = {lmtp_port}",
        "  }",
        "}",
        "service imap-login {",
        "  inet_listener imap {",
        "    address = 127.0.0.1",
        f"    port = {imap_port}",
        "  }",
        "  inet_listener imaps {",
        "    port = 0",
        "  }",
        "  process_limit = 1024",
        "}",
    ]
    if client_limit > 1:
        lines += [
            "default_client_limit = 20000",
            "service imap {",
            f"  client_limit = {client_limit}",
            "  service_count = 0",  # the default, 1, ends a process after its one client
            "  process_limit = 1024",
            "}",
        ]
    if os.geteuid() != 0:
        user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
        lines += [
            f"default_internal_user = {user}",
            f"default_login_user = {user}",
            f"default_internal_group = {group}",
            "service anvil {",
            "  chroot =",
            "}",
            "service imap-login {",
            "  chroot =",
            "}",
        ]
    return "\n".join(lines) + "\n"


class Dovecot:
    def __init__(self, root: Path, users: int, client_limit: int = 1):
        self.root = root
        self.imap_port, self.lmtp_port = free_port(), free_port()
        for sub in ("run", "state", "mail"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        uid, gid, _ = mail_owner()
        if os.geteuid() == 0:
            for path in (root, *root.parents):
                if path == Path(tempfile.gettempdir()) or path == Path("/"):
                    break
                os.chmod(path, os.stat(path).st_mode | 0o011)
            os.chown(root / "mail", uid, gid)
        self.conf = root / "dovecot.conf"
        self.conf.write_text(dovecot_config(root, self.imap_port, self.lmtp_port, users, client_limit))
        self.log = root / "dovecot.log"
        self.process = subprocess.Popen(
            [dovecot_binary() or "dovecot", "-F", "-c", str(self.conf)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        ready = set()
        while time.monotonic() < deadline and self.process.poll() is None:
            for port, greeting in ((self.imap_port, b"* OK"), (self.lmtp_port, b"220")):
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    if s.recv(256).startswith(greeting):
                        ready.add(port)
            if len(ready) == 2:
                return
            time.sleep(0.1)
        output = self.process.stdout.read() if self.process.poll() is not None and self.process.stdout else ""
        log = self.log.read_text() if self.log.exists() else "(no log)"
        self.stop()
        raise SystemExit(f"dovecot did not start (exit {self.process.returncode}):\n{output}\n--- {self.log}:\n{log}")

    def errors(self) -> list[str]:
        if not self.log.exists():
            return []
        return [line for line in self.log.read_text(errors="replace").splitlines() if ": Error: " in line or ": Fatal: " in line]

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode


# Memory -----------------------------------------------------------------------------


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def session_memory_kb(sid: int) -> tuple[int, int, int]:
    """(RSS, PSS, processes) summed over every process of session ``sid``."""
    rss = pss = count = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{entry.name}/stat").read_text().rpartition(")")[2].split()
            if int(stat[3]) != sid:
                continue
            rss += _status_kb(int(entry.name), "VmRSS")
            for line in Path(f"/proc/{entry.name}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
            count += 1
    return rss, pss, count


# 1. Operations per second --------------------------------------------------------------


@dataclass
class LoadRun:
    target: str
    round: int
    seconds: float
    operations: int
    rate: float
    errors: int
    examples: list[str] = field(default_factory=list)
    median_ms: dict[str, float] = field(default_factory=dict)  # per operation
    server_cpu_ms: float = 0.0  # per operation
    client_cpu_ms: float = 0.0
    load_before: str = ""
    idle: bool = True  # False: the loop without its IDLE wake-up (--load-modes no-idle)


async def _load(
    target: Target, clients: int, users: int, duration: float, seed: int, with_idle: bool = True
) -> tuple[float, int, int, list[str], dict[str, list[float]]]:
    times: dict[str, list[float]] = defaultdict(list)
    operations = errors = 0
    examples: list[str] = []
    rng = random.Random(seed)
    base = datetime(2024, 6, 1, tzinfo=UTC)

    async def idler_for(user: int) -> Imap | None:
        if not with_idle:
            return None
        idler = await Imap.open(target.imap_port)
        await idler.ok(target.login(user))
        await idler.ok(b"SELECT INBOX")
        return idler

    idlers = await asyncio.gather(*(idler_for(k % users) for k in range(clients)))
    started = time.perf_counter()
    deadline = started + duration

    async def client(k: int, idler: Imap | None) -> None:
        nonlocal operations, errors
        user = k % users
        crng = random.Random(rng.getrandbits(64))
        n = 0
        while time.perf_counter() < deadline:
            n += 1
            step = "connect"
            try:
                imap = await Imap.open(target.imap_port)
                t = time.perf_counter()

                def lap(name: str) -> None:
                    nonlocal t, operations
                    now = time.perf_counter()
                    times[name].append(now - t)
                    operations += 1
                    t = now

                step = "LOGIN"
                await imap.ok(target.login(user))
                lap(step)
                step = "SELECT"
                lines = await imap.ok(b"SELECT INBOX")
                exists = next(int(line.split()[1]) for line in lines if line.endswith(b" EXISTS\r\n"))
                lap(step)
                step = "FETCH"
                fetched = await imap.ok(b"FETCH 1:100 (FLAGS ENVELOPE)")
                if sum(1 for line in fetched if b" FETCH (" in line) < min(100, exists):
                    raise CommandFailed(f"FETCH answered {len(fetched)} lines for {exists} messages")
                lap(step)
                step = "STORE"
                seqs = sorted(crng.sample(range(1, exists + 1), min(5, exists)))
                await imap.ok(b"STORE " + ",".join(map(str, seqs)).encode() + b" +FLAGS (\\Seen)")
                lap(step)
                step = "APPEND"
                # The idler's IDLE starts first; the APPEND wakes it (the IDLE wake-up below).
                idle_t0 = time.perf_counter()
                idle_tag = await idler.idle_start() if idler is not None else b""
                idle_setup = time.perf_counter() - idle_t0
                t = time.perf_counter()
                _, raw = make_raw(1_000_000 + k * 100_000 + n, user, crng, base)
                await imap.append(b"INBOX", raw)
                lap(step)
                step = "SEARCH UNSEEN"
                await imap.ok(b"SEARCH UNSEEN")
                lap(step)
                step = "SEARCH FROM"
                await imap.ok(b"SEARCH FROM " + quote(crng.choice(FIRST_NAMES)))
                lap(step)
                step = "SEARCH SUBJECT"
                await imap.ok(b"SEARCH SUBJECT " + quote(crng.choice(TOPICS).split()[0]))
                lap(step)
                if idler is not None:
                    step = "IDLE wake-up"
                    t1 = time.perf_counter()
                    await idler.wait_exists()
                    await idler.idle_done(idle_tag)
                    times[step].append(idle_setup + time.perf_counter() - t1)
                    operations += 1
                    t = time.perf_counter()
                step = "LOGOUT"
                await imap.ok(b"LOGOUT")
                lap(step)
                await imap.close()
            except (OSError, asyncio.IncompleteReadError, CommandFailed, StopIteration, ValueError) as error:
                errors += 1
                if len(examples) < 5:
                    examples.append(f"client {k}, {step}: {error!r}")
                # Start over with a fresh idler (its IDLE may be open).
                if idler is not None:
                    with contextlib.suppress(Exception):
                        await idler.close()
                idler = await idler_for(user)
                await asyncio.sleep(0.05)

    await asyncio.gather(*(client(k, idlers[k]) for k in range(clients)))
    elapsed = time.perf_counter() - started
    await asyncio.gather(*(i.close() for i in idlers if i is not None))
    return elapsed, operations, errors, examples, times


def measure_load(target: Target, round_: int, args: argparse.Namespace, with_idle: bool = True) -> LoadRun:
    load = load_average()
    cpu0, client0 = session_cpu_seconds(target.pid), time.process_time()
    elapsed, ops, errors, examples, times = run_loop(_load(target, args.clients, args.users, args.duration, args.seed + round_, with_idle))
    cpu1, client1 = session_cpu_seconds(target.pid), time.process_time()
    return LoadRun(
        target.name, round_, elapsed, ops, ops / elapsed, errors, examples,
        {name: statistics.median(v) * 1000 for name, v in times.items() if v},
        (cpu1 - cpu0) / max(1, ops) * 1000, (client1 - client0) / max(1, ops) * 1000, load, with_idle,
    )


# 2. Many IDLE connections ------------------------------------------------------------------


def _idle_child(port: int, login_names: list[str], concurrency: int, pipe: Any) -> None:
    """A client process: opens one IDLE connection per login name, reports, then
    waits for the parent's word to note EXISTS arrivals and to close."""
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    async def main() -> None:
        gate = asyncio.Semaphore(concurrency)
        opened: list[Imap] = []
        failures: list[str] = []

        async def one(name: str) -> None:
            async with gate:
                try:
                    imap = await Imap.open(port)
                    await imap.ok(b"LOGIN " + quote(name) + b" " + quote(PASSWORD))
                    await imap.ok(b"SELECT INBOX")
                    await imap.idle_start()
                    opened.append(imap)
                except (OSError, asyncio.IncompleteReadError, CommandFailed) as error:
                    failures.append(repr(error))

        await asyncio.gather(*(one(n) for n in login_names))
        pipe.send(("ready", len(opened), failures[:3], len(failures)))
        arrivals: list[float] = []

        async def watch(imap: Imap) -> None:
            with contextlib.suppress(Exception):
                await imap.wait_exists()
                arrivals.append(time.monotonic())

        watchers = [asyncio.ensure_future(watch(i)) for i in opened]
        loop = asyncio.get_running_loop()
        while True:
            command = await loop.run_in_executor(None, pipe.recv)
            if command == "report":
                pipe.send(("arrivals", list(arrivals)))
            elif command == "close":
                break
        for w in watchers:
            w.cancel()
        for imap in opened:
            imap.writer.close()
        pipe.send(("closed",))

    run_loop(main())


@dataclass
class IdleRun:
    target: str
    wanted: int
    connected: int
    failures: int
    seconds_to_connect: float
    before_kb: int
    after_kb: int
    per_connection_kb: float
    processes: int = 1
    pss_before_kb: int = 0
    pss_after_kb: int = 0
    wake_all_s: float | None = None
    woken: int = 0
    examples: list[str] = field(default_factory=list)
    load_before: str = ""


def measure_idle(target: Target, args: argparse.Namespace, deliver_one: Any) -> IdleRun:
    load = load_average()
    names = [
        (f"user{n % args.users}" if target.name == "postern" else f"user{n % args.users}@{DOMAIN}") for n in range(args.idle_connections)
    ]
    # Over every process of the server: postern's serving process and its mail workers
    # (which hold the IMAP sessions when there are several), Dovecot's master and all.
    before, pss_before, procs = session_memory_kb(target.pid)
    context = mp.get_context("spawn")
    children = []
    t0 = time.perf_counter()
    for c in range(args.idle_procs):
        parent, child = context.Pipe()
        process = context.Process(target=_idle_child, args=(target.imap_port, names[c :: args.idle_procs], args.idle_concurrency, child), daemon=True)
        process.start()
        children.append((process, parent))
    connected = failures = 0
    examples: list[str] = []
    for process, parent in children:
        if not parent.poll(1800):
            raise SystemExit("an IDLE client process did not report")
        _, ok, some, failed = parent.recv()
        connected += ok
        failures += failed
        examples += some
    seconds = time.perf_counter() - t0
    time.sleep(3.0)  # let the server settle (pending writes, freed buffers)
    after, pss_after, procs = session_memory_kb(target.pid)
    run = IdleRun(
        target.name, args.idle_connections, connected, failures, seconds, before, after,
        ((pss_after - pss_before) if target.name == "dovecot" else (after - before)) / max(1, connected),
        procs, pss_before, pss_after, examples=examples, load_before=load,
    )
    print(f"    {connected:,} IDLE connections open in {seconds:.0f} s; waking them all (one message to each user)", flush=True)
    # Wake them all: one message to every user.
    t_wake = time.monotonic()
    deliver_one(target)
    deadline = time.monotonic() + 120
    arrivals: list[float] = []
    while time.monotonic() < deadline:
        arrivals = []
        for _, parent in children:
            parent.send("report")
            arrivals += parent.recv()[1]
        if len(arrivals) >= connected:
            break
        time.sleep(0.5)
    run.woken = len(arrivals)
    run.wake_all_s = (max(arrivals) - t_wake) if arrivals and len(arrivals) >= connected else None
    for process, parent in children:
        parent.send("close")
        with contextlib.suppress(EOFError):
            parent.poll(120) and parent.recv()
        process.join(30)
        if process.is_alive():
            process.kill()
    return run


# 3. LMTP -> IDLE EXISTS latency ----------------------------------------------------------


async def _exists_latency(target: Target, count: int, seed: int) -> tuple[list[float], list[float], int]:
    rng = random.Random(seed)
    base = datetime(2024, 9, 1, tzinfo=UTC)
    idler = await Imap.open(target.imap_port)
    await idler.ok(target.login(0))
    await idler.ok(b"SELECT INBOX")
    lmtp = await LmtpConnection.open("127.0.0.1", target.lmtp_port, True)
    exists_ms: list[float] = []
    reply_ms: list[float] = []
    bad = 0
    for n in range(count):
        sender, raw = make_raw(2_000_000 + n, 0, rng, base)
        tag = await idler.idle_start()
        lmtp.writer.write(f"MAIL FROM:<{sender}>\r\nRCPT TO:<user0@{DOMAIN}>\r\nDATA\r\n".encode())
        replies = [await lmtp.reply() for _ in range(3)]
        if [c for c, _ in replies] != [250, 250, 354]:
            raise SystemExit(f"LMTP refused: {replies}")
        t0 = time.perf_counter()
        lmtp.writer.write(dot_stuff(raw))

        async def final() -> float:
            code, text = await lmtp.reply()
            if code != 250:
                raise SystemExit(f"LMTP refused: {code} {text}")
            return time.perf_counter()

        async def seen() -> float:
            await asyncio.wait_for(idler.wait_exists(), 30)
            return time.perf_counter()

        try:
            t_reply, t_exists = await asyncio.gather(final(), seen())
        except asyncio.TimeoutError:
            bad += 1
            continue
        reply_ms.append((t_reply - t0) * 1000)
        exists_ms.append((t_exists - t0) * 1000)
        await idler.idle_done(tag)
        await asyncio.sleep(0.02)
    await lmtp.close()
    await idler.close()
    return exists_ms, reply_ms, bad


@dataclass
class LatencyRun:
    target: str
    round: int
    deliveries: int
    missed: int
    exists_p50_ms: float
    exists_p90_ms: float
    reply_p50_ms: float
    load_before: str = ""


def measure_latency(target: Target, round_: int, args: argparse.Namespace) -> LatencyRun:
    load = load_average()
    per_round = -(-args.deliveries // args.rounds)
    exists, reply, bad = run_loop(_exists_latency(target, per_round, args.seed + 100 + round_))
    exists.sort()
    return LatencyRun(
        target.name, round_, len(exists), bad, statistics.median(exists), exists[int(0.9 * (len(exists) - 1))], statistics.median(reply), load
    )


# Main ----------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20, help="users user0..userN-1 (default 20)")
    parser.add_argument("--messages", type=int, default=200, help="messages seeded per user (default 200; FETCH takes the first 100)")
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients of the load figure (default 20; client k is user k mod --users: with more clients than users, an idler also wakes for the other clients' APPENDs)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per target and round of the load figure (default 20)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the load and latency figures, order alternating (default 3)")
    parser.add_argument("--deliveries", type=int, default=200, help="deliveries per target of the latency figure, split over the rounds (default 200)")
    parser.add_argument("--idle-connections", type=int, default=10_000, help="IDLE connections of the memory figure (default 10,000; 0 skips it)")
    parser.add_argument("--idle-procs", type=int, default=2, help="client processes that hold them (default 2)")
    parser.add_argument("--idle-concurrency", type=int, default=50, help="logins in flight per client process (default 50)")
    parser.add_argument("--dovecot-client-limit", type=int, default=100, help="Dovecot's service imap client_limit for the memory figure (default 100; 0 skips Dovecot there)")
    parser.add_argument("--workers", default="auto", help="postern's POSTERN_MAIL_WORKERS (default auto)")
    parser.add_argument("--seed", type=int, default=20240501)
    parser.add_argument("--postern-env", action="append", default=[], metavar="NAME=VALUE", help="a setting for postern serve, overriding the script's (diagnosis: POSTERN_FSYNC=false); repeatable")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 5 users x 120 messages, 5 clients, 1 round of 5 s, 30 deliveries, 500 IDLE connections")
    parser.add_argument(
        "--load-modes", default="idle,no-idle",
        help="the load figure's loops, comma-separated: idle (with the IDLE wake-up, the target's figure), no-idle (without it: Dovecot's fixed IDLE notify delay out of the loop)",
    )
    parser.add_argument("--skip", default="", help="comma-separated figures to skip: load, idle, latency")
    parser.add_argument("--profile", type=Path, help="record postern's CPU with py-spy during its first load round (.svg, .json speedscope, .txt)")
    parser.add_argument("--install", action="store_true", help=f"install Dovecot if it is missing ({INSTALL_COMMAND}; needs root)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    args = parser.parse_args()
    if args.quick:
        args.users, args.messages, args.clients, args.duration, args.rounds = 5, 120, 5, 5.0, 1
        args.deliveries, args.idle_connections = 30, 500
    if args.messages < 100:
        parser.error("--messages must be at least 100 (FETCH 1:100)")
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    args.load_modes = [m.strip() for m in args.load_modes.split(",") if m.strip()]
    if not args.load_modes or any(m not in ("idle", "no-idle") for m in args.load_modes):
        parser.error("--load-modes takes idle, no-idle")
    return args


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, needed))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < needed:
        print(f"  note: the hard limit of open files is {hard}; {needed} wanted (the server needs one per connection)")


def seed(target: Target, messages: list[Message]) -> float:
    t0 = time.perf_counter()
    elapsed, bad, examples, _ = run_loop(_deliver("127.0.0.1", target.lmtp_port, True, messages, 10))
    if bad:
        raise SystemExit(f"seeding {target.name} failed: {bad} deliveries refused: {examples[:3]}")
    return time.perf_counter() - t0


def main() -> int:
    args = parse_args()
    if not dovecot_installed():
        if not args.install:
            print("Dovecot's IMAP and LMTP servers are not installed. On Debian or Ubuntu, as root:")
            print(f"    {INSTALL_COMMAND}")
            print("or run this script with --install (as root) to do it.")
            return 2
        install_dovecot()
    raise_fd_limit(args.idle_connections + 1000)  # postern and each client process hold at most this many
    info = machine_basics()
    info["dovecot"] = dovecot_version(dovecot_binary() or "dovecot")
    info["fd limit"] = str(resource.getrlimit(resource.RLIMIT_NOFILE))
    print("postern IMAP benchmark: against Dovecot (imap, lmtp, maildir) in the same run")
    for key, value in info.items():
        print(f"  {key + ':':<12} {value}")
    messages = seed_messages(args.users, args.messages, args.seed)
    print(f"\n{len(messages):,} messages ({sum(m.size for m in messages) / 1e6:.1f} MB) for {args.users} users, {args.messages} each")
    print(f"load average before: {load_average()}", flush=True)

    temp = Path(tempfile.mkdtemp(prefix="postern-bench-imap-"))
    token = secrets.token_urlsafe(24)
    postern: Postern | None = None
    dovecot: Dovecot | None = None
    load_runs: list[LoadRun] = []
    latency_runs: list[LatencyRun] = []
    idle_runs: list[IdleRun] = []
    notes: dict[str, Any] = {}
    try:
        postern = Postern(temp / "postern", token, args.workers, dict(item.split("=", 1) for item in args.postern_env))
        dovecot = Dovecot(temp / "dovecot", args.users)
        postern.wait_ready()
        dovecot.wait_ready()
        api = Api(postern.http_port, token)
        create_users(api, args.users)
        api.close()
        targets = {
            "postern": Target("postern", postern.imap_port, postern.lmtp_port, postern.pid),
            "dovecot": Target("dovecot", dovecot.imap_port, dovecot.lmtp_port, dovecot.pid),
        }
        for name in ("dovecot", "postern"):
            seconds = seed(targets[name], messages)
            notes[f"{name} seeding s"] = seconds
            print(f"  seeded {name} over LMTP in {seconds:.1f} s", flush=True)

        def deliver_one(target: Target) -> None:
            rng = random.Random(7)
            wake = []
            for user in range(args.users):
                sender, raw = make_raw(3_000_000 + user, user, rng, datetime(2024, 10, 1, tzinfo=UTC))
                wake.append(Message(user, user, sender, len(raw), dot_stuff(raw)))
            run_loop(_deliver("127.0.0.1", target.lmtp_port, True, wake, min(10, args.users)))

        # 2. Many IDLE connections first, on a fresh serving process.
        if "idle" not in args.skip and args.idle_connections > 0:
            print(f"\n10k IDLE: {args.idle_connections:,} connections (LOGIN, SELECT INBOX, IDLE) from {args.idle_procs} client processes", flush=True)
            run = measure_idle(targets["postern"], args, deliver_one)
            idle_runs.append(run)
            report_idle(run)
            if args.dovecot_client_limit > 0:
                # Restart Dovecot over the same maildirs with imap client_limit > 1: a
                # process per connection (the default) would be thousands of processes.
                dovecot.stop()
                dovecot = Dovecot(temp / "dovecot", args.users, args.dovecot_client_limit)
                dovecot.wait_ready()
                targets["dovecot"] = Target("dovecot", dovecot.imap_port, dovecot.lmtp_port, dovecot.pid)
                run = measure_idle(targets["dovecot"], args, deliver_one)
                idle_runs.append(run)
                report_idle(run)
                dovecot.stop()
                dovecot = Dovecot(temp / "dovecot", args.users)
                dovecot.wait_ready()
                targets["dovecot"] = Target("dovecot", dovecot.imap_port, dovecot.lmtp_port, dovecot.pid)

        order = ["dovecot", "postern"]
        # 3. LMTP -> IDLE latency.
        if "latency" not in args.skip:
            print(f"\nLMTP -> IDLE EXISTS: {args.deliveries} deliveries to user0 per target, one at a time, over {args.rounds} round(s)", flush=True)
            for round_ in range(1, args.rounds + 1):
                for name in order if round_ % 2 else order[::-1]:
                    run = measure_latency(targets[name], round_, args)
                    latency_runs.append(run)
                    print(
                        f"  round {round_}  {name:<8} EXISTS p50 {run.exists_p50_ms:6.1f} ms, p90 {run.exists_p90_ms:6.1f} ms; "
                        f"LMTP 250 p50 {run.reply_p50_ms:6.1f} ms  ({run.deliveries} deliveries, {run.missed} missed, load {run.load_before})",
                        flush=True,
                    )

        # 1. Operations per second.
        if "load" not in args.skip:
            print(f"\nload: {args.clients} clients x (LOGIN, SELECT, FETCH 1:100, STORE, APPEND, 3 SEARCH, IDLE wake-up, LOGOUT), {args.duration:.0f} s per target and round", flush=True)
            rounds = [(round_, mode) for mode in args.load_modes for round_ in range(1, args.rounds + 1)]
            for round_, mode in rounds:
                for name in order if round_ % 2 else order[::-1]:
                    profiler = None
                    if args.profile and name == "postern" and round_ == 1 and mode == args.load_modes[0]:
                        from smtp_delivery import start_profiler

                        profiler = start_profiler(postern.pid, args.profile)
                    run = measure_load(targets[name], round_, args, with_idle=mode == "idle")
                    if profiler is not None:
                        from smtp_delivery import stop_profiler

                        stop_profiler(profiler, args.profile)
                    load_runs.append(run)
                    flag = f"  <-- {run.errors} errors" if run.errors else ""
                    print(
                        f"  round {round_}  {mode:<7} {name:<8} {run.rate:8,.0f} operations/s  ({run.operations:,} in {run.seconds:.1f} s, "
                        f"server CPU {run.server_cpu_ms:.2f} ms/op, client CPU {run.client_cpu_ms:.2f} ms/op, load {run.load_before}){flag}",
                        flush=True,
                    )
                    for example in run.examples[:3]:
                        print(f"      {example}")
        notes["dovecot errors"] = dovecot.errors()[:5]
        print(f"load average after:  {load_average()}")
    finally:
        if postern is not None:
            code = postern.stop()
            if code not in (0, None):
                print(f"  postern exited with {code}:\n" + "\n".join(postern.output[-20:]))
        if dovecot is not None:
            dovecot.stop()
        if args.keep:
            print(f"\nkept {temp}")
        else:
            shutil.rmtree(temp, ignore_errors=True)

    passes: dict[str, bool] = {}
    print("\nresults")
    for mode in args.load_modes:
        runs = [r for r in load_runs if r.idle == (mode == "idle")]
        if not runs:
            continue
        med = {t: statistics.median(r.rate for r in runs if r.target == t) for t in ("postern", "dovecot")}
        cpu = {t: statistics.median(r.server_cpu_ms for r in runs if r.target == t) for t in ("postern", "dovecot")}
        ratio = med["postern"] / med["dovecot"]
        per_round = [
            next(r.rate for r in runs if r.round == n and r.target == "postern") / next(r.rate for r in runs if r.round == n and r.target == "dovecot")
            for n in range(1, args.rounds + 1)
        ]
        if mode == "idle":
            # The target's figure: the loop with its IDLE wake-up.
            passes["operations/s"] = ratio >= TARGET_RATIO
        title = "with the IDLE wake-up" if mode == "idle" else "without the IDLE wake-up (no-idle)"
        print(f"  operations/s {title} (median of {args.rounds} round(s)): postern {med['postern']:,.0f}, dovecot {med['dovecot']:,.0f}")
        target = f"  target >= {TARGET_RATIO:.1f}  {verdict(ratio >= TARGET_RATIO)}" if mode == "idle" else ""
        print(f"  postern / dovecot: {ratio:.2f} (per round: {', '.join(f'{x:.2f}' for x in per_round)}){target}")
        print(f"  server CPU per operation: postern {cpu['postern']:.2f} ms, dovecot {cpu['dovecot']:.2f} ms")
        print(f"  {'median latency ms':<18} {'postern':>9} {'dovecot':>9}")
        for op in OPERATIONS:
            if op == "IDLE wake-up" and mode != "idle":
                continue
            values = {t: statistics.median(r.median_ms.get(op, 0.0) for r in runs if r.target == t) for t in ("postern", "dovecot")}
            print(f"  {op:<18} {values['postern']:>9.1f} {values['dovecot']:>9.1f}")
        errors = sum(r.errors for r in runs)
        print(f"  every command OK: {'yes' if errors == 0 else f'NO ({errors} iterations failed)'}")
    if idle_runs:
        p = idle_runs[0]
        passes["KB per IDLE connection"] = p.per_connection_kb <= TARGET_KB_PER_IDLE and p.connected == p.wanted
        print(
            f"  postern, {p.connected:,} IDLE connections ({p.processes} processes): RSS sum {p.before_kb / 1024:.0f} -> {p.after_kb / 1024:.0f} MB, "
            f"{p.per_connection_kb:.1f} KB per connection  target <= {TARGET_KB_PER_IDLE:.0f}  {verdict(passes['KB per IDLE connection'])}"
        )
        if len(idle_runs) > 1:
            d = idle_runs[1]
            print(
                f"  dovecot, {d.connected:,} IDLE connections ({d.processes} processes, imap client_limit {args.dovecot_client_limit}): "
                f"PSS {d.pss_before_kb / 1024:.0f} -> {d.pss_after_kb / 1024:.0f} MB ({d.per_connection_kb:.1f} KB per connection), "
                f"RSS sum {d.before_kb / 1024:.0f} -> {d.after_kb / 1024:.0f} MB"
            )
    if latency_runs:
        med = {t: statistics.median(r.exists_p50_ms for r in latency_runs if r.target == t) for t in ("postern", "dovecot")}
        passes["EXISTS latency"] = med["postern"] <= TARGET_EXISTS_MS and not any(r.missed for r in latency_runs if r.target == "postern")
        print(
            f"  LMTP -> IDLE EXISTS, median: postern {med['postern']:.1f} ms, dovecot {med['dovecot']:.1f} ms "
            f"(postern / dovecot {med['postern'] / med['dovecot']:.2f})  target <= {TARGET_EXISTS_MS:.0f} ms  {verdict(passes['EXISTS latency'])}"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "date": datetime.now(UTC).isoformat(timespec="seconds"),
                    "machine": info,
                    "settings": {k: (sorted(v) if isinstance(v, set) else str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                    "notes": notes,
                    "load": [asdict(r) for r in load_runs],
                    "idle": [asdict(r) for r in idle_runs],
                    "latency": [asdict(r) for r in latency_runs],
                    "pass": passes,
                },
                indent=2,
            )
            + "\n"
        )
        print(f"  results written to {args.json}")
    return 1 if any(r.errors for r in load_runs) else 0


def report_idle(run: IdleRun) -> None:
    if run.target == "postern":
        memory = f"{run.processes} processes, RSS sum {run.before_kb / 1024:.0f} -> {run.after_kb / 1024:.0f} MB: {run.per_connection_kb:.1f} KB per connection"
    else:
        memory = (
            f"{run.processes} processes, PSS {run.pss_before_kb / 1024:.0f} -> {run.pss_after_kb / 1024:.0f} MB: {run.per_connection_kb:.1f} KB per connection "
            f"(RSS sum {run.before_kb / 1024:.0f} -> {run.after_kb / 1024:.0f} MB)"
        )
    wake = f"all woken {run.wake_all_s:.1f} s after the deliveries began" if run.wake_all_s is not None else f"only {run.woken:,} woken"
    print(f"  {run.target:<8} {run.connected:,}/{run.wanted:,} connected ({run.failures} failed), {memory}; {wake}; load {run.load_before}", flush=True)
    for example in run.examples[:3]:
        print(f"      {example}")


if __name__ == "__main__":
    sys.exit(main())
