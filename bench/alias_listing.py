#!/usr/bin/env python3
"""Benchmark: listing a user's aliases over the user API, first page against a deep one.

Seeds one user with N aliases (10,000 by default) straight through storage (each
with a contact and a latest activity, their activity times shuffled, a few pinned),
starts ``postern serve`` on a free loopback port against that data, and measures
``GET /api/v2/aliases?page_id=0`` against ``page_id=400`` (8,000 aliases deep):
sequential requests on one keep-alive connection, many rounds, the two targets back
to back in each round (the order alternating). Per round: the mean latency of each
target and the server's CPU time per request; the verdict is the median over the
rounds of deep ÷ first (target: at most 1.2).

    .venv/bin/python bench/alias_listing.py            # 10,000 aliases, SQLite
    .venv/bin/python bench/alias_listing.py --quick    # 1,000 aliases, page 40, a smoke run
    .venv/bin/python bench/alias_listing.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/test

A measurement: exits 0 once it has measured (PASS or FAIL), 1 when a request was not
answered as it should be or the setup failed. Method and figures: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import random
import secrets
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from common import ServeProcess, free_port, load_average, machine_basics, verdict

TARGET = 1.2  # deep page latency / first page latency
PAGE_SIZE = 20


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def seed(args: argparse.Namespace, data_dir: Path, schema: str | None) -> str:
    """The user, its mailboxes, aliases and contacts; returns the API key."""
    from postern.accounts.service import NewUser
    from postern.config import Settings
    from postern.serve.runtime import Runtime
    from postern.storage import aliases as alias_store
    from postern.storage import contacts as contact_store
    from postern.storage import mailboxes as mailbox_store
    from postern.storage.ids import now_ms
    from postern.storage.schema import aliases, contacts
    from sqlalchemy import select, update

    settings = Settings(
        data_dir=data_dir, database_url=args.database_url, database_schema=schema, fsync=False, domain="bench.example", gc_interval=3600
    )
    runtime = Runtime.build(settings)
    rng = random.Random(20261121)
    try:
        await runtime.start()
        user_id = await runtime.accounts.create_user(NewUser(username="aliasbench", password=None, empty_address=True))
        key = await runtime.api_keys.create(user_id, "alias benchmark")
        async with runtime.db.write() as conn:
            boxes = [
                await mailbox_store.insert(
                    conn,
                    {"user_id": user_id, "email": f"box{n}@mail.example", "email_key": f"box{n}@mail.example", "verified": True,
                     "is_default": n == 0, "created_ms": now_ms()},
                )
                for n in range(3)
            ]  # fmt: skip
        base_ms = 1_700_000_000_000
        times = list(range(args.aliases))
        rng.shuffle(times)  # activity order is not creation order
        done = 0
        started = time.perf_counter()
        while done < args.aliases:
            batch = range(done, min(args.aliases, done + 1000))
            async with runtime.db.write() as conn:
                for i in batch:
                    email = f"alias{i}.{rng.choice(('cat', 'dog', 'owl'))}{i % 997}@bench.example"
                    mailbox_ids = [boxes[i % 3]] + ([boxes[(i + 1) % 3]] if i % 4 == 0 else [])
                    alias_id = await alias_store.insert_alias(
                        conn, user_id=user_id, email=email, email_key=email, mailbox_ids=mailbox_ids,
                        created_ms=base_ms + times[i] * 60_000, note=f"note {i}" if i % 3 == 0 else None,
                    )  # fmt: skip
                    contact = f"sender{i}@shop{i % 50}.example"
                    await contact_store.insert_if_absent(
                        conn,
                        {"user_id": user_id, "alias_id": alias_id, "email": contact, "email_key": contact, "name": f"Sender {i}",
                         "reverse_alias": f"ra+bench{i:020d}@bench.example", "reverse_alias_key": f"ra+bench{i:020d}@bench.example",
                         "created_ms": base_ms},
                    )  # fmt: skip
            done = batch.stop
        # Every alias's latest activity is a forward from its contact; a few are pinned.
        async with runtime.db.write() as conn:
            await conn.execute(
                update(aliases)
                .where(aliases.c.user_id == user_id)
                .values(
                    latest_activity_action="forward",
                    latest_contact_id=select(contacts.c.id).where(contacts.c.alias_id == aliases.c.id).scalar_subquery(),
                    nb_forward=aliases.c.id % 17,
                    pinned=(aliases.c.id % 2500) == 1,
                )
            )
        print(f"  seeded {args.aliases:,} aliases (with a contact each) in {time.perf_counter() - started:.1f} s")
        return key
    finally:
        await runtime.close()


async def service_costs(args: argparse.Namespace, data_dir: Path, schema: str | None, key: str) -> tuple[float, float]:
    """In process, without HTTP: the mean time (ms) of ``Aliases.page`` (its SQL and
    the rows made into views) for page 0 and for the deep page, interleaved."""
    from postern.config import Settings
    from postern.serve.runtime import Runtime

    settings = Settings(data_dir=data_dir, database_url=args.database_url, database_schema=schema, domain="bench.example", gc_interval=3600)
    runtime = Runtime.build(settings)
    try:
        await runtime.start(create_token=False)
        holder = await runtime.api_keys.authenticate(key)
        assert holder is not None
        totals = {0: 0.0, args.page: 0.0}
        for round_ in range(args.rounds * 2):
            for page in (0, args.page) if round_ % 2 == 0 else (args.page, 0):
                started = time.perf_counter()
                for _ in range(args.requests // 2):
                    await runtime.aliases.page(holder.user.id, page)
                totals[page] += time.perf_counter() - started
        calls = args.rounds * 2 * (args.requests // 2)
        return totals[0] / calls * 1000, totals[args.page] / calls * 1000
    finally:
        await runtime.close()


async def vacuum(database_url: str, schema: str) -> None:
    """VACUUM ANALYZE the seeded tables, as autovacuum would soon after a bulk load:
    statistics, and the visibility map that index-only scans rely on."""
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            for table in ("aliases", "alias_mailboxes", "contacts", "mailboxes"):
                await conn.exec_driver_sql(f'VACUUM ANALYZE "{schema}"."{table}"')
    finally:
        await engine.dispose()


async def drop_schema(database_url: str, schema: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await engine.dispose()


class Client:
    def __init__(self, port: int, key: str):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Authentication": key}

    def get(self, path: str) -> tuple[int, bytes]:
        self.conn.request("GET", path, headers=self.headers)
        response = self.conn.getresponse()
        return response.status, response.read()


def measure(client: Client, path: str, requests: int, pid: int) -> tuple[float, float]:
    """Mean latency (ms) and server CPU time per request (µs) over ``requests``."""
    cpu_before = cpu_seconds(pid)
    started = time.perf_counter()
    for _ in range(requests):
        status, body = client.get(path)
        if status != 200:
            raise SystemExit(f"{path} answered {status}: {body[:300]!r}")
    elapsed = time.perf_counter() - started
    return elapsed / requests * 1000, (cpu_seconds(pid) - cpu_before) / requests * 1e6


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--aliases", type=int, default=None, help="aliases of the user (default 10,000; 1,000 with --quick)")
    parser.add_argument("--page", type=int, default=None, help="the deep page (default 400; 40 with --quick)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 10; 2 with --quick)")
    parser.add_argument("--requests", type=int, default=None, help="requests per target and round (default 300; 50 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--database-url", help="e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test (default: SQLite); a fresh schema is used")
    parser.add_argument("--keep", action="store_true", help="keep the data directory (and the PostgreSQL schema)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    args = parser.parse_args()
    args.aliases = args.aliases or (1000 if args.quick else 10_000)
    args.page = args.page if args.page is not None else (40 if args.quick else 400)
    args.rounds = args.rounds or (2 if args.quick else 10)
    args.requests = args.requests or (50 if args.quick else 300)
    if (args.page + 1) * PAGE_SIZE > args.aliases:
        parser.error(f"page {args.page} is beyond {args.aliases} aliases")
    return args


def main() -> int:
    args = parse_args()
    print("postern user API alias listing benchmark")
    for name, value in machine_basics().items():
        print(f"  {name + ':':<12} {value}")
    temp = Path(tempfile.mkdtemp(prefix="postern-alias-bench-"))
    data_dir = temp / "data"
    postgres = bool(args.database_url) and not args.database_url.startswith("sqlite")
    schema = f"bench_{secrets.token_hex(4)}" if postgres else None
    print(f"  database:    {args.database_url or 'SQLite (WAL) in the data directory'}{f' (schema {schema})' if schema else ''}")
    print(f"  data dir:    {data_dir}")
    server: ServeProcess | None = None
    try:
        print(f"\nseeding {args.aliases:,} aliases")
        key = asyncio.run(seed(args, data_dir, schema))
        if schema:
            asyncio.run(vacuum(args.database_url, schema))
        first_sql, deep_sql = asyncio.run(service_costs(args, data_dir, schema, key))
        print(
            f"  in process, Aliases.page (SQL and views, no HTTP): page 0 {first_sql:.2f} ms, page {args.page} {deep_sql:.2f} ms "
            f"(ratio {deep_sql / first_sql:.3f})"
        )
        port = free_port()
        settings = {
            "POSTERN_DATA_DIR": str(data_dir),
            "POSTERN_HTTP_LISTEN": f"127.0.0.1:{port}",
            "POSTERN_ADMIN_TOKEN": secrets.token_urlsafe(24),
            "POSTERN_DOMAIN": "bench.example",
            "POSTERN_LOG_LEVEL": "warning",
            "POSTERN_GC_INTERVAL": "3600",
        }
        if args.database_url:
            settings["POSTERN_DATABASE_URL"] = args.database_url
        if schema:
            settings["POSTERN_DATABASE_SCHEMA"] = schema
        server = ServeProcess(settings)
        server.wait_ready()
        print(f"\nserver ready on 127.0.0.1:{port} (pid {server.pid})")
        client = Client(port, key)
        first_path, deep_path = "/api/v2/aliases?page_id=0", f"/api/v2/aliases?page_id={args.page}"
        pages = {}
        for name, path in (("first", first_path), ("deep", deep_path)):
            status, body = client.get(path)
            items = json.loads(body)["aliases"] if status == 200 else []
            if len(items) != PAGE_SIZE or any(a["latest_activity"] is None or not a["mailboxes"] for a in items):
                raise SystemExit(f"the {name} page is wrong: {status} {body[:300]!r}")
            pages[name] = items
        print(f"  first page: {pages['first'][0]['email']} ... (pinned first: {pages['first'][0]['pinned']})")
        print(f"  deep page:  {pages['deep'][0]['email']} ... ({args.page * PAGE_SIZE:,} aliases deep)")
        print(f"\nmeasuring: {args.rounds} rounds x 2 targets x {args.requests} sequential requests (one keep-alive connection)")
        print(f"  load average before: {load_average()}")
        health_ms, health_cpu = measure(client, "/health", args.requests, server.pid)
        print(f"  baseline GET /health: {health_ms:.2f} ms a request ({health_cpu:.0f} µs server CPU)")
        measure(client, first_path, max(20, args.requests // 5), server.pid)  # warm-up
        measure(client, deep_path, max(20, args.requests // 5), server.pid)
        rounds: list[dict[str, Any]] = []
        for round_ in range(1, args.rounds + 1):
            order = [("first", first_path), ("deep", deep_path)]
            if round_ % 2 == 0:
                order.reverse()
            result: dict[str, Any] = {"round": round_}
            for name, path in order:
                latency, cpu = measure(client, path, args.requests, server.pid)
                result[f"{name}_ms"], result[f"{name}_cpu_us"] = latency, cpu
            result["ratio"] = result["deep_ms"] / result["first_ms"]
            result["cpu_ratio"] = result["deep_cpu_us"] / result["first_cpu_us"] if result["first_cpu_us"] else float("nan")
            rounds.append(result)
            print(
                f"  round {round_:>2}  first {result['first_ms']:6.2f} ms ({result['first_cpu_us']:6.0f} µs CPU)  "
                f"deep {result['deep_ms']:6.2f} ms ({result['deep_cpu_us']:6.0f} µs CPU)  ratio {result['ratio']:.3f}"
            )
        load_after = load_average()
        ratio = statistics.median(r["ratio"] for r in rounds)
        cpu_ratio = statistics.median(r["cpu_ratio"] for r in rounds)
        first_ms = statistics.median(r["first_ms"] for r in rounds)
        deep_ms = statistics.median(r["deep_ms"] for r in rounds)
        print(f"  load average after: {load_after}")
        print("\nresult")
        print(f"  first page (page_id=0):          median {first_ms:.2f} ms a request")
        print(f"  deep page (page_id={args.page}):       median {deep_ms:.2f} ms a request")
        print(f"  deep / first latency, median of rounds: {ratio:.3f}  (target <= {TARGET})  {verdict(ratio <= TARGET)}")
        print(f"  deep / first server CPU, median:        {cpu_ratio:.3f}")
        if args.json:
            args.json.write_text(
                json.dumps({"aliases": args.aliases, "page": args.page, "database": args.database_url or "sqlite", "rounds": rounds,
                            "ratio": ratio, "cpu_ratio": cpu_ratio, "service_first_ms": first_sql, "service_deep_ms": deep_sql, "first_ms": first_ms, "deep_ms": deep_ms, "pass": ratio <= TARGET}, indent=2)
            )  # fmt: skip
        return 0
    finally:
        if server is not None:
            server.stop()
        if schema and not args.keep:
            asyncio.run(drop_schema(args.database_url, schema))
        if args.keep:
            print(f"kept {data_dir}")
        else:
            shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
