"""Logs and metrics over the real doors: one line per HTTP request, SMTP/LMTP
transaction, IMAP/POP3 login and logout and outbound attempt; no password, token or
key in any line; the JSON format; /metrics behind the admin token, its counters
moving with the transactions."""

from __future__ import annotations

import asyncio
import base64
import imaplib
import io
import json
import logging
import poplib
import smtplib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from postern.config import Settings
from postern.serve.logs import JsonFormatter, TextFormatter, configure
from postern.serve.runtime import Runtime
from postern.serve.server import bound_port, start_imap_doors, start_pop3_doors
from tests.conftest import ADMIN_TOKEN, MailDoors
from tests.sink import SmtpSink

PASSWORD = "Pw-s3cret-horse-4711"
WRONG = "Wr0ng-s3cret-9931"
MESSAGE = b"From: alice@example.com\r\nTo: bob@remote.test\r\nSubject: hello\r\n\r\nbody\r\n"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"imap_listen": "127.0.0.1:0", "pop3_listen": "127.0.0.1:0"})


@pytest.fixture
async def doors(runtime: Runtime, mail_doors: MailDoors) -> AsyncIterator[dict[str, int]]:
    servers = {**await start_imap_doors(runtime), **await start_pop3_doors(runtime)}
    try:
        yield {
            "imap": bound_port(servers["imap"]),
            "pop3": bound_port(servers["pop3"]),
            "submission": mail_doors.submission,
            "lmtp": mail_doors.lmtp,
        }
    finally:
        for server in servers.values():
            server.close()
            await server.wait_closed()


