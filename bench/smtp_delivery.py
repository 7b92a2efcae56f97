#!/usr/bin/env python3
"""Benchmark: durable delivery over LMTP (and SMTP), postern against Dovecot.

Generates N messages (5,000 by default, about 20 KB each: realistic headers, a text
part and most often a base64 attachment) once, from a fixed seed, each to one of U
users (100) chosen at random (seeded), and delivers the same messages over C
concurrent connections (20), each connection carrying many transactions, to

* Dovecot's LMTP (Debian's ``dovecot-lmtpd``): started by this script in a temporary
  directory with a minimal configuration of its own (no system service), delivering
  to maildir with its default fsync policy (``mail_fsync = optimized``);
* postern's LMTP door: ``postern serve`` with ``POSTERN_FSYNC=true`` (a reply of
  250 means the blob is synced and the rows are committed);
* postern's SMTP (MX) door, as a secondary figure, with
  ``POSTERN_CHECK_AUTHENTICATION=false`` (no SPF/DKIM/DMARC: no DNS in a benchmark).

Every reply must be 250; afterwards the stores are counted (postern: the INBOX
totals of the admin API, per user; Dovecot: the files in the maildirs, per user).
Each target gets a fresh store in every round, and the order of the targets
rotates from round to round. Target (issue 3, item 8): postern's LMTP messages per
second at least equal to Dovecot's (ratio of the medians >= 1.0).

    .venv/bin/python bench/smtp_delivery.py                     # full size, 3 rounds
    .venv/bin/python bench/smtp_delivery.py --messages 500 --rounds 1   # a smoke run
    .venv/bin/python bench/smtp_delivery.py --install           # apt-get install Dovecot first

This is a measurement: it exits 0 once it has measured, PASS or FAIL (1 if a reply
was not 250 or a count is wrong, 2 if it could not run). Method and recorded
figures: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import grp
import http.client
import json
import os
import pwd
import random
import re
import secrets
import shutil
import signal
import socket
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

from common import COMMON_WORDS, ServeProcess, FIRST_NAMES, LAST_NAMES, TOPICS, cpu_ticks, free_port, load_average, machine_basics, paragraphs, steal_share, verdict

TARGET_RATIO = 1.0  # postern LMTP messages/s divided by Dovecot LMTP messages/s
DOMAIN = "example.com"
INSTALL_COMMAND = "apt-get update && apt-get install -y dovecot-lmtpd dovecot-core"

# Messages ---------------------------------------------------------------------------

SENDER_DOMAINS = ("example.org", "example.net", "mail.example.org", "lists.example.net", "corp.example")
WORDS = COMMON_WORDS + "mailbox server folder delivery deploy schedule review budget quarter invoice attached".split()
ATTACHMENTS = (
    ("application/pdf", "report-{i}.pdf"),
    ("image/png", "screenshot-{i}.png"),
    ("application/zip", "logs-{i}.zip"),
    ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "draft-{i}.docx"),
    ("image/jpeg", "photo-{i}.jpg"),
)


@dataclass(slots=True)
class Message:
    index: int
    user: int  # recipient: user<user>@example.com
    mail_from: str
    size: int  # of the message itself
    wire: bytes  # dot-stuffed, with the terminating ".\r\n": what goes after DATA


def make_message(i: int, rng: random.Random, users: int, size: int, base: datetime) -> Message:
    user = rng.randrange(users)
    recipient = f"user{user}@{DOMAIN}"
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    domain = SENDER_DOMAINS[i % len(SENDER_DOMAINS)]
    sender = f"{first.lower()}.{re.sub(r'[^a-z]', '', last.lower())}@{domain}"
    date = format_datetime(base + timedelta(seconds=i * 53 + rng.randint(0, 50)))
    topic = TOPICS[i % len(TOPICS)]
    subject = f"{topic} #{i}: {' '.join(rng.choice(WORDS) for _ in range(rng.randint(2, 6)))}"
    boundary = f"=_bench_{rng.getrandbits(64):016x}"
    head = [
        f"Received: from mx{i % 7}.{domain} (mx{i % 7}.{domain} [192.0.2.{i % 250 + 1}])",
        f"\tby mx.{DOMAIN} with ESMTPS id {rng.getrandbits(40):010x}",
        f"\tfor <{recipient}>; {date}",
        f"Received: from [198.51.100.{i % 250 + 1}] by mx{i % 7}.{domain} with ESMTPSA; {date}",
        f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d={domain}; s=s{i % 3}; t={1700000000 + i};",
        f"\th=from:to:subject:date:message-id; bh={base64.b64encode(rng.randbytes(32)).decode()};",
        f"\tb={base64.b64encode(rng.randbytes(128)).decode()}",
        f"From: {first} {last} <{sender}>",
        f"To: User {user} <{recipient}>",
        f"Subject: {subject}",
        f"Date: {date}",
        f"Message-ID: <{i}.{rng.getrandbits(48):012x}@{domain}>",
        "MIME-Version: 1.0",
    ]
    if i % 4 == 0 and i >= 4:
        ref = f"<{i - 4}.thread@{domain}>"
        head += [f"In-Reply-To: {ref}", f"References: {ref}"]
        head[9] = f"Subject: Re: {subject}"
    target = max(2000, int(size * rng.uniform(0.75, 1.25)))
    room = target - sum(len(h) + 2 for h in head) - 200
    parts: list[str] = []
    if i % 10 < 7:
        # Text and a binary attachment in base64 (76 columns).
        text = paragraphs(rng, WORDS, max(600, int(room * rng.uniform(0.25, 0.5))))
        content_type, filename = ATTACHMENTS[i % len(ATTACHMENTS)]
        blob = rng.randbytes(max(300, (room - sum(len(t) + 2 for t in text) - 300) * 3 // 4))
        encoded = base64.b64encode(blob).decode()
        head.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
        parts = [
            "This is a multi-part message in MIME format.",
            "",
            f"--{boundary}",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: 8bit",
            "",
            *text,
            f"--{boundary}",
            f'Content-Type: {content_type}; name="{filename.format(i=i)}"',
            f'Content-Disposition: attachment; filename="{filename.format(i=i)}"',
            "Content-Transfer-Encoding: base64",
            "",
            *(encoded[k : k + 76] for k in range(0, len(encoded), 76)),
            f"--{boundary}--",
        ]
    else:
        # Text and its HTML rendering (multipart/alternative), no attachment.
        text = paragraphs(rng, WORDS, max(600, room // 2))
        html = "".join(f"<p>{t}</p>" if t else "\n" for t in text)
        head.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
        parts = [
            f"--{boundary}",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: 8bit",
            "",
            *text,
            f"--{boundary}",
            "Content-Type: text/html; charset=utf-8",
            "Content-Transfer-Encoding: 8bit",
            "",
            *html.split("\n"),
            f"--{boundary}--",
        ]
    raw = ("\r\n".join(head) + "\r\n\r\n" + "\r\n".join(parts) + "\r\n").encode()
    return Message(i, user, sender, len(raw), dot_stuff(raw))


def dot_stuff(raw: bytes) -> bytes:
    """The DATA section on the wire: leading dots doubled, ended by CRLF.CRLF."""
    stuffed = raw.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed + b".\r\n"


def generate(count: int, users: int, size: int, seed: int) -> list[Message]:
    rng = random.Random(seed)
    base = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
    return [make_message(i, rng, users, size, base) for i in range(count)]


# An LMTP/SMTP client over asyncio streams --------------------------------------------


class ProtocolError(Exception):
    pass


@dataclass
class Run:
    target: str
    round: int
    messages: int
    seconds: float
    rate: float  # messages per second
    bad: int  # transactions with a reply other than 250 (or a broken connection)
    examples: list[str] = field(default_factory=list)
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    server_cpu_ms: float = 0.0  # server CPU time (all processes and threads) per message
    server_sys_ms: float = 0.0  # the part of it spent in the kernel (syscalls: fsync, sockets, files)
    client_cpu_ms: float = 0.0  # this script's CPU time per message
    load_before: str = ""
    steal: float = 0.0  # share of the machine's CPU time stolen by the hypervisor during the run
    verified: bool = False
    verify_note: str = ""


class Connection:
    """One session; ``lmtp`` chooses LHLO and one reply per recipient after DATA."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, lmtp: bool):
        self.reader, self.writer, self.lmtp = reader, writer, lmtp
        self.extensions: set[str] = set()

    @classmethod
    async def open(cls, host: str, port: int, lmtp: bool) -> Connection:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        conn = cls(reader, writer, lmtp)
        code, text = await conn.reply()
        if code != 220:
            raise ProtocolError(f"greeting: {code} {text}")
        writer.write(b"LHLO bench.example\r\n" if lmtp else b"EHLO bench.example\r\n")
        code, text = await conn.reply()
        if code != 250:
            raise ProtocolError(f"{'LHLO' if lmtp else 'EHLO'}: {code} {text}")
        conn.extensions = {line.split()[0].upper() for line in text.splitlines()[1:] if line.strip()}
        return conn

    async def reply(self) -> tuple[int, str]:
        lines = []
        while True:
            line = await self.reader.readuntil(b"\r\n")
            lines.append(line[4:-2].decode("utf-8", "replace"))
            if len(line) < 4 or line[3:4] != b"-":
                return int(line[:3]), "\n".join(lines)

    async def send(self, mail_from: str, rcpt: str, wire: bytes, size: int) -> list[tuple[int, str]]:
        """One transaction; the replies that should all be 2xx/354 (MAIL, RCPT, DATA, final)."""
        size_option = f" SIZE={size}" if "SIZE" in self.extensions else ""
        command = f"MAIL FROM:<{mail_from}>{size_option}\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n".encode()
        if "PIPELINING" in self.extensions:
            self.writer.write(command)
            replies = [await self.reply() for _ in range(3)]
        else:
            replies = []
            for line in command.split(b"\r\n")[:3]:
                self.writer.write(line + b"\r\n")
                replies.append(await self.reply())
        if replies[2][0] != 354:
            return replies
        self.writer.write(wire)
        replies.append(await self.reply())  # LMTP: one reply per accepted recipient (one here)
        return replies

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.write(b"QUIT\r\n")
            await asyncio.wait_for(self.reply(), 5)
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


