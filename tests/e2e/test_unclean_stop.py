"""After an unclean stop, no UID or MODSEQ an IMAP client may have seen is given again.

``postern serve`` killed with SIGKILL, then started again: on SQLite, whose mail
workers show a commit to other processes a moment before its WAL is synced
(``postern.serve.run_marks``), every folder's next UID and MODSEQ move on; after a clean
stop they do not. PostgreSQL shows a commit only once it is on disk: nothing moves.
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from pathlib import Path

import httpx

from postern.storage.folders import UNCLEAN_STOP_MARGIN
from tests.e2e.crash_support import admin_client, create_user, port_of, serve_env_in, serving
from tests.e2e.serve_process import TEST_DATABASE_URL

UNCLEAN = "unclean stop:"


def deliver(env: dict[str, str], subject: str) -> None:
    message = EmailMessage()
    message["From"] = "someone@remote.example"
    message["To"] = "ada@example.com"
    message["Subject"] = subject
    message.set_content("body\n")
    with smtplib.SMTP("127.0.0.1", port_of(env, "SMTP"), timeout=30) as smtp:
        smtp.send_message(message)


def counters(client: httpx.Client, user: str, inbox: str) -> tuple[int, int]:
    response = client.get(f"/users/{user}/mailboxes/{inbox}")
    assert response.status_code == 200, response.text
    body = response.json()
    return body["uidNext"], body["modifyIndex"]


def last_uid(client: httpx.Client, user: str, inbox: str) -> int:
    response = client.get(f"/users/{user}/mailboxes/{inbox}/messages", params={"order": "desc", "limit": 1})
    assert response.status_code == 200, response.text
    return response.json()["results"][0]["id"]


def test_counters_move_on_after_an_unclean_stop_only(tmp_path: Path) -> None:
    with serve_env_in(tmp_path) as env:
        with serving(env) as server, admin_client(env) as client:
            user, boxes = create_user(client, "ada", "a password for ada")
            inbox = boxes["INBOX"]
            deliver(env, "one")
            deliver(env, "two")
            before = counters(client, user, inbox)
            assert before[0] == 3
            assert server.stop() == 0
        assert not list((Path(env["POSTERN_DATA_DIR"]) / "running").iterdir())  # removed at the clean stop

        # After a clean stop: nothing moves.
        with serving(env) as server, admin_client(env) as client:
            assert UNCLEAN not in server.output
            assert counters(client, user, inbox) == before
            server.kill9()

        # After SIGKILL: on SQLite, every folder moves on by the margin and the
        # largest folder's message count (2); the next message takes the next UID.
        with serving(env) as server, admin_client(env) as client:
            after = counters(client, user, inbox)
            if TEST_DATABASE_URL:
                assert UNCLEAN not in server.output
                assert after == before
            else:
                gap = UNCLEAN_STOP_MARGIN + 2
                assert f"moved on by {gap:,}" in server.output
                assert after == (before[0] + gap, before[1] + gap)
            deliver(env, "three")
            assert last_uid(client, user, inbox) == after[0]
            assert counters(client, user, inbox)[0] == after[0] + 1
            assert server.stop() == 0

        # The move happens once: the next start after a clean stop finds nothing.
        with serving(env) as server:
            assert UNCLEAN not in server.output
            assert server.stop() == 0
