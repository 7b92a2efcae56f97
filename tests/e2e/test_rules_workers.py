"""Mail rules in ``postern serve`` with two mail workers: a filter set through the
HTTP API (in the serving process) applies in the workers at once, and an autoreply
goes once per sender per interval whichever worker delivers."""

from __future__ import annotations

import asyncio
import smtplib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from postern.config import Settings
from postern.storage.database import Database
from postern.storage.schema import outbound
from tests.e2e.crash_support import (
    LoopThread,
    admin_client,
    create_user,
    port_of,
    serve_env_in,
    serving,
    subjects,
)
from tests.sink import SmtpSink

CONNECTIONS = 8


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.loop.call_soon_threadsafe(thread.loop.stop)


def queue_rows(env: dict[str, str]) -> list[tuple[str, str]]:
    settings = Settings(
        data_dir=Path(env["POSTERN_DATA_DIR"]),
        database_url=env.get("POSTERN_DATABASE_URL"),
        database_schema=env.get("POSTERN_DATABASE_SCHEMA"),
    )

    async def read() -> list[tuple[str, str]]:
        db = Database(settings.resolved_database_url, schema=settings.database_schema)
        try:
            async with db.read() as conn:
                assert (
                    await conn.scalar(select(func.count()).select_from(outbound))
                    is not None
                )
                return [
                    (r.mail_from, r.rcpt)
                    for r in await conn.execute(
                        select(outbound.c.mail_from, outbound.c.rcpt)
                    )
                ]
        finally:
            await db.close()

    return asyncio.run(read())


def queue_state(env: dict[str, str]) -> list[tuple[str, str | None]]:
    settings = Settings(
        data_dir=Path(env["POSTERN_DATA_DIR"]),
        database_url=env.get("POSTERN_DATABASE_URL"),
        database_schema=env.get("POSTERN_DATABASE_SCHEMA"),
    )

    async def read() -> list[tuple[str, str | None]]:
        db = Database(settings.resolved_database_url, schema=settings.database_schema)
        try:
            async with db.read() as conn:
                return [
                    (r.state, r.last_response)
                    for r in await conn.execute(
                        select(outbound.c.state, outbound.c.last_response)
                    )
                ]
        finally:
            await db.close()

    return asyncio.run(read())


def test_rules_across_two_mail_workers(tmp_path: Path, loop: LoopThread) -> None:
    sink = SmtpSink()
    loop.run(sink.start())
    try:
        with serve_env_in(
            tmp_path,
            POSTERN_MAIL_WORKERS="2",
            POSTERN_DOORS="http,smtp,lmtp,queue",
            POSTERN_OUTBOUND_RELAY=f"127.0.0.1:{sink.port}",
        ) as env:
            with serving(env) as server:
                with admin_client(env) as client:
                    user, folders = create_user(client, "ann", "rules test password")
                    response = client.put(
                        f"/users/{user}/autoreply",
                        json={
                            "status": True,
                            "subject": "Away",
                            "text": "Away this week.",
                        },
                    )
                    assert response.status_code == 200, response.text
                    work = client.post(
                        f"/users/{user}/mailboxes", json={"path": "Work"}
                    ).json()["id"]
                    response = client.post(
                        f"/users/{user}/filters",
                        json={
                            "query": {"subject": "report"},
                            "action": {"mailbox": work, "seen": True},
                        },
                    )
                    assert response.status_code == 200, response.text
                    filter_id = response.json()["id"]

                    errors: list[str] = []

                    def send(number: int) -> None:
                        try:
                            conn = smtplib.LMTP(
                                "127.0.0.1", port_of(env, "LMTP"), timeout=30
                            )
                            conn.ehlo("rules.test")
                            subject = "report" if number % 2 else "hello"
                            data = f"From: <sender@remote.example>\r\nTo: <ann@example.com>\r\nSubject: {subject} {number}\r\nMessage-ID: <m{number}@remote.example>\r\n\r\nbody\r\n"
                            refused = conn.sendmail(
                                "sender@remote.example",
                                ["ann@example.com"],
                                data.encode(),
                            )
                            assert not refused, refused
                            conn.quit()
                        except (OSError, smtplib.SMTPException, AssertionError) as error:  # reported below
                            errors.append(f"{number}: {error!r}")

                    threads = [
                        threading.Thread(target=send, args=(n,))
                        for n in range(CONNECTIONS)
                    ]
                    for thread in threads:
                        thread.start()
                    for thread in threads:
                        thread.join(timeout=120)
                    assert not errors, (errors, server.errors)
                    inbox = subjects(client, user, folders["INBOX"])
                    filed = subjects(client, user, work)
                    assert sorted(filed) == sorted(
                        f"report {n}" for n in range(CONNECTIONS) if n % 2
                    )
                    assert sorted(inbox) == sorted(
                        f"hello {n}" for n in range(CONNECTIONS) if not n % 2
                    )
                    # Every autoreply row is committed with its message: exactly one.
                    assert queue_rows(env) == [("", "sender@remote.example")]
                    try:
                        received = loop.run(sink.wait_for(1))
                    except TimeoutError:
                        raise AssertionError(
                            (queue_state(env), server.errors)
                        ) from None
                    assert b"Auto-Submitted: auto-replied" in received[0].data

                    # The filter disabled through the API (the serving process): the
                    # workers hear of it and file no more (a bounded wait for the event).
                    response = client.put(f"/users/{user}/filters/{filter_id}", json={"disabled": True})
                    assert response.status_code == 200, response.text
                    for attempt in range(200):
                        conn = smtplib.LMTP("127.0.0.1", port_of(env, "LMTP"), timeout=30)
                        conn.ehlo("rules.test")
                        data = f"From: <late@remote.example>\r\nTo: <ann@example.com>\r\nSubject: report late {attempt}\r\n\r\nbody\r\n"
                        assert not conn.sendmail("late@remote.example", ["ann@example.com"], data.encode())
                        conn.quit()
                        if f"report late {attempt}" in subjects(client, user, folders["INBOX"]):
                            break
                        time.sleep(0.05)
                    else:
                        raise AssertionError(("the disabled filter still applies", server.errors))
                assert server.stop() == 0, server.errors
    finally:
        loop.run(sink.stop())
