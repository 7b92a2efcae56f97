"""``postern serve`` with mail workers: JSON log lines from the serving process and
the workers, and /metrics on POSTERN_METRICS_LISTEN (no token) summing what every
worker counted (prometheus-client's multiprocess mode)."""

from __future__ import annotations

import json
import os
import signal
import smtplib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.crash_support import ADMIN_TOKEN, admin_client, create_user, port_of, serve_env_in, serving, wait_until
from tests.e2e.serve_process import free_port
from tests.e2e.test_mail_workers import children

PASSWORD = "e2e-s3cret-password-8812"
MESSAGES = 6


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    with serve_env_in(
        tmp_path,
        POSTERN_MAIL_WORKERS="2",
        POSTERN_DOORS="http,smtp,lmtp",
        POSTERN_LOG_FORMAT="json",
        POSTERN_METRICS_LISTEN=f"127.0.0.1:{free_port()}",
    ) as values:
        yield values


def _counter(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def test_json_logs_and_metrics_across_workers(env: dict[str, str]) -> None:
    with serving(env) as server, admin_client(env) as client:
        assert "metrics:" in server.output
        create_user(client, "ann", PASSWORD)
        for _ in range(MESSAGES):  # a connection each: the workers share them
            with smtplib.LMTP("127.0.0.1", port_of(env, "LMTP"), timeout=30) as lmtp:
                lmtp.sendmail("someone@remote.test", ["ann@example.com"], b"Subject: hi\r\n\r\nhello\r\n")
        metrics_url = f"http://{env['POSTERN_METRICS_LISTEN']}/metrics"
        response = httpx.get(metrics_url, timeout=30)  # no token on its own listener
        assert response.status_code == 200, response.text
        text = response.text
        assert _counter(text, "postern_messages_accepted_total", door="lmtp") == MESSAGES, text
        assert _counter(text, "postern_connections_total", door="lmtp") == MESSAGES
        assert _counter(text, "postern_smtp_transaction_duration_seconds_count", door="lmtp") == MESSAGES
        assert _counter(text, "postern_queue_depth") == 0
        assert _counter(text, "postern_http_request_duration_seconds_count", method="POST", route="/users") == 1
        assert httpx.get(metrics_url.replace("/metrics", "/users"), timeout=30).status_code == 404
        # On the admin listener: the token is required.
        assert httpx.get(f"http://{env['POSTERN_HTTP_LISTEN']}/metrics", timeout=30).status_code == 401
        assert client.get("/metrics").status_code == 200
        client.get(f"/users?accessToken={ADMIN_TOKEN}")
        # A worker that dies: counted as restarted; what it counted stays counted.
        victim = min(children(server.proc.pid))
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: "starting another" in "".join(server.stderr_lines), 30, "the worker is replaced")
        text = httpx.get(metrics_url, timeout=30).text
        assert _counter(text, "postern_worker_restarts_total") == 1, text
        assert _counter(text, "postern_messages_accepted_total", door="lmtp") == MESSAGES
        assert _counter(text, "postern_connections_open", door="lmtp") == 0
        wait_until(lambda: sum('"lmtp"' in line for line in server.stderr_lines) >= MESSAGES, 30, lambda: "".join(server.stderr_lines))
        assert server.stop() == 0, server.errors
    lines = [json.loads(line) for line in server.stderr_lines if line.strip()]
    assert any(line["level"] == "error" and "exited" in line["message"] for line in lines)  # every line is one JSON object
    transactions = [line for line in lines if line["logger"] == "postern.smtp.transactions"]
    assert len(transactions) == MESSAGES
    assert {t.get("process") for t in transactions} == {"worker"}
    assert all(t["door"] == "lmtp" and t["result"] == "250" and t["rcpt"] == ["ann@example.com"] and t["queue_id"] for t in transactions)
    requests = [line for line in lines if line["logger"] == "postern.http.access"]
    assert {(r["method"], r["path"], r["status"]) for r in requests} >= {("POST", "/users", 200), ("GET", "/users", 200)}
    everything = "\n".join(server.stderr_lines)
    assert PASSWORD not in everything and ADMIN_TOKEN not in everything