async def _deliver(host: str, port: int, lmtp: bool, messages: list[Message], connections: int) -> tuple[float, int, list[str], list[float]]:
    conns = await asyncio.gather(*(Connection.open(host, port, lmtp) for _ in range(connections)))
    todo = iter(messages)
    bad = 0
    examples: list[str] = []
    latencies: list[float] = []

    async def worker(conn: Connection) -> None:
        nonlocal bad
        for message in todo:  # a shared iterator: each worker takes the next message
            t0 = time.perf_counter()
            try:
                replies = await conn.send(message.mail_from, f"user{message.user}@{DOMAIN}", message.wire, message.size)
            except (OSError, asyncio.IncompleteReadError, ValueError) as error:
                bad += 1
                examples.append(f"message {message.index}: connection failed: {error!r}")
                return
            latencies.append(time.perf_counter() - t0)
            if [code for code, _ in replies] != [250, 250, 354, 250]:
                bad += 1
                if len(examples) < 5:
                    examples.append(f"message {message.index}: " + " | ".join(f"{c} {t}" for c, t in replies))

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - started
    await asyncio.gather(*(c.close() for c in conns))
    return elapsed, bad, examples, latencies


def deliver(host: str, port: int, lmtp: bool, messages: list[Message], connections: int) -> tuple[float, int, list[str], list[float]]:
    try:
        import uvloop  # cheaper for the load generator, which shares the CPUs

        return uvloop.run(_deliver(host, port, lmtp, messages, connections))
    except ImportError:
        return asyncio.run(_deliver(host, port, lmtp, messages, connections))


