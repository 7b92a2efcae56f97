"""Email aliases through a real ``postern serve`` with two mail worker processes, as
an operator runs it: a user registers through the user API (the activation code
arrives by mail at the sink, which stands in for the internet), makes an alias,
receives mail through it (forwarded by a worker, then sent by the serving process's
queue), replies through the reverse alias, and sees both in the alias's activities.
Every wait has an upper bound; nothing asserts how long anything took."""

from __future__ import annotations

import email
import re
import smtplib
from collections.abc import Iterator
from email import policy
from email.utils import getaddresses
from pathlib import Path

import httpx
import pytest

from tests.e2e.crash_support import GatedSink, LoopThread, new_schema, port_of, serve_env, wait_until
from tests.e2e.serve_process import ServeProcess, drop_schema

MAILBOX = "me@gmail.test"
WAIT = 60.0


@pytest.fixture
def sink() -> Iterator[GatedSink]:
    loop = LoopThread()
    found = GatedSink(loop)
    found.start()
    try:
        yield found
    finally:
        found.stop()
        loop.close()


@pytest.fixture
def server(tmp_path: Path, sink: GatedSink) -> Iterator[tuple[ServeProcess, dict[str, str]]]:
    schema = new_schema()
    env = serve_env(tmp_path / "data", sink.port, schema)
    env.update(POSTERN_ALIAS_DOMAINS="alias.test", POSTERN_PUBLIC_URL="https://mail.example.com")
    process = ServeProcess(env)
    try:
        assert process.wait_ready(), process.errors
        yield process, env
    finally:
        if process.proc.poll() is None:
            process.kill9()
        if schema:
            drop_schema(schema)


def arrived(sink: GatedSink, rcpt: str, count: int = 1) -> list[email.message.Message]:
    wait_until(lambda: sink.recipients()[rcpt] >= count, WAIT, lambda: f"{count} messages for {rcpt}: {sink.recipients()}")
    return [email.message_from_bytes(a.data, policy=policy.default) for a in sink.accepted if rcpt in a.rcpt_tos]


def smtp_send(env: dict[str, str], mail_from: str, rcpt: str, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port_of(env, "SMTP"), timeout=30) as conn:
        assert conn.sendmail(mail_from, [rcpt], raw) == {}


def test_register_alias_forward_and_reply(server: tuple[ServeProcess, dict[str, str]], sink: GatedSink) -> None:
    process, env = server
    assert "mail workers:   2 processes" in process.output
    with httpx.Client(base_url=f"http://{env['POSTERN_HTTP_LISTEN']}", timeout=30) as api:
        # Register; the activation code travels through the outbound queue.
        assert api.post("/api/auth/register", json={"email": MAILBOX, "password": "correct horse battery"}).status_code == 200
        [activation] = arrived(sink, MAILBOX)
        code = re.search(r"\b(\d{6})\b", activation.get_body(("plain",)).get_content()).group(1)  # type: ignore[union-attr]
        assert api.post("/api/auth/activate", json={"email": MAILBOX, "code": code}).status_code == 200
        login = api.post("/api/auth/login", json={"email": MAILBOX, "password": "correct horse battery", "device": "e2e"})
        key = {"Authentication": login.json()["api_key"]}
        created = api.post("/api/alias/random/new", params={"hostname": "shop.example"}, headers=key, json={"note": "the shop"})
        assert created.status_code == 201, created.text
        alias, alias_id = created.json()["alias"], created.json()["id"]

        # A shop writes to the alias: a worker forwards it, the queue sends it on.
        smtp_send(env, "orders@shop.example", alias, b"From: Shop <orders@shop.example>\r\nTo: " + alias.encode() + b"\r\nSubject: your order\r\n\r\nThanks!\r\n")
        forwarded = arrived(sink, MAILBOX, 2)[-1]
        assert forwarded["Subject"] == "your order"
        [(_, reverse_alias)] = getaddresses([str(forwarded["From"])])
        assert reverse_alias.startswith("ra+") and reverse_alias.endswith("@alias.test")
        assert "orders at shop.example" in str(forwarded["From"])

        # The user replies from the mailbox to the reverse alias; the shop gets it from the alias.
        smtp_send(env, MAILBOX, reverse_alias, f"From: {MAILBOX}\r\nTo: {reverse_alias}\r\nSubject: Re: your order\r\n\r\nWhere is it? {MAILBOX}\r\n".encode())
        [reply] = arrived(sink, "orders@shop.example")
        assert getaddresses([str(reply["From"])])[0][1] == alias
        raw = next(a.data for a in sink.accepted if "orders@shop.example" in a.rcpt_tos)
        assert MAILBOX.encode() not in raw.lower()

        activities = api.get(f"/api/aliases/{alias_id}/activities", params={"page_id": 0}, headers=key).json()["activities"]
        assert sorted(a["action"] for a in activities) == ["forward", "reply"]
        listed = api.get("/api/v2/aliases", params={"page_id": 0}, headers=key).json()["aliases"]
        assert [(a["email"], a["nb_forward"], a["nb_reply"]) for a in listed] == [(alias, 1, 1)]
