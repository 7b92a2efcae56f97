#!/usr/bin/env python3
"""Benchmark: LMTP delivery with filters, postern against itself without filters and
against Dovecot LMTP with a Sieve script that files the same way.

The messages, connections, users and measurement are bench/smtp_delivery.py's (its
machinery is imported): N messages of ~20 KB, most with a base64 attachment, to U
users over C concurrent LMTP connections, durable (``POSTERN_FSYNC=true``; Dovecot's
default ``mail_fsync = optimized``). Every user has the same 20 filters, a realistic
mix: 12 that file into one of six folders (by sender, subject, List-Id, attachment,
body text), 8 that set \\Seen or \\Flagged (by subject, recipient, size), some that
never match. Targets, each with a fresh store, the order rotating every round:

* ``postern lmtp``: no filters (the baseline);
* ``postern filters``: the 20 filters per user;
* ``dovecot sieve``: Dovecot's LMTP with Pigeonhole (Debian's ``dovecot-sieve``)
  running one compiled Sieve script with the same 20 rules.

Targets (issue 16): the filters cost at most 10% of postern's throughput
(``postern filters`` / ``postern lmtp`` >= 0.90), and postern with filters at least
matches Dovecot with Sieve (>= 1.0). After each run the stores are counted per folder
(summed over the users): postern and Dovecot must file alike.

    .venv/bin/python bench/rules_delivery.py                        # 3,000 messages, 3 rounds
    .venv/bin/python bench/rules_delivery.py --messages 300 --rounds 1   # a smoke run

Exits 0 once it has measured, PASS or FAIL (1 if a reply was not 250 or the stores
disagree, 2 if it could not run). Figures and method: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import smtp_delivery as sd
from common import load_average, verdict

FILTER_COST_TARGET = 0.90  # postern with filters / postern without
SIEVE_TARGET = 1.0  # postern with filters / Dovecot with Sieve
FOLDERS = ("Lists", "Billing", "Alerts", "Attachments", "Travel", "Work")
FOLDER_TO_MAILDIR = {f: f".{f}" for f in FOLDERS}

# (postern query, postern action, Sieve test). Filing rules: the first that matches
# chooses the folder (Sieve: an if/elsif chain in the same order); flag rules add up.
FILING: list[tuple[dict[str, Any], str, str]] = [
    ({"from": "lists.example.net"}, "Lists", 'header :contains "from" "lists.example.net"'),
    ({"subject": "Newsletter"}, "Lists", 'header :contains "subject" "Newsletter"'),
    ({"listId": "<announce.example.net>"}, "Lists", 'header :contains "list-id" "announce.example.net"'),
    ({"listId": "dev.lists.example.org"}, "Lists", 'header :contains "list-id" "dev.lists.example.org"'),
    ({"subject": "Invoice"}, "Billing", 'header :contains "subject" "Invoice"'),
    ({"from": "corp.example", "text": "budget"}, "Billing", 'allof (header :contains "from" "corp.example", body :text :contains "budget")'),
    ({"subject": "Build failure"}, "Alerts", 'header :contains "subject" "Build failure"'),
    ({"subject": "Security advisory"}, "Alerts", 'header :contains "subject" "Security advisory"'),
    ({"from": "mail.example.org", "ha": True}, "Attachments", 'allof (header :contains "from" "mail.example.org", header :contains "content-type" "multipart/mixed")'),
    ({"subject": "Travel booking"}, "Travel", 'header :contains "subject" "Travel booking"'),
    ({"subject": "Meeting notes", "from": "example.net"}, "Work", 'allof (header :contains "subject" "Meeting notes", header :contains "from" "example.net")'),
    ({"subject": "Pull request"}, "Work", 'header :contains "subject" "Pull request"'),
]
FLAGS: list[tuple[dict[str, Any], dict[str, bool], str]] = [
    ({"subject": "Quarterly report"}, {"flag": True}, 'header :contains "subject" "Quarterly report"'),
    ({"size": 25000}, {"flag": True}, "size :over 25000"),
    ({"to": "user7@"}, {"seen": True}, 'header :contains ["to", "cc", "delivered-to"] "user7@"'),
    ({"subject": "Team lunch"}, {"seen": True}, 'header :contains "subject" "Team lunch"'),
    ({"from": "noreply"}, {"seen": True}, 'header :contains "from" "noreply"'),
    ({"size": -5000}, {"seen": True}, "size :under 5000"),
    ({"subject": "urgent"}, {"flag": True}, 'header :contains "subject" "urgent"'),
    ({"from": "example.org", "subject": "Contract draft"}, {"flag": True, "seen": True}, 'allof (header :contains "from" "example.org", header :contains "subject" "Contract draft")'),
]
assert len(FILING) + len(FLAGS) == 20


def sieve_script() -> str:
    lines = ['require ["fileinto", "imap4flags", "body", "mailbox"];']
    for _, action, test in FLAGS:
        flags = " ".join(f'"\\\\{name}"' for name, on in (("Seen", action.get("seen")), ("Flagged", action.get("flag"))) if on)
        lines.append(f"if {test} {{ addflag [{flags.replace(' ', ', ')}]; }}")
    for n, (_, folder, test) in enumerate(FILING):
        lines.append(f'{"if" if n == 0 else "elsif"} {test} {{ fileinto :create "{folder}"; }}')
    return "\n".join(lines) + "\n"


def sieve_config(base: Any) -> Any:
    """smtp_delivery's Dovecot configuration with Pigeonhole on for LMTP and our
    compiled script for every user."""

    def config(root: Path, port: int) -> str:
        script = root / "rules.sieve"
        return base(root, port) + "\n".join(
            [
                "protocol lmtp {",
                "  mail_plugins = $mail_plugins sieve",
                "}",
                "lda_mailbox_autocreate = yes",
                "plugin {",
                f"  sieve = file:{root}/sieve-user;active={root}/sieve-user/none.sieve",
                f"  sieve_before = {script}",
                "}",
            ]
        ) + "\n"

    return config


def prepare_sieve(root: Path) -> None:
    script = root / "rules.sieve"
    script.write_text(sieve_script())
    (root / "sieve-user").mkdir(exist_ok=True)
    sievec = shutil.which("sievec") or "/usr/bin/sievec"
    out = subprocess.run([sievec, str(script)], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"sievec failed: {out.stderr or out.stdout}\n{script.read_text()}")
    for path in (script, script.with_suffix(".svbin"), root / "sieve-user"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)


def dovecot_folder_counts(root: Path, users: int) -> Counter[str]:
    counts: Counter[str] = Counter()
    for n in range(users):
        box = root / "mail" / f"user{n}@{sd.DOMAIN}"
        for folder, directory in [("INBOX", box), *((f, box / d) for f, d in FOLDER_TO_MAILDIR.items())]:
            counts[folder] += sum(len(os.listdir(directory / d)) for d in ("new", "cur") if (directory / d).is_dir())
    return counts


def postern_folder_counts(api: sd.Api, user_ids: list[str]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for user_id in user_ids:
        status, body = api.call("GET", f"/users/{user_id}/mailboxes?counters=true")
        if status != 200:
            raise SystemExit(f"listing the mailboxes of {user_id} failed: {status} {body}")
        for m in body["results"]:
            if m["path"] == "INBOX" or m["path"] in FOLDERS:
                counts[m["path"]] += int(m["total"])
    return counts


def add_filters(api: sd.Api, user_id: str) -> None:
    folder_ids = {}
    for folder in FOLDERS:
        status, body = api.call("POST", f"/users/{user_id}/mailboxes", {"path": folder})
        if status != 200:
            raise SystemExit(f"creating {folder} failed: {status} {body}")
        folder_ids[folder] = body["id"]
    # Interleaved, as a user adds them over time; filing order is that of FILING.
    flags = iter(FLAGS)
    for n, (query, folder, _) in enumerate(FILING):
        items = [(query, {"mailbox": folder_ids[folder]})]
        if n % 3 == 2:
            flag_query, action, _ = next(flags)
            items.append((flag_query, action))
        for q, a in items:
            status, body = api.call("POST", f"/users/{user_id}/filters", {"query": q, "action": a})
            if status != 200:
                raise SystemExit(f"creating a filter failed: {status} {body}")
    for flag_query, action, _ in flags:
        status, body = api.call("POST", f"/users/{user_id}/filters", {"query": flag_query, "action": action})
        if status != 200:
            raise SystemExit(f"creating a filter failed: {status} {body}")


def run_postern(root: Path, round_: int, filters: bool, messages: list[sd.Message], args: argparse.Namespace, token: str) -> tuple[sd.Run, Counter[str]]:
    server = sd.Postern(root, token, args.connections, args.workers)
    try:
        server.wait_ready()
        api = sd.Api(server.http_port, token)
        user_ids = sd.create_users(api, args.users)
        if filters:
            for user_id in user_ids:
                add_filters(api, user_id)
        else:
            for user_id in user_ids:  # the same folders, empty: only the filters differ
                for folder in FOLDERS:
                    api.call("POST", f"/users/{user_id}/mailboxes", {"path": folder})
        target = "postern filters" if filters else "postern lmtp"
        run = sd.measure(target, round_, server.lmtp_port, True, server.pid, messages, args.connections)
        counts = postern_folder_counts(api, user_ids)
        api.close()
    finally:
        code = server.stop()
    if code not in (0, None):
        print(f"  postern exited with {code}:\n" + "\n".join(server.output[-20:]))
    return run, counts


def run_dovecot(root: Path, round_: int, messages: list[sd.Message], args: argparse.Namespace) -> tuple[sd.Run, Counter[str]]:
    prepare_sieve(root)
    base = sd.dovecot_config
    sd.dovecot_config = sieve_config(base)
    try:
        dovecot = sd.Dovecot(root)
    finally:
        sd.dovecot_config = base
    try:
        dovecot.wait_ready()
        run = sd.measure("dovecot sieve", round_, dovecot.port, True, dovecot.pid, messages, args.connections)
        counts = dovecot_folder_counts(root, args.users)
        errors = dovecot.errors()
        if errors:
            run.examples += errors[:3]
    finally:
        dovecot.stop()
    return run, counts


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=3000, help="messages per target and round (default 3,000)")
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=20240301)
    parser.add_argument("--workers", default="auto", help="POSTERN_MAIL_WORKERS (default auto)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", action="store_true")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if not sd.dovecot_installed() or not Path("/usr/lib/dovecot/modules/lib90_sieve_plugin.so").exists():
        print("Dovecot's LMTP and Pigeonhole are needed: apt-get install -y dovecot-lmtpd dovecot-sieve")
        return 2
    info = sd.machine()
    info["dovecot"] = sd.dovecot_version(sd.dovecot_binary() or "dovecot")
    print("postern filters benchmark: LMTP with 20 filters per user, against none and against Dovecot + Sieve")
    for key, value in info.items():
        print(f"  {key + ':':<12} {value}")
    messages = sd.generate(args.messages, args.users, args.size, args.seed)
    total = sum(m.size for m in messages)
    print(f"\n{len(messages):,} messages ({total / 1e6:.1f} MB), {args.users} users, {args.connections} connections, {args.rounds} round(s)")
    print(f"load average before: {load_average()}\n")
    token = secrets.token_urlsafe(24)
    temp = Path(tempfile.mkdtemp(prefix="postern-bench-rules-"))
    targets = ["postern lmtp", "postern filters", "dovecot sieve"]
    runs: list[sd.Run] = []
    filed: dict[str, Counter[str]] = {}
    disagree: list[str] = []
    try:
        for round_ in range(1, args.rounds + 1):
            shift = (round_ - 1) % len(targets)
            for target in targets[shift:] + targets[:shift]:
                root = temp / f"round{round_}" / target.replace(" ", "-")
                root.mkdir(parents=True)
                if target == "dovecot sieve":
                    run, counts = run_dovecot(root, round_, messages, args)
                else:
                    run, counts = run_postern(root, round_, target == "postern filters", messages, args, token)
                run.verified = sum(counts.values()) == len(messages)
                if not run.verified:
                    run.verify_note = f"{sum(counts.values()):,} messages stored, expected {len(messages):,}"
                runs.append(run)
                sd.report(run)
                if target != "postern lmtp":
                    if target in filed and filed[target] != counts:
                        disagree.append(f"{target} filed differently in round {round_}")
                    filed[target] = counts
        print(f"load average after:  {load_average()}")
    finally:
        if args.keep:
            print(f"kept {temp}")
        else:
            shutil.rmtree(temp, ignore_errors=True)

    median = {t: statistics.median(r.rate for r in runs if r.target == t) for t in targets}
    cpu = {t: statistics.median(r.server_cpu_ms for r in runs if r.target == t) for t in targets}
    cost = median["postern filters"] / median["postern lmtp"]
    versus = median["postern filters"] / median["dovecot sieve"]
    same = filed.get("postern filters") == filed.get("dovecot sieve")
    bad = sum(r.bad for r in runs)
    wrong = [r for r in runs if not r.verified]
    print(f"\nresults: median of {args.rounds} round(s)")
    print(f"  {'target':<16} {'messages/s':>10}  {'server CPU ms/msg':>17}")
    for t in targets:
        print(f"  {t:<16} {median[t]:>10,.0f}  {cpu[t]:>17.2f}")
    cpu_cost = cpu["postern filters"] / cpu["postern lmtp"] - 1
    print(f"\n  filters / no filters:    {cost:.2f}  target >= {FILTER_COST_TARGET:.2f}  {verdict(cost >= FILTER_COST_TARGET)}")
    print(f"  server CPU of filters:   {cpu_cost:+.0%} per message (a steadier figure on a loaded machine)")
    print(f"  filters / Dovecot Sieve: {versus:.2f}  target >= {SIEVE_TARGET:.1f}  {verdict(versus >= SIEVE_TARGET)}")
    print(f"  filed per folder:        postern {dict(sorted(filed.get('postern filters', Counter()).items()))}")
    print(f"                           dovecot {dict(sorted(filed.get('dovecot sieve', Counter()).items()))}  {'same' if same else 'DIFFERENT'}")
    print(f"  every reply 250:         {'yes' if bad == 0 else f'NO ({bad})'}; stores complete: {'yes' if not wrong else 'NO'}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "date": datetime.now(UTC).isoformat(timespec="seconds"),
                    "machine": info,
                    "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                    "runs": [r.__dict__ if hasattr(r, "__dict__") else sd.asdict(r) for r in runs],
                    "median": median,
                    "cpu": cpu,
                    "filters / none": cost,
                    "filters cpu cost": cpu_cost,
                    "filters / sieve": versus,
                    "filed": {k: dict(v) for k, v in filed.items()},
                },
                indent=2,
                default=str,
            )
        )
    return 0 if bad == 0 and not wrong and same and not disagree else 1


if __name__ == "__main__":
    t0 = time.perf_counter()
    code = main()
    print(f"(took {time.perf_counter() - t0:.0f} s)")
    sys.exit(code)