# Processes ---------------------------------------------------------------------------


def _proc_stat(pid: int | str) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def session_cpu_split(sid: int) -> tuple[float, float]:
    """CPU time, user and system, of every process in session ``sid`` (the servers are
    started in a session of their own), plus what the leader collected from children
    that ended."""
    user = system = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = _proc_stat(entry.name)
            if int(fields[3]) == sid:
                user += int(fields[11])
                system += int(fields[12])
                if int(entry.name) == sid:
                    user += int(fields[13])
                    system += int(fields[14])
    tick = os.sysconf("SC_CLK_TCK")
    return user / tick, system / tick


def session_cpu_seconds(sid: int) -> float:
    """User and system CPU time of session ``sid`` together (see session_cpu_split)."""
    return sum(session_cpu_split(sid))


class Postern(ServeProcess):
    """``postern serve`` (doors http, lmtp, smtp) on free loopback ports."""

    def __init__(self, data_dir: Path, token: str, connections: int, workers: str = "auto", env: dict[str, str] | None = None):
        self.http_port, self.lmtp_port, self.smtp_port = free_port(), free_port(), free_port()
        super().__init__(
            {
                "POSTERN_DATA_DIR": str(data_dir),
                "POSTERN_HTTP_LISTEN": f"127.0.0.1:{self.http_port}",
                "POSTERN_LMTP_LISTEN": f"127.0.0.1:{self.lmtp_port}",
                "POSTERN_SMTP_LISTEN": f"127.0.0.1:{self.smtp_port}",
                "POSTERN_DOORS": "http,lmtp,smtp",  # no queue, no collector
                "POSTERN_FSYNC": "true",  # durable: 250 only once the blob is synced and the rows committed
                "POSTERN_CHECK_AUTHENTICATION": "false",  # no SPF/DKIM/DMARC, hence no DNS
                "POSTERN_ADMIN_TOKEN": token,
                "POSTERN_ARGON2_TIME_COST": "1",  # quick user creation (not measured)
                "POSTERN_ARGON2_MEMORY_KIB": "8",
                "POSTERN_SMTP_CONNECTIONS_PER_IP": str(max(20, connections + 4)),
                "POSTERN_DOMAIN": DOMAIN,
                "POSTERN_LOG_LEVEL": "warning",
                "POSTERN_MAIL_WORKERS": workers,  # processes for the LMTP and SMTP sessions
            }
            | (env or {})
        )