def _submit(port: int, login: str, password: str, rcpts: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo("client.test")
        try:
            smtp.login(login, password)
        except smtplib.SMTPAuthenticationError:
            return
        smtp.sendmail("alice@example.com", rcpts, MESSAGE)


def _lmtp(port: int) -> None:
    with smtplib.LMTP("127.0.0.1", port, timeout=30) as lmtp:
        lmtp.sendmail("someone@remote.test", ["alice@example.com"], b"Subject: in\r\n\r\nhi\r\n")


def _imap(port: int, password: str) -> None:
    client = imaplib.IMAP4("127.0.0.1", port, timeout=30)
    try:
        client.login("alice", password)
        client.select("INBOX")
        client.logout()
    except imaplib.IMAP4.error:
        client.logout()


def _pop3(port: int, password: str) -> None:
    client = poplib.POP3("127.0.0.1", port, timeout=30)
    try:
        client.user("alice")
        client.pass_(password)
        client.stat()
    except poplib.error_proto:
        pass
    client.quit()


async def _transactions(
    runtime: Runtime, client: httpx.AsyncClient, anonymous: httpx.AsyncClient, doors: dict[str, int], sink: SmtpSink
) -> str:
    """Runs one of each transaction, failed logins included; returns the user API key."""
    sink.serve_domain("remote.test")
    response = await client.post("/users", json={"username": "alice", "password": PASSWORD, "address": "alice@example.com"})
    assert response.status_code == 200, response.text
    # The admin token in the query string (WildDuck's ?accessToken=).
    response = await anonymous.get(f"/users?accessToken={ADMIN_TOKEN}&query=alice")
    assert response.status_code == 200, response.text
    response = await anonymous.get("/users?accessToken=not-the-token-5521")
    assert response.status_code == 403
    response = await anonymous.post("/api/auth/login", json={"email": "alice@example.com", "password": PASSWORD, "device": "test"})
    assert response.status_code == 200, response.text
    api_key = response.json()["api_key"]
    response = await anonymous.get("/api/user_info", headers={"Authentication": api_key})
    assert response.status_code == 200, response.text
    await asyncio.to_thread(_submit, doors["submission"], "alice", PASSWORD, ["bob@remote.test", "carol@nowhere.test"])
    await asyncio.to_thread(_submit, doors["submission"], "alice", WRONG, ["bob@remote.test"])
    await asyncio.to_thread(_lmtp, doors["lmtp"])
    await asyncio.to_thread(_imap, doors["imap"], PASSWORD)
    await asyncio.to_thread(_imap, doors["imap"], WRONG)
    await asyncio.to_thread(_pop3, doors["pop3"], PASSWORD)
    await asyncio.to_thread(_pop3, doors["pop3"], WRONG)
    return str(api_key)


async def _wait_for(caplog: pytest.LogCaptureFixture, *needles: str) -> None:
    for _ in range(600):
        text = "\n".join(r.getMessage() for r in caplog.records)
        if all(n in text for n in needles):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not logged: {[n for n in needles if n not in text]}")


def _secrets(api_key: str) -> list[str]:
    found = [PASSWORD, WRONG, ADMIN_TOKEN, "not-the-token-5521", api_key]
    for login, password in (("alice", PASSWORD), ("alice", WRONG)):
        found.append(base64.b64encode(f"\0{login}\0{password}".encode()).decode())  # AUTH PLAIN
        found.append(base64.b64encode(password.encode()).decode())
    return found


async def test_a_line_per_transaction_and_no_secret_in_any(
    runtime: Runtime,
    client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    doors: dict[str, int],
    sink: SmtpSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    api_key = await _transactions(runtime, client, anonymous, doors, sink)
    await _wait_for(
        caplog,
        "GET /users 200",
        "GET /users 403",
        "GET /api/user_info 200",
        "submission login alice from 127.0.0.1: ok",
        "submission login alice from 127.0.0.1: failed",
        "imap login alice from 127.0.0.1: ok",
        "imap login alice from 127.0.0.1: failed",
        "imap logout alice",
        "pop3 login alice from 127.0.0.1: ok",
        "pop3 login alice from 127.0.0.1: failed",
        "pop3 logout alice",
        "to=<alice@example.com>",  # the LMTP transaction
        ": delivered to bob@remote.test via",
        "to carol@nowhere.test",  # no MX: deferred or bounced, a warning either way
    )
    records = caplog.records
    submission = [r for r in records if r.name == "postern.smtp.transactions" and getattr(r, "door", "") == "submission"]
    assert submission and submission[0].rcpt == ["bob@remote.test", "carol@nowhere.test"] and submission[0].result == "250"
    assert submission[0].queue_id and submission[0].size == len(MESSAGE)
    lmtp = [r for r in records if r.name == "postern.smtp.transactions" and getattr(r, "door", "") == "lmtp"]
    assert lmtp and lmtp[0].queue_id and lmtp[0].mail_from == "someone@remote.test"
    carol = [r for r in records if getattr(r, "rcpt", None) == "carol@nowhere.test"]
    assert carol and carol[0].levelno == logging.WARNING and carol[0].result in ("deferred", "bounced")
    http = [r for r in records if r.name == "postern.http.access"]
    assert all("?" not in r.getMessage() and "accessToken" not in r.getMessage() for r in http)
    assert all(isinstance(r.duration_ms, float) for r in http)

    # Every record but the test's own HTTP client's (httpx logs the URLs it asks for;
    # postern's processes set httpx to warning, serve/logs.py).
    text, as_json = TextFormatter(), JsonFormatter()
    lines = [f.format(r) for r in records if r.name != "httpx" for f in (text, as_json)]
    assert len(lines) > 40
    for secret in _secrets(api_key):
        leaked = [line for line in lines if secret in line]
        assert not leaked, f"{secret!r} logged: {leaked[:3]}"


def test_json_format_one_object_per_line() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure("info", "json", stream=stream)
        logger = logging.getLogger("postern.test")
        logger.debug("not written")
        logger.info("GET %s %d", "/users", 200, extra={"method": "GET", "status": 200, "rcpt": ["a@b.test"]})
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed\nacross lines")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "info" and first["logger"] == "postern.test" and first["message"] == "GET /users 200"
    assert first["method"] == "GET" and first["status"] == 200 and first["rcpt"] == ["a@b.test"]
    assert first["time"].endswith("Z")
    assert second["level"] == "error" and second["message"] == "failed\nacross lines" and "ValueError: boom" in second["exception"]


def test_text_format_is_the_message() -> None:
    record = logging.LogRecord("postern.x", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    record.rcpt = ["a@b.test"]
    assert TextFormatter().format(record).endswith(" INFO postern.x: hello you")
    assert TextFormatter("[worker]").format(record).endswith(" INFO postern.x[worker]: hello you")


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def _scrape(client: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return _samples(response.text)


async def test_metrics_move_with_transactions(
    runtime: Runtime,
    client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    doors: dict[str, int],
    sink: SmtpSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    assert (await anonymous.get("/metrics")).status_code == 401
    assert (await anonymous.get("/metrics", headers={"X-Access-Token": "wrong"})).status_code == 403
    before = await _scrape(client)
    await _transactions(runtime, client, anonymous, doors, sink)
    await _wait_for(caplog, ": delivered to bob@remote.test via", "to carol@nowhere.test")
    after = await _scrape(client)

    def moved(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    for door in ("submission", "lmtp", "imap", "pop3"):
        assert moved("postern_connections_total", door=door) >= 1, door
        assert moved("postern_auth_failures_total", door=door) >= (1 if door != "lmtp" else 0), door
    assert moved("postern_auth_failures_total", door="http") >= 1
    assert moved("postern_messages_accepted_total", door="submission") == 1
    assert moved("postern_messages_accepted_total", door="lmtp") == 1
    assert moved("postern_messages_delivered_total") >= 1
    assert moved("postern_messages_deferred_total") + moved("postern_messages_bounced_total") >= 1
    assert moved("postern_smtp_transaction_duration_seconds_count", door="lmtp") == 1
    assert moved("postern_imap_command_duration_seconds_count", command="LOGIN") == 2
    assert moved("postern_imap_command_duration_seconds_count", command="SELECT") == 1
    assert moved("postern_http_request_duration_seconds_count", method="GET", route="/users") == 2
    assert moved("postern_http_request_duration_seconds_count", method="GET", route="/api/user_info") == 1
    assert after[("postern_connections_open", (("door", "imap"),))] == 0
    assert ("postern_queue_depth", ()) in after and ("postern_worker_restarts_total", ()) in after
    assert ("postern_event_bus_lag_seconds_count", ()) in after  # exported even before Redis carries anything


async def test_metrics_turned_off(settings: Settings, resolver: Any) -> None:
    from tests.apps import app_for

    runtime = Runtime.build(settings.model_copy(update={"metrics": False}), resolver=resolver)
    await runtime.start()
    try:
        transport = httpx.ASGITransport(app=app_for(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://postern.test", headers={"X-Access-Token": ADMIN_TOKEN}) as api:
            assert (await api.get("/metrics")).status_code == 404
    finally:
        await runtime.close()
