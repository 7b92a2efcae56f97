#!/usr/bin/env python3
"""Benchmark: Dovecot's imaptest against postern and against Dovecot, in one run.

Builds nothing: it runs an installed ``imaptest`` (the path in ``IMAPTEST``, else the
one on ``PATH``) against a ``postern serve`` (a temporary data directory, users
testuser1..N created through the admin API) and a standalone Debian Dovecot
(maildir, a passwd-file, its own configuration written here), both on loopback
ports of the range given by ``--port-base``.

For each password scheme (``argon2id``: both servers hold argon2id hashes of
postern's default cost, t=3 and 64 MiB; ``cheap``: both hold argon2id hashes of
t=1 and 8 KiB) and each stress mode

- ``default``: ``clients=10 users=20 secs=20``, imaptest's default mixed workload
  (LOGIN, LIST, STATUS, SELECT, FETCH, FETCH2, STORE, DELETE, EXPUNGE, APPEND,
  LOGOUT), messages appended from a realistic mbox this script writes;
- ``users1``: the same with every client on one user (one mailbox);
- ``logout0``: the same with clients that stay logged in (no LOGIN in the loop);

it runs imaptest alternately on Dovecot and on postern (``--rounds`` times each),
and prints commands per second side by side, the ratio postern/Dovecot and
imaptest's average milliseconds per command. ``--compliance`` also runs imaptest's
scripted tests (``test=DIR``) on both and prints the failed and skipped groups.

    .venv/bin/python bench/imaptest_compare.py                   # everything, ~15 min
    .venv/bin/python bench/imaptest_compare.py --schemes cheap --modes logout0 --rounds 1
    .venv/bin/python bench/imaptest_compare.py --profile DIR     # py-spy on postern too

Exits 0 once it has measured (PASS or FAIL against the 1.0x target), 2 if it could
not run. Method and recorded figures: docs/benchmarks.md, "IMAP under imaptest".
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from common import ServeProcess, load_average, machine_basics, verdict
from smtp_delivery import Api, make_message

PASSWORD = "imaptest-bench-pass"
DOMAIN = "example.com"
MODES = {
    "default": [],
    "users1": ["users=1"],
    "logout0": ["logout=0"],
}
# (postern's POSTERN_ARGON2_TIME_COST, POSTERN_ARGON2_MEMORY_KIB) per scheme; Dovecot
# gets argon2id hashes of the same cost (its passdb verifies whatever the hash says).
SCHEMES = {"argon2id": (3, 65536), "cheap": (1, 8)}
COMMANDS = (
    "Logi",
    "List",
    "Stat",
    "Sele",
    "Fetc",
    "Fet2",
    "Stor",
    "Dele",
    "Expu",
    "Appe",
    "Logo",
)
TARGET_RATIO = 1.0


def imaptest_binary() -> str | None:
    configured = os.environ.get("IMAPTEST")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    return shutil.which("imaptest")


# The mbox ------------------------------------------------------------------------


def write_mbox(path: Path, count: int, seed: int) -> None:
    """``count`` realistic messages (headers of real mail, text, HTML alternatives,
    base64 attachments, threads), 2-12 KB each, as an mbox (``>From`` escaped)."""
    rng = random.Random(seed)
    base = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
    with path.open("wb") as out:
        for i in range(count):
            size = rng.choice((2500, 3500, 5000, 8000, 12000))
            message = make_message(i, rng, 20, size, base)
            raw = message.wire[: -len(b".\r\n")].replace(b"\r\n..", b"\r\n.")
            if raw.startswith(b".."):
                raw = raw[1:]
            text = raw.replace(b"\r\n", b"\n")
            text = re.sub(rb"(?m)^(>*From )", rb">\1", text)
            out.write(
                f"From {message.mail_from} Fri Mar  1 08:00:00 2024\n".encode()
                + text
                + b"\n"
            )


# The servers ---------------------------------------------------------------------


def argon2_hash(password: str, time_cost: int, memory_kib: int) -> str:
    from argon2 import PasswordHasher

    return PasswordHasher(
        time_cost=time_cost, memory_cost=memory_kib, parallelism=1
    ).hash(password)


class Dovecot:
    """Debian's Dovecot, standalone: IMAP on loopback, maildir under ``root``, users
    in a passwd-file with argon2id hashes."""

    def __init__(
        self,
        root: Path,
        port: int,
        users: int,
        password_hash: str,
        auth_cache: bool = False,
    ):
        self.root, self.port, self.auth_cache = root, port, auth_cache
        for sub in ("run", "log", "mail"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        uid, gid = (65534, 65534) if os.geteuid() == 0 else (os.getuid(), os.getgid())
        if os.geteuid() == 0:
            # The mail processes run as nobody: they must reach and own the mail.
            for path in (root, *root.parents):
                if path in (Path(tempfile.gettempdir()), Path("/")):
                    break
                os.chmod(path, os.stat(path).st_mode | 0o011)
            os.chown(root / "mail", uid, gid)
        (root / "passwd").write_text(
            "".join(
                f"testuser{n}:{{ARGON2ID}}{password_hash}:{uid}:{gid}::{root}/mail/testuser{n}::\n"
                for n in range(1, users + 1)
            )
        )
        os.chmod(root / "passwd", 0o644)
        self.conf = root / "dovecot.conf"
        self.conf.write_text(self.config(uid))
        self.log = root / "log" / "dovecot.log"
        self.process = subprocess.Popen(
            ["dovecot", "-F", "-c", str(self.conf)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def config(self, uid: int) -> str:
        root = self.root
        lines = [
            "# Written by bench/imaptest_compare.py: a standalone Dovecot for one run.",
            f"base_dir = {root}/run",
            f"state_dir = {root}/run/state",
            f"instance_name = dovecot-imaptest-{os.getpid()}",
            "protocols = imap",
            "listen = 127.0.0.1",
            f"log_path = {root}/log/dovecot.log",
            f"info_log_path = {root}/log/dovecot.log",
            "ssl = no",
            "disable_plaintext_auth = no",
            "auth_mechanisms = plain login",
            "mail_location = maildir:~/Maildir",
            f"first_valid_uid = {min(uid, 1000)}",
            "mail_privileged_group =",
            # Dovecot's default is no auth cache (auth_cache_size = 0); --dovecot-auth-cache
            # gives it one as long as postern's (POSTERN_LOGIN_CACHE_SECONDS, 300 s).
            *(
                [
                    "auth_cache_size = 10M",
                    "auth_cache_ttl = 300 s",
                    "auth_cache_negative_ttl = 0",
                ]
                if self.auth_cache
                else []
            ),
            "passdb {",
            "  driver = passwd-file",
            f"  args = username_format=%u {root}/passwd",
            "}",
            "userdb {",
            "  driver = passwd-file",
            f"  args = username_format=%u {root}/passwd",
            "}",
            "namespace inbox {",
            "  inbox = yes",
            "  separator = /",
            "}",
            "service imap-login {",
            "  inet_listener imap {",
            "    address = 127.0.0.1",
            f"    port = {self.port}",
            "  }",
            "  inet_listener imaps {",
            "    port = 0",
            "  }",
            "  process_min_avail = 0",
            "}",
            "service anvil {",
            "  chroot =",
            "}",
            "service stats {",
            "  unix_listener stats-reader {",
            "    mode = 0600",
            "  }",
            "}",
            "protocol imap {",
            "  mail_max_userip_connections = 1000",
            "}",
        ]
        if os.geteuid() != 0:
            import grp
            import pwd

            user, group = (
                pwd.getpwuid(os.getuid()).pw_name,
                grp.getgrgid(os.getgid()).gr_name,
            )
            lines += [
                f"default_internal_user = {user}",
                f"default_login_user = {user}",
                f"default_internal_group = {group}",
                "service imap-login {",
                "  chroot =",
                "}",
            ]
        return "\n".join(lines) + "\n"

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock,
            ):
                if sock.recv(256).startswith(b"* OK"):
                    return
            time.sleep(0.1)
        log = self.log.read_text() if self.log.exists() else "(no log)"
        self.stop()
        raise SystemExit(f"dovecot did not start:\n{log}")

    def errors(self) -> list[str]:
        if not self.log.exists():
            return []
        return [
            line
            for line in self.log.read_text(errors="replace").splitlines()
            if ": Error: " in line or ": Fatal: " in line
        ]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


class Postern(ServeProcess):
    def __init__(
        self,
        data_dir: Path,
        token: str,
        http_port: int,
        imap_port: int,
        time_cost: int,
        memory_kib: int,
        extra: dict[str, str],
    ):
        self.http_port, self.imap_port = http_port, imap_port
        super().__init__(
            {
                "POSTERN_DATA_DIR": str(data_dir),
                "POSTERN_HTTP_LISTEN": f"127.0.0.1:{http_port}",
                "POSTERN_IMAP_LISTEN": f"127.0.0.1:{imap_port}",
                "POSTERN_DOORS": "http,lmtp,imap",  # with LMTP the IMAP sessions are in mail workers, as in production
                "POSTERN_ADMIN_TOKEN": token,
                "POSTERN_ARGON2_TIME_COST": str(time_cost),
                "POSTERN_ARGON2_MEMORY_KIB": str(memory_kib),
                "POSTERN_DOMAIN": DOMAIN,
                "POSTERN_LOG_LEVEL": "warning",
                "POSTERN_IMAP_CONNECTIONS_PER_IP": "100000",  # every client comes from 127.0.0.1 (Dovecot's limit is raised too)
                **extra,
            }
        )


def create_users(api: Api, users: int) -> None:
    for n in range(1, users + 1):
        status, body = api.call(
            "POST",
            "/users",
            {
                "username": f"testuser{n}",
                "password": PASSWORD,
                "address": f"testuser{n}@{DOMAIN}",
            },
        )
        if status != 200 or not body.get("success"):
            raise SystemExit(f"creating testuser{n} failed: {status} {body}")


# imaptest ------------------------------------------------------------------------


@dataclass
class Stress:
    server: str
    scheme: str
    mode: str
    round: int
    seconds: float = 0.0
    commands: int = 0
    per_command: dict[str, int] = field(default_factory=dict)
    ms: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    stalls: int = 0

    @property
    def rate(self) -> float:
        return self.commands / self.seconds if self.seconds else 0.0


def parse_stress(output: str, run: Stress) -> None:
    """imaptest prints a header of command names, percentages, then a line of counts
    per second; a line of average ms per command ("ms/cmd avg") every few seconds; at
    the end a ``Totals:`` block (names, percentages, counts)."""
    lines = output.splitlines()
    header_at = [
        i
        for i, line in enumerate(lines)
        if line.split()[:3] == ["Logi", "List", "Stat"]
    ]
    totals_at = next(
        (i for i, line in enumerate(lines) if line.startswith("Totals:")), None
    )
    if totals_at is not None and totals_at + 1 < len(lines):
        names = lines[totals_at + 1].split()
        numbers = next(
            (
                line.split()
                for line in lines[totals_at + 2 :]
                if line.split() and all(v.isdigit() for v in line.split())
            ),
            [],
        )
        run.per_command = {
            name: int(v) for name, v in zip(names, numbers, strict=False)
        }
        run.commands = sum(run.per_command.values())
    averages = [line for line in lines if line.rstrip().endswith("ms/cmd avg")]
    if averages and header_at:
        names = lines[header_at[0]].split()
        values = averages[-1].split()[: len(names)]
        run.ms = {
            name: float(v)
            for name, v in zip(names, values, strict=False)
            if v.replace(".", "").isdigit()
        }
    for line in lines:
        if line.startswith("Error:") or " Error: " in line or "BUG:" in line:
            run.errors.append(line.strip())
    run.stalls = sum(
        1 for line in lines if "stalled" in line.lower() or "timeout" in line.lower()
    )


def run_stress(
    binary: str, port: int, mbox: Path, args: argparse.Namespace, run: Stress
) -> str:
    command = [
        binary,
        "host=127.0.0.1",
        f"port={port}",
        "user=testuser%d",
        f"pass={PASSWORD}",
        f"mbox={mbox}",
        f"clients={args.clients}",
        f"users={args.users}",
        f"secs={args.secs}",
        *MODES[run.mode],
    ]
    if run.mode == "users1":
        command = [c for c in command if not c.startswith("users=") or c == "users=1"]
        command = [c if c != "user=testuser%d" else "user=testuser1" for c in command]
    started = time.monotonic()
    result = subprocess.run(
        command,
        check=False,
        capture_output=True,
        text=True,
        timeout=args.secs + 120,
        errors="replace",
    )
    run.seconds = (
        min(time.monotonic() - started, float(args.secs))
        if result.returncode == 0
        else time.monotonic() - started
    )
    output = result.stdout + result.stderr
    parse_stress(output, run)
    if run.seconds <= 0:
        run.seconds = float(args.secs)
    return output


def run_compliance(
    binary: str, port: int, tests: Path
) -> tuple[list[str], list[str], str]:
    command = [
        binary,
        "host=127.0.0.1",
        f"port={port}",
        "user=testuser1",
        f"pass={PASSWORD}",
        f"test={tests}",
    ]
    result = subprocess.run(
        command,
        check=False,
        capture_output=True,
        text=True,
        timeout=900,
        errors="replace",
    )
    output = result.stdout + result.stderr
    failed = sorted(
        {
            m.group(1)
            for m in re.finditer(r"^\*\*\* Test (\S+) command", output, re.MULTILINE)
        }
    )
    skipped: list[str] = []
    for line in output.splitlines():
        if line.lower().startswith("skipped"):
            skipped += line.split(":", 1)[-1].split()
    return failed, skipped, output


# Reporting -----------------------------------------------------------------------


def report(runs: list[Stress]) -> bool:
    ok = True
    print("\n== Stress: commands per second (imaptest totals / seconds) ==")
    print(f"{'scheme':<9} {'mode':<8} {'dovecot':>16} {'postern':>16} {'ratio':>7}")
    keys = sorted(
        {(r.scheme, r.mode) for r in runs},
        key=lambda k: (list(SCHEMES).index(k[0]), list(MODES).index(k[1])),
    )
    for scheme, mode in keys:
        by = {
            s: [r for r in runs if (r.scheme, r.mode, r.server) == (scheme, mode, s)]
            for s in ("dovecot", "postern")
        }
        mean = {
            s: sum(r.rate for r in rs) / len(rs) if rs else 0.0 for s, rs in by.items()
        }
        ratio = mean["postern"] / mean["dovecot"] if mean["dovecot"] else 0.0
        ok &= ratio >= TARGET_RATIO
        spread = {s: "/".join(f"{r.rate:.0f}" for r in rs) for s, rs in by.items()}
        print(
            f"{scheme:<9} {mode:<8} {spread['dovecot']:>16} {spread['postern']:>16} {ratio:>6.2f}x  {verdict(ratio >= TARGET_RATIO)}"
        )
    print("\n== Average ms per command (imaptest), dovecot/postern, over rounds ==")
    print(f"{'scheme':<9} {'mode':<8} " + " ".join(f"{c:>11}" for c in COMMANDS))
    for scheme, mode in keys:
        cells = []
        for command in COMMANDS:
            values = {}
            for server in ("dovecot", "postern"):
                ms = [
                    r.ms[command]
                    for r in runs
                    if (r.scheme, r.mode, r.server) == (scheme, mode, server)
                    and command in r.ms
                ]
                values[server] = f"{sum(ms) / len(ms):.0f}" if ms else "-"
            cells.append(f"{values['dovecot'] + '/' + values['postern']:>11}")
        print(f"{scheme:<9} {mode:<8} " + " ".join(cells))
    kinds: dict[tuple[str, str], int] = {}
    for r in runs:
        for error in r.errors:
            parts = error.split(": ", 3)
            kind = parts[2] if len(parts) > 2 and parts[0] == "Error" else error[:80]
            kinds[(r.server, kind)] = kinds.get((r.server, kind), 0) + 1
    if kinds:
        print("\n== imaptest errors, by kind (count over all runs) ==")
        for (server, kind), count in sorted(kinds.items(), key=lambda item: -item[1])[
            :20
        ]:
            print(f"  {server:<8} {count:>6}  {kind[:120]}")
    return ok


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--schemes", default="argon2id,cheap", help="comma-separated: argon2id, cheap"
    )
    parser.add_argument(
        "--modes",
        default="default,users1,logout0",
        help="comma-separated: default, users1, logout0",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="runs per server, scheme and mode (alternating)",
    )
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--secs", type=int, default=20)
    parser.add_argument(
        "--messages", type=int, default=300, help="messages in the generated mbox"
    )
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument(
        "--port-base",
        type=int,
        default=25100,
        help="postern HTTP, postern IMAP, Dovecot IMAP: base, +1, +2",
    )
    parser.add_argument(
        "--dovecot-auth-cache",
        action="store_true",
        help="give Dovecot an auth cache (off by default in Dovecot) of postern's TTL",
    )
    parser.add_argument(
        "--compliance",
        action="store_true",
        help="also run imaptest's scripted tests on both",
    )
    parser.add_argument(
        "--tests",
        default=None,
        help="imaptest's tests directory (default: beside the binary, src/tests)",
    )
    parser.add_argument(
        "--profile",
        default=None,
        help="write py-spy profiles of postern's processes per stress run here",
    )
    parser.add_argument(
        "--show-output",
        action="store_true",
        help="print imaptest's output of every run",
    )
    parser.add_argument(
        "--postern-env",
        action="append",
        default=[],
        help="NAME=VALUE for postern (diagnosis)",
    )
    return parser.parse_args()


def start_profilers(pid: int, output: Path, secs: int) -> list[subprocess.Popen[bytes]]:
    """py-spy on the serving process and each of its children (the mail workers)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    children = Path(f"/proc/{pid}/task/{pid}/children")
    pids = (
        [pid, *(int(p) for p in children.read_text().split())]
        if children.exists()
        else [pid]
    )
    output.mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(p),
                "--duration",
                str(secs),
                "--rate",
                "200",
                "--format",
                "raw",
                "--output",
                str(output / f"{p}.txt"),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for p in pids
    ]