class Api:
    def __init__(self, port: int, token: str):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.token = token

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"X-Access-Token": self.token}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            self.conn.request(method, path, body=data, headers=headers)
            response = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionError):
            # The server closed the idle keep-alive connection (during a measurement).
            self.conn.close()
            self.conn.request(method, path, body=data, headers=headers)
            response = self.conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None

    def close(self) -> None:
        self.conn.close()


def create_users(api: Api, users: int) -> list[str]:
    ids = []
    for n in range(users):
        status, body = api.call(
            "POST", "/users", {"username": f"user{n}", "password": secrets.token_urlsafe(12), "address": f"user{n}@{DOMAIN}"}
        )
        if status != 200 or not body.get("success"):
            raise SystemExit(f"creating user{n} failed: {status} {body}")
        ids.append(body["id"])
    return ids


def postern_counts(api: Api, user_ids: list[str]) -> list[int]:
    """INBOX totals per user, from the admin API."""
    counts = []
    for user_id in user_ids:
        status, body = api.call("GET", f"/users/{user_id}/mailboxes?counters=true")
        if status != 200:
            raise SystemExit(f"listing the mailboxes of {user_id} failed: {status} {body}")
        inbox = [m for m in body["results"] if m["path"] == "INBOX"]
        counts.append(int(inbox[0]["total"]) if inbox else -1)
    return counts


# Dovecot -----------------------------------------------------------------------------


