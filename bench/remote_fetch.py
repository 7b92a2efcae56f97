"""Remote identities: fetch a 10,000-message mailbox from Dovecot into postern, against
fetchmail and getmail fetching the same mailbox and delivering it into postern's own
LMTP door, in the same run; then the IDLE new-mail latency (a message APPENDed to the
remote INBOX -> stored in postern) of a running scheduler.

    .venv/bin/python bench/remote_fetch.py [--messages 10000] [--idle 20]

Dovecot runs from the test fixture (its own config and base_dir under /tmp, a test CA,
IMAPS on a free loopback port); postern runs in this process (SQLite, fsync on, its
LMTP door on loopback). Each fetcher delivers into a user of its own. The mailbox is
written straight into Dovecot's maildir and read once (index built, files cached)
before anything is timed. Goals: postern >= 1.0x the faster of fetchmail and getmail;
IDLE latency p50 <= 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import COMMON_WORDS, FIRST_NAMES, LAST_NAMES, TOPICS, load_average, paragraphs  # noqa: E402

from postern.config import Settings  # noqa: E402
from postern.serve.runtime import Runtime  # noqa: E402
from postern.serve.server import bound_port, start_mail_doors  # noqa: E402
from tests.remote.dovecot import Dovecot  # noqa: E402

ADMIN = "bench-admin-token"


def make_message(rng: random.Random, n: int) -> bytes:
    words = list(COMMON_WORDS)
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    body = "\r\n\r\n".join(paragraphs(rng, words, rng.choice((600, 1500, 3000, 8000))))
    return (
        f"Return-Path: <{first.lower()}@remote.example>\r\nFrom: {first} {last} <{first.lower()}@remote.example>\r\nTo: me@remote.example\r\n"
        f"Subject: {rng.choice(TOPICS)} {n}\r\nMessage-ID: <bench{n}@remote.example>\r\n"
        f"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


def fill_maildir(dovecot: Dovecot, login: str, count: int) -> int:
    folder = dovecot.root / "mail" / login
    for sub in ("new", "cur", "tmp"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    total = 0
    stamp = int(time.time()) - count
    for n in range(count):
        raw = make_message(rng, n)
        total += len(raw)
        (folder / "cur" / f"{stamp + n}.M{n}P1.bench,S={len(raw)}:2,").write_bytes(raw)
    for path in [folder, *folder.rglob("*")]:
        shutil.chown(path, "mail", "mail")
    return total


def warm(dovecot: Dovecot, login: str) -> int:
    client = dovecot.imap_client(login)
    try:
        _, data = client.select("INBOX", readonly=True)
        client.fetch("1:*", "(UID RFC822.SIZE BODY.PEEK[])")
        return int(data[0])
    finally:
        client.logout()


async def count(runtime: Runtime, user_id: str) -> int:
    folder = await runtime.mailstore.folder_by_path(user_id, "INBOX")
    return int((await runtime.mailstore.get_folder(user_id, folder.id)).message_count)


async def run_tool(argv: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(*argv, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    elapsed = time.perf_counter() - started
    if process.returncode not in (0, 1):  # fetchmail: 1 = no new mail
        print(f"{argv[0]} failed ({process.returncode}): {err.decode()[-800:]} {out.decode()[-400:]}")
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--idle", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="postern-bench-remote-"))
    os.chmod(work, 0o755)
    dovecot = Dovecot(work / "dovecot")
    dovecot.start()
    runtime = None
    try:
        login = "mailbox"
        password = dovecot.add_user(login)
        size = fill_maildir(dovecot, login, args.messages)
        assert warm(dovecot, login) == args.messages
        print(f"mailbox: {args.messages:,} messages, {size / 1e6:.1f} MB; load average {load_average()}")

        settings = Settings(
            data_dir=work / "postern",
            admin_token=ADMIN,
            domain="example.com",
            hostname="mx.example.com",
            lmtp_listen="127.0.0.1:0",
            smtp_listen="127.0.0.1:0",
            submission_listen="127.0.0.1:0",
            doors="lmtp",
            remote_ca_file=dovecot.ca,
            remote_min_poll_interval=1,
            check_authentication=False,
        )
        runtime = Runtime.build(settings)
        await runtime.start()
        doors = await start_mail_doors(runtime)
        lmtp = bound_port(doors["lmtp"])
        from postern.http.app import create_app

        transport = httpx.ASGITransport(app=create_app(runtime))
        users: dict[str, str] = {}
        async with httpx.AsyncClient(transport=transport, base_url="http://b", headers={"X-Access-Token": ADMIN}) as admin:
            for name in ("postern", "fetchmail", "getmail", "idle"):
                answer = await admin.post("/users", json={"username": name, "password": "bench password 1", "address": f"{name}@example.com"})
                users[name] = answer.json()["id"]

        results: dict[str, float] = {}
        # fetchmail, into postern's LMTP.
        rc = work / "fetchmailrc"
        rc.write_text(
            f'set no syslog\npoll localhost port {dovecot.imaps} with protocol IMAP\n'
            f'  user "{login}" there with password "{password}" is "fetchmail@example.com" here\n'
            f'  options ssl sslcertck sslcertfile "{dovecot.ca}" keep fetchall\n'
            f'  smtphost "127.0.0.1/{lmtp}" lmtp\n'
        )
        rc.chmod(0o600)
        results["fetchmail"] = await run_tool(["fetchmail", "-f", str(rc), "-s", "--nosyslog", "-i", str(work / "fetchids")], work)
        # getmail, into postern's LMTP.
        getmail_dir = work / "getmail"
        getmail_dir.mkdir()
        (getmail_dir / "getmailrc").write_text(
            f"[retriever]\ntype = SimpleIMAPSSLRetriever\nserver = localhost\nport = {dovecot.imaps}\nusername = {login}\n"
            f"password = {password}\nca_certs = {dovecot.ca}\nmailboxes = (\"INBOX\",)\n\n"
            f"[destination]\ntype = MDA_lmtp\nhost = 127.0.0.1\nport = {lmtp}\noverride = getmail@example.com\n\n"
            "[options]\nread_all = true\ndelete = false\nverbose = 0\nmessage_log_syslog = false\n"
        )
        results["getmail"] = await run_tool(["getmail", "--getmaildir", str(getmail_dir), "--rcfile", "getmailrc"], work)
        # postern's own fetcher.
        row, tried = await runtime.remote_identities.create(
            users["postern"],
            {
                "identity_id": "postern@example.com",
                "connection_required": True,
                "params": {"login": login, "password": password, "mail_protocol": "IMAP", "incomming_mail_server": "localhost", "mail_port": dovecot.imaps, "fetch_method": "all"},
            },
        )
        assert tried.connected, tried.error
        started = time.perf_counter()
        await runtime.remote_scheduler.fetch_once(row.id)
        results["postern"] = time.perf_counter() - started

        counts = {name: await count(runtime, users[name]) for name in ("postern", "fetchmail", "getmail")}
        for name, seconds in results.items():
            print(f"{name:10s} {counts[name]:6,} messages in {seconds:7.1f} s  ({counts[name] / seconds:7.1f} msg/s)")
        baseline = min(results["fetchmail"], results["getmail"])
        ratio = baseline / results["postern"]
        print(f"postern vs the faster of fetchmail and getmail: {ratio:.2f}x (goal >= 1.0x) -> {'PASS' if ratio >= 1.0 else 'FAIL'}")
        assert all(c == args.messages for c in counts.values()), counts

        # IDLE latency.
        await runtime.remote_identities.create(
            users["idle"],
            {
                "identity_id": "idle@example.com",
                "params": {"login": "idler", "password": dovecot.add_user("idler"), "mail_protocol": "IMAP", "incomming_mail_server": "localhost", "mail_port": dovecot.imaps, "poll_interval": 300},
            },
        )
        scheduler = asyncio.create_task(runtime.remote_scheduler.run())
        latencies = []
        try:
            await asyncio.sleep(2)
            rng = random.Random(3)
            for n in range(args.idle):
                before = await count(runtime, users["idle"])
                raw = make_message(rng, 100_000 + n)
                started = time.perf_counter()
                await asyncio.to_thread(dovecot.append, "idler", raw)
                while await count(runtime, users["idle"]) == before:
                    await asyncio.sleep(0.005)
                latencies.append(time.perf_counter() - started)
                await asyncio.sleep(0.2)
        finally:
            scheduler.cancel()
            await asyncio.gather(scheduler, return_exceptions=True)
        p50 = statistics.median(latencies)
        p90 = sorted(latencies)[int(len(latencies) * 0.9) - 1]
        print(f"IDLE new-mail latency over {len(latencies)} messages: p50 {p50 * 1000:.0f} ms, p90 {p90 * 1000:.0f} ms (goal p50 <= 2 s) -> {'PASS' if p50 <= 2 else 'FAIL'}")
        print(f"load average after: {load_average()}")
        for server in doors.values():
            server.close()
    finally:
        if runtime is not None:
            await runtime.close()
        dovecot.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