def main() -> int:
    args = parse_args()
    binary = imaptest_binary()
    if binary is None:
        print(
            "imaptest not found: set IMAPTEST to its path or put it on PATH (Dovecot's imaptest, built separately)."
        )
        return 2
    if shutil.which("dovecot") is None:
        print("Dovecot is not installed (Debian: apt-get install dovecot-imapd).")
        return 2
    schemes = [s for s in args.schemes.split(",") if s]
    modes = [m for m in args.modes.split(",") if m]
    if any(s not in SCHEMES for s in schemes) or any(m not in MODES for m in modes):
        print(f"schemes are {', '.join(SCHEMES)}; modes are {', '.join(MODES)}")
        return 2
    info = machine_basics()
    info["imaptest"] = binary
    info["dovecot"] = subprocess.run(
        ["dovecot", "--version"], check=False, capture_output=True, text=True
    ).stdout.strip()
    print("imaptest: postern against Dovecot (maildir, passwd-file) in the same run")
    for key, value in info.items():
        print(f"  {key + ':':<10} {value}")
    print(f"  load:     {load_average()} (1/5/15 min) before", flush=True)

    temp = Path(tempfile.mkdtemp(prefix="postern-imaptest-"))
    mbox = temp / "bench.mbox"
    write_mbox(mbox, args.messages, args.seed)
    print(f"  mbox:     {args.messages} messages, {mbox.stat().st_size / 1e6:.1f} MB")
    runs: list[Stress] = []
    compliance: dict[str, tuple[list[str], list[str]]] = {}
    extra = dict(item.split("=", 1) for item in args.postern_env)
    try:
        for scheme in schemes:
            time_cost, memory_kib = SCHEMES[scheme]
            root = temp / scheme
            token = secrets.token_urlsafe(24)
            postern = Postern(
                root / "postern",
                token,
                args.port_base,
                args.port_base + 1,
                time_cost,
                memory_kib,
                extra,
            )
            dovecot = Dovecot(
                root / "dovecot",
                args.port_base + 2,
                args.users,
                argon2_hash(PASSWORD, time_cost, memory_kib),
                args.dovecot_auth_cache,
            )
            try:
                postern.wait_ready()
                dovecot.wait_ready()
                api = Api(postern.http_port, token)
                create_users(api, args.users)
                api.close()
                print(
                    f"\n-- scheme {scheme}: argon2id t={time_cost} m={memory_kib} KiB on both",
                    flush=True,
                )
                ports = {"dovecot": dovecot.port, "postern": postern.imap_port}
                for mode in modes:
                    for round_ in range(1, args.rounds + 1):
                        for server in (
                            ("dovecot", "postern")
                            if round_ % 2
                            else ("postern", "dovecot")
                        ):
                            run = Stress(server, scheme, mode, round_)
                            spies = []
                            if args.profile and server == "postern":
                                spies = start_profilers(
                                    postern.pid,
                                    Path(args.profile) / f"{scheme}-{mode}-{round_}",
                                    args.secs,
                                )
                            output = run_stress(binary, ports[server], mbox, args, run)
                            for spy in spies:
                                with contextlib.suppress(subprocess.TimeoutExpired):
                                    spy.wait(timeout=60)
                            runs.append(run)
                            if args.show_output:
                                print(output)
                            print(
                                f"  {mode:<8} round {round_} {server:<8} {run.rate:8.1f} commands/s "
                                f"({run.commands} in {run.seconds:.0f} s), load {load_average()}",
                                flush=True,
                            )
                if args.compliance and scheme == schemes[-1]:
                    tests = (
                        Path(args.tests)
                        if args.tests
                        else Path(binary).resolve().parent / "tests"
                    )
                    for server in ("dovecot", "postern"):
                        failed, skipped, output = run_compliance(
                            binary, ports[server], tests
                        )
                        compliance[server] = (failed, skipped)
                        if args.show_output:
                            print(output)
                for line in dovecot.errors()[:5]:
                    print(f"  dovecot log: {line}")
            finally:
                postern.stop()
                dovecot.stop()
        ok = report(runs)
        if compliance:
            print("\n== Compliance (imaptest test=DIR) ==")
            for server, (failed, skipped) in compliance.items():
                print(f"  {server:<8} failed {len(failed)}: {' '.join(failed) or '-'}")
                print(f"  {'':<8} skipped {len(skipped)}: {' '.join(skipped) or '-'}")
        print(f"\nload average after: {load_average()}")
        print(
            f"target: postern >= {TARGET_RATIO:.1f}x Dovecot's commands/s in every mode: {verdict(ok)}"
        )
        return 0
    finally:
        shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