def dovecot_binary() -> str | None:
    return shutil.which("dovecot") or next((p for p in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot") if Path(p).exists()), None)


def dovecot_installed() -> bool:
    binary = dovecot_binary()
    if binary is None:
        return False
    # Debian's dovecot-lmtpd puts the lmtp service binary beside the other services.
    libexec = [Path("/usr/lib/dovecot"), Path("/usr/libexec/dovecot"), Path("/usr/local/libexec/dovecot")]
    return any((d / "lmtp").exists() for d in libexec)


def install_dovecot() -> None:
    if os.geteuid() != 0:
        raise SystemExit(f"--install runs apt-get and needs root; run as root: {INSTALL_COMMAND}")
    print(f"installing Dovecot: {INSTALL_COMMAND}", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "dovecot-lmtpd", "dovecot-core"], check=True, env=env)
    if not dovecot_installed():
        raise SystemExit("apt-get finished but dovecot's lmtp is still not found")


def mail_owner() -> tuple[int, int, str]:
    """Who owns the delivered mail: this user; or, when running as root, ``nobody``:
    Dovecot refuses to deliver as root whatever first_valid_uid says ("userdb
    returned 0 as uid", then "Mail access not allowed for root")."""
    if os.geteuid() != 0:
        return os.getuid(), os.getgid(), pwd.getpwuid(os.getuid()).pw_name
    try:
        nobody = pwd.getpwnam("nobody")
        return nobody.pw_uid, nobody.pw_gid, "nobody"
    except KeyError:
        return 65534, 65534, "65534"


def dovecot_config(root: Path, port: int) -> str:
    uid, gid, _ = mail_owner()
    lines = [
        "# Written by bench/smtp_delivery.py: Dovecot's LMTP alone, on loopback, for one run.",
        f"base_dir = {root}/run",
        f"state_dir = {root}/state",
        f"log_path = {root}/dovecot.log",
        f"info_log_path = {root}/dovecot.log",
        "protocols = lmtp",
        "ssl = no",
        "auth_mechanisms = plain",
        "first_valid_uid = 0",
        f"mail_location = maildir:{root}/mail/%u",
        "# mail_fsync is left at its default, optimized: each delivered file is fsynced.",
        "passdb {",
        "  driver = static",
        "  args = nopassword=y",
        "}",
        "userdb {",
        "  driver = static",
        f"  args = uid={uid} gid={gid} home={root}/mail/%u",
        "}",
        "service lmtp {",
        "  inet_listener lmtp {",
        "    address = 127.0.0.1",
        f"    port = {port}",
        "  }",
        "}",
    ]
    if os.geteuid() != 0:
        # Rootless: every Dovecot service runs as this user.
        user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
        lines += [
            f"default_internal_user = {user}",
            f"default_login_user = {user}",
            f"default_internal_group = {group}",
            "service anvil {",
            "  chroot =",  # chroot needs root
            "}",
        ]
    return "\n".join(lines) + "\n"


class Dovecot:
    def __init__(self, root: Path):
        self.root = root
        self.binary = dovecot_binary() or "dovecot"
        self.port = free_port()
        for sub in ("run", "state", "mail"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        uid, gid, _ = mail_owner()
        if os.geteuid() == 0:
            # The mail is written as `nobody`: it must reach and own its folder.
            for path in (root, *root.parents):
                if path == Path(tempfile.gettempdir()) or path == Path("/"):
                    break
                os.chmod(path, os.stat(path).st_mode | 0o011)
            os.chown(root / "mail", uid, gid)
        self.conf = root / "dovecot.conf"
        self.conf.write_text(dovecot_config(root, self.port))
        self.log = root / "dovecot.log"
        self.process = subprocess.Popen(
            [self.binary, "-F", "-c", str(self.conf)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                if s.recv(256).startswith(b"220"):
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

    def counts(self, users: int) -> list[int]:
        """Files in new/ and cur/ of each user's maildir INBOX."""
        counts = []
        for n in range(users):
            box = self.root / "mail" / f"user{n}@{DOMAIN}"
            counts.append(sum(len(os.listdir(box / d)) for d in ("new", "cur") if (box / d).is_dir()))
        return counts

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # what `dovecot stop` sends the master
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode


def dovecot_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or out.stderr.strip() or "unknown"


def doveconf_value(conf: Path, name: str) -> str:
    binary = shutil.which("doveconf") or "/usr/bin/doveconf"
    out = subprocess.run([binary, "-c", str(conf), "-h", name], capture_output=True, text=True, check=False)
    return out.stdout.strip() or "?"


# One measurement ---------------------------------------------------------------------


def measure(
    target: str, round_: int, port: int, lmtp: bool, server_sid: int, messages: list[Message], connections: int
) -> Run:
    load = load_average()
    ticks0 = cpu_ticks()
    (user0, sys0), client0 = session_cpu_split(server_sid), time.process_time()
    elapsed, bad, examples, latencies = deliver("127.0.0.1", port, lmtp, messages, connections)
    (user1, sys1), client1 = session_cpu_split(server_sid), time.process_time()
    stolen = steal_share(ticks0, cpu_ticks())
    latencies.sort()

    def quantile(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else 0.0

    n = len(messages)
    return Run(
        target, round_, n, elapsed, n / elapsed, bad, examples, quantile(0.5), quantile(0.99),
        (user1 + sys1 - user0 - sys0) / n * 1000, (sys1 - sys0) / n * 1000, (client1 - client0) / n * 1000, load, stolen,
    )


def expected_counts(messages: list[Message], users: int) -> list[int]:
    counts = [0] * users
    for m in messages:
        counts[m.user] += 1
    return counts


def report(run: Run) -> None:
    flag = "" if run.bad == 0 else f"  <-- {run.bad} not 250"
    check = "counts ok" if run.verified else f"COUNTS WRONG: {run.verify_note}"
    print(
        f"  round {run.round}  {run.target:<14} {run.rate:>7,.0f} messages/s  ({run.seconds:.1f} s, p50 {run.latency_p50_ms:.0f} ms, "
        f"p99 {run.latency_p99_ms:.0f} ms, server CPU {run.server_cpu_ms:.2f} ms/message (kernel {run.server_sys_ms:.2f}), load {run.load_before}, "
        f"steal {run.steal:.0%}; {check}){flag}",
        flush=True,
    )
    for example in run.examples[:3]:
        print(f"      {example}")


def run_dovecot(root: Path, round_: int, messages: list[Message], args: argparse.Namespace, expected: list[int]) -> Run:
    dovecot = Dovecot(root)
    try:
        dovecot.wait_ready()
        run = measure("dovecot lmtp", round_, dovecot.port, True, dovecot.pid, messages, args.connections)
        counts = dovecot.counts(args.users)
        run.verified = counts == expected
        if not run.verified:
            run.verify_note = f"{sum(counts):,} files in the maildirs, expected {sum(expected):,}"
        errors = dovecot.errors()
        if errors:
            run.examples += errors[:3]
    finally:
        dovecot.stop()
    return run


# --instrumentation: postern's LMTP as shipped (a log line per transaction at info,
# Prometheus metrics on) against the same without them (warning, POSTERN_METRICS=false).
INSTRUMENTED = {"POSTERN_LOG_LEVEL": "info", "POSTERN_METRICS": "true"}
BARE = {"POSTERN_LOG_LEVEL": "warning", "POSTERN_METRICS": "false"}


def run_postern(root: Path, round_: int, target: str, messages: list[Message], args: argparse.Namespace, expected: list[int], token: str) -> tuple[Run, dict[str, Any]]:
    door = target.split()[1]
    env = (BARE if target.endswith("bare") else INSTRUMENTED) if args.instrumentation else None
    server = Postern(root, token, args.connections, args.workers, env)
    try:
        server.wait_ready()
        api = Api(server.http_port, token)
        t0 = time.perf_counter()
        user_ids = create_users(api, args.users)
        setup = time.perf_counter() - t0
        if args.profile and door == "lmtp" and round_ == 1:
            profiler = start_profiler(server.pid, args.profile)
        else:
            profiler = None
        port = server.lmtp_port if door == "lmtp" else server.smtp_port
        run = measure(target, round_, port, door == "lmtp", server.pid, messages, args.connections)
        if profiler is not None:
            stop_profiler(profiler, args.profile)
        counts = postern_counts(api, user_ids)
        api.close()
        run.verified = counts == expected
        if not run.verified:
            run.verify_note = f"{sum(counts):,} messages in the INBOXes, expected {sum(expected):,}"
    finally:
        code = server.stop()
    if code not in (0, None):
        print(f"  postern exited with {code}:\n" + "\n".join(server.output[-20:]))
    return run, {"user creation s": setup}


def start_profiler(pid: int, output: Path) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("  py-spy is not installed (.venv/bin/pip install py-spy): no profile")
        return None
    print(f"  profiling postern (pid {pid}) with py-spy into {output}")
    fmt = {".json": "speedscope", ".txt": "raw"}.get(output.suffix, "flamegraph")
    # --gil: the samples of whichever thread holds the GIL, i.e. where the one core
    # that Python code can use goes; --nonblocking: the server is not paused to sample.
    process = subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--subprocesses", "--rate", "100", "--gil", "--nonblocking", "--format", fmt, "-o", str(output)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    time.sleep(1.0)  # py-spy attaches
    return process


def stop_profiler(process: subprocess.Popen[bytes], output: Path) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
    print(f"  profile written to {output}" if output.exists() else "  py-spy wrote no profile")


# Machine -----------------------------------------------------------------------------


def machine() -> dict[str, str]:
    disk = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["df", "--output=source,fstype", tempfile.gettempdir()], capture_output=True, text=True, check=False)
        disk = " ".join(out.stdout.splitlines()[-1].split())
    import aiosmtpd

    return {
        **machine_basics(),
        "disk": f"{disk} ({tempfile.gettempdir()})",
        "aiosmtpd": getattr(aiosmtpd, "__version__", "?"),
    }


# Main --------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5000, help="messages per target and round (default 5,000)")
    parser.add_argument("--connections", type=int, default=20, help="concurrent connections, each carrying many transactions (default 20)")
    parser.add_argument("--users", type=int, default=100, help="recipients user0..userN-1@example.com (default 100)")
    parser.add_argument("--size", type=int, default=20_000, help="average message size in bytes (default 20,000; each is within +-25%%)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over the targets, each with fresh stores; the median counts (default 3)")
    parser.add_argument("--seed", type=int, default=20240301, help="seed of the messages and their recipients")
    parser.add_argument("--no-smtp", action="store_true", help="skip the secondary target, postern's SMTP (MX) door")
    parser.add_argument("--install", action="store_true", help=f"install Dovecot if it is missing ({INSTALL_COMMAND}; needs root)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (maildirs, postern data, Dovecot config and log)")
    parser.add_argument("--profile", type=Path, help="record postern's Python CPU time (py-spy --gil) during the first round's LMTP run: .svg flame graph, .json speedscope, .txt collapsed stacks")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    parser.add_argument(
        "--instrumentation",
        action="store_true",
        help="the cost of logs and metrics: 'postern lmtp' at POSTERN_LOG_LEVEL=info with metrics, and a target 'postern lmtp bare' at warning with POSTERN_METRICS=false",
    )
    parser.add_argument("--workers", default="auto", help="postern's POSTERN_MAIL_WORKERS: auto (one per CPU, the default) or a number; 1 = the doors in the serving process")
    args = parser.parse_args()
    if args.messages < 1 or args.connections < 1 or args.users < 1 or args.rounds < 1:
        parser.error("--messages, --connections, --users and --rounds must be positive")
    if args.size < 2000:
        parser.error("--size must be at least 2000")
    return args


def main() -> int:
    args = parse_args()
    if not dovecot_installed():
        if not args.install:
            print("Dovecot's LMTP server is not installed. On Debian or Ubuntu, as root:")
            print(f"    {INSTALL_COMMAND}")
            print("or run this script with --install (as root) to do it.")
            return 2
        install_dovecot()
    binary = dovecot_binary() or "dovecot"
    info = machine()
    info["dovecot"] = dovecot_version(binary)
    print("postern durable delivery benchmark: LMTP against Dovecot")
    for key, value in info.items():
        print(f"  {key + ':':<12} {value}")

    t0 = time.perf_counter()
    messages = generate(args.messages, args.users, args.size, args.seed)
    total = sum(m.size for m in messages)
    attachments = sum(1 for m in messages if m.index % 10 < 7)
    expected = expected_counts(messages, args.users)
    print(
        f"\n{len(messages):,} messages generated in {time.perf_counter() - t0:.1f} s (seed {args.seed}): {total / 1e6:.1f} MB, "
        f"average {total / len(messages):,.0f} bytes ({min(m.size for m in messages):,}..{max(m.size for m in messages):,}), "
        f"{attachments:,} with a base64 attachment; {args.users} users ({min(expected)}..{max(expected)} messages each)"
    )
    print(f"{args.connections} connections, each carrying transactions until the messages run out; {args.rounds} round(s)")

    token = secrets.token_urlsafe(24)
    temp = Path(tempfile.mkdtemp(prefix="postern-bench-smtp-"))
    runs: list[Run] = []
    setup: list[dict[str, Any]] = []
    notes: dict[str, str] = {}
    targets = ["dovecot lmtp", "postern lmtp"] + (["postern lmtp bare"] if args.instrumentation else []) + ([] if args.no_smtp else ["postern smtp"])
    try:
        # Record how this Dovecot is configured (and that fsync is at its default).
        probe = temp / "probe"
        probe.mkdir()
        (probe / "dovecot.conf").write_text(dovecot_config(probe, 24))
        notes["dovecot mail_fsync"] = doveconf_value(probe / "dovecot.conf", "mail_fsync")
        notes["dovecot lmtp process_limit"] = doveconf_value(probe / "dovecot.conf", "service/lmtp/process_limit")
        notes["dovecot mail owner"] = mail_owner()[2]
        shutil.rmtree(probe)
        print(f"Dovecot: mail_fsync = {notes['dovecot mail_fsync']}, mail written as {notes['dovecot mail owner']}")
        print(f"load average before: {load_average()}\n")
        for round_ in range(1, args.rounds + 1):
            order = list(targets) if round_ % 2 else targets[1:] + targets[:1]
            if args.instrumentation and round_ % 2 == 0:  # neither of the pair always goes first
                i, j = order.index("postern lmtp"), order.index("postern lmtp bare")
                order[i], order[j] = order[j], order[i]
            for target in order:
                root = temp / f"round{round_}" / target.replace(" ", "-")
                root.mkdir(parents=True)
                if target == "dovecot lmtp":
                    run = run_dovecot(root, round_, messages, args, expected)
                else:
                    run, extra = run_postern(root, round_, target, messages, args, expected, token)
                    setup.append(extra)
                runs.append(run)
                report(run)
                # The stores stay until the end. On ext4 without a journal (as on the
                # machines this was measured on) the inode allocator steps over every
                # inode freed in the last ~30 s: a store deleted here made the next
                # target's file creations cost up to a quarter of its CPU.
        print(f"load average after:  {load_average()}")
    finally:
        if args.keep:
            print(f"\nkept {temp}")
        else:
            shutil.rmtree(temp, ignore_errors=True)

    median = {t: statistics.median(r.rate for r in runs if r.target == t) for t in targets}
    cpu = {t: statistics.median(r.server_cpu_ms for r in runs if r.target == t) for t in targets}
    p50 = {t: statistics.median(r.latency_p50_ms for r in runs if r.target == t) for t in targets}
    base = median["dovecot lmtp"]
    ratio = median["postern lmtp"] / base
    per_round = [
        next(r.rate for r in runs if r.round == n and r.target == "postern lmtp") / next(r.rate for r in runs if r.round == n and r.target == "dovecot lmtp")
        for n in range(1, args.rounds + 1)
    ]
    bad = sum(r.bad for r in runs)
    wrong = [r for r in runs if not r.verified]

    print(f"\nresults: median of {args.rounds} round(s); {args.messages:,} messages of ~{args.size:,} bytes, {args.connections} connections, {args.users} users")
    print(f"  {'target':<16} {'messages/s':>10}  {'postern/dovecot':>15}  {'p50 ms':>6}  {'server CPU ms/msg':>17}  {'target >= 1.0':>13}")
    for t in targets:
        r = median[t] / base
        mark = "" if t == "dovecot lmtp" else verdict(r >= TARGET_RATIO) if t == "postern lmtp" else "(secondary)"
        print(f"  {t:<16} {median[t]:>10,.0f}  {r:>15.2f}  {p50[t]:>6.0f}  {cpu[t]:>17.2f}  {mark:>13}")
    print()
    print(f"  postern LMTP / Dovecot LMTP: {ratio:.2f} (per round: {', '.join(f'{x:.2f}' for x in per_round)})  target >= {TARGET_RATIO:.1f}  {verdict(ratio >= TARGET_RATIO)}")
    if args.instrumentation:
        bare = "postern lmtp bare"
        pairs = [
            next(r.rate for r in runs if r.round == n and r.target == "postern lmtp") / next(r.rate for r in runs if r.round == n and r.target == bare)
            for n in range(1, args.rounds + 1)
        ]
        print(
            f"  logs+metrics / bare (LMTP):  rate {median['postern lmtp'] / median[bare]:.3f} (per round: {', '.join(f'{x:.3f}' for x in pairs)}), "
            f"server CPU ms/msg {cpu['postern lmtp'] / cpu[bare]:.3f}  target: cost <= 3%"
        )
    print(f"  every reply 250:             {'yes' if bad == 0 else f'NO ({bad} transactions were not)'}")
    print(f"  stores hold every message:   {'yes (per user)' if not wrong else 'NO: ' + '; '.join(f'{r.target} round {r.round}: {r.verify_note}' for r in wrong)}")

    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "date": datetime.now(UTC).isoformat(timespec="seconds"),
                    "machine": info,
                    "notes": notes,
                    "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                    "messages bytes": total,
                    "runs": [asdict(r) for r in runs],
                    "median": median,
                    "server cpu ms per message": cpu,
                    "ratio": ratio,
                    "ratio per round": per_round,
                    "postern setup": setup,
                    "pass": {"ratio": ratio >= TARGET_RATIO, "all 250": bad == 0, "counts": not wrong},
                },
                indent=2,
            )
            + "\n"
        )
        print(f"  results written to {args.json}")
    return 0 if bad == 0 and not wrong else 1


if __name__ == "__main__":
    sys.exit(main())
