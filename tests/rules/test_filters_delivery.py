"""Filters applied at delivery, over real LMTP and SMTP sockets: each action, their
combinations and order, a deleted target folder, forward targets (an address and an
smtp:// relay received by a local SMTP sink, a web hook received by a local HTTP
server), loop protection, the forward limit, and no filtering of API uploads."""

from __future__ import annotations

import asyncio
import smtplib
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import httpx
from sqlalchemy import func, select

from postern.serve.runtime import Runtime
from postern.storage.schema import outbound
from tests.helpers import create_user, folder_id, make_message, upload
from tests.sink import SmtpSink

HOST = "127.0.0.1"


def _send(port: int, lmtp: bool, mail_from: str, rcpts: list[str], data: bytes) -> Any:
    client = (
        smtplib.LMTP(HOST, port, timeout=15)
        if lmtp
        else smtplib.SMTP(HOST, port, timeout=15)
    )
    try:
        client.ehlo_or_helo_if_needed() if not lmtp else client.ehlo(
            "client.example.org"
        )
        return client.sendmail(mail_from, rcpts, data)
    finally:
        client.quit()


async def deliver(
    port: int,
    data: bytes,
    rcpts: list[str] | None = None,
    mail_from: str = "sender@example.org",
    lmtp: bool = True,
) -> Any:
    return await asyncio.to_thread(
        _send, port, lmtp, mail_from, rcpts or ["alice@example.com"], data
    )


async def messages(
    client: httpx.AsyncClient, user: str, path: str
) -> list[dict[str, Any]]:
    folder = await folder_id(client, user, path)
    response = await client.get(f"/users/{user}/mailboxes/{folder}/messages")
    assert response.status_code == 200, response.text
    return response.json()["results"]


async def counts(client: httpx.AsyncClient, user: str) -> dict[str, int]:
    response = await client.get(f"/users/{user}/mailboxes", params={"counters": "true"})
    return {m["path"]: m["total"] for m in response.json()["results"]}


async def add_filter(
    client: httpx.AsyncClient,
    user: str,
    query: dict[str, Any],
    action: dict[str, Any],
    **more: Any,
) -> str:
    response = await client.post(
        f"/users/{user}/filters", json={"query": query, "action": action, **more}
    )
    assert response.status_code == 200, response.text
    return response.json()["id"]


async def make_folder(client: httpx.AsyncClient, user: str, path: str) -> str:
    response = await client.post(f"/users/{user}/mailboxes", json={"path": path})
    assert response.status_code == 200, response.text
    return response.json()["id"]


async def queued_rows(runtime: Runtime) -> int:
    async with runtime.db.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(outbound)) or 0)


async def test_each_action_over_lmtp(
    client: httpx.AsyncClient, mail_doors: Any
) -> None:
    alice = await create_user(client, "alice", address="alice@example.com")
    work = await make_folder(client, alice, "Work")
    await add_filter(
        client, alice, {"subject": "report"}, {"mailbox": work, "seen": True}
    )
    await add_filter(client, alice, {"from": "BOSS@"}, {"flag": True})
    await add_filter(client, alice, {"listId": "<news.example.net>"}, {"spam": True})
    await add_filter(client, alice, {"to": "bin@"}, {"delete": True})

    await deliver(mail_doors.lmtp, make_message(subject="Weekly Report"))
    await deliver(
        mail_doors.lmtp, make_message(subject="hi", From="The Boss <boss@example.org>")
    )
    await deliver(
        mail_doors.lmtp,
        make_message(subject="news", List_Id="Newsletter <news.example.net>"),
    )
    refused = await deliver(
        mail_doors.lmtp, make_message(subject="gone", Cc="Bin <bin@example.net>")
    )
    assert refused == {}  # every recipient took the message (250), the dropped one too
    await deliver(mail_doors.lmtp, make_message(subject="plain"))

    [report] = await messages(client, alice, "Work")
    assert report["subject"] == "Weekly Report" and report["seen"] is True
    inbox = {m["subject"]: m for m in await messages(client, alice, "INBOX")}
    assert set(inbox) == {"hi", "plain"}
    assert inbox["hi"]["flagged"] is True and inbox["hi"]["seen"] is False
    assert inbox["plain"]["flagged"] is False
    [junk] = await messages(client, alice, "Junk")
    assert junk["subject"] == "news"
    assert (
        sum((await counts(client, alice)).values()) == 4
    )  # the dropped one is nowhere


async def test_text_attachment_and_size_queries_over_smtp(
    client: httpx.AsyncClient, mail_doors: Any
) -> None:
    alice = await create_user(client, "alice", address="alice@example.com")
    texts = await make_folder(client, alice, "Texts")
    big = await make_folder(client, alice, "Big")
    files = await make_folder(client, alice, "Files")
    await add_filter(client, alice, {"text": "pay   the INVOICE"}, {"mailbox": texts})
    await add_filter(client, alice, {"ha": True}, {"mailbox": files})
    await add_filter(client, alice, {"size": 5000}, {"mailbox": big})
    await add_filter(client, alice, {"size": -5000, "subject": "small"}, {"flag": True})

    await deliver(
        mail_doors.smtp,
        make_message(subject="bill", body="Please pay\r\n the invoice today.\r\n"),
        lmtp=False,
    )
    await deliver(
        mail_doors.smtp,
        make_message(subject="large", body=("x" * 70 + "\r\n") * 100),
        lmtp=False,
    )
    await deliver(mail_doors.smtp, make_message(subject="small one"), lmtp=False)
    attached = (
        b"From: sender@example.org\r\nTo: alice@example.com\r\nSubject: with file\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n'
        b'--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="a.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--b--\r\n"
    )
    await deliver(mail_doors.smtp, attached, lmtp=False)

    assert [m["subject"] for m in await messages(client, alice, "Texts")] == ["bill"]
    assert [m["subject"] for m in await messages(client, alice, "Big")] == ["large"]
    assert [m["subject"] for m in await messages(client, alice, "Files")] == [
        "with file"
    ]
    [small] = await messages(client, alice, "INBOX")
    assert small["subject"] == "small one" and small["flagged"] is True


async def test_order_combination_disabled_and_deleted_folder(
    client: httpx.AsyncClient, mail_doors: Any
) -> None:
    alice = await create_user(client, "alice", address="alice@example.com")
    bob = await create_user(client, "bob", address="bob@example.com")
    first = await make_folder(client, alice, "First")
    second = await make_folder(client, alice, "Second")
    await add_filter(
        client,
        alice,
        {"subject": "x"},
        {"mailbox": second, "seen": True},
        disabled=True,
    )
    await add_filter(client, alice, {"subject": "x"}, {"mailbox": first})
    await add_filter(
        client, alice, {"subject": "x"}, {"mailbox": second, "seen": True, "flag": True}
    )
    await add_filter(client, alice, {"subject": "x"}, {"seen": False})
    # Bob, in the same transaction, has no filters: his copy stays in his INBOX.
    await deliver(
        mail_doors.lmtp,
        make_message(subject="x marks"),
        rcpts=["alice@example.com", "bob@example.com"],
    )
    [filed] = await messages(client, alice, "First")
    assert filed["seen"] is True and filed["flagged"] is True
    assert await messages(client, alice, "Second") == []
    assert [m["subject"] for m in await messages(client, bob, "INBOX")] == ["x marks"]

    # The folder a filter names is deleted: its mail stays in INBOX, filed once.
    assert (await client.delete(f"/users/{alice}/mailboxes/{first}")).status_code == 200
    await deliver(mail_doors.lmtp, make_message(subject="x again"))
    inbox = await messages(client, alice, "INBOX")
    assert [m["subject"] for m in inbox] == ["x again"]
    assert inbox[0]["seen"] is True and inbox[0]["flagged"] is True
    assert sum((await counts(client, alice)).values()) == 1


async def test_filters_do_not_apply_to_uploads(client: httpx.AsyncClient) -> None:
    alice = await create_user(client, "alice", address="alice@example.com")
    await add_filter(client, alice, {"subject": "x"}, {"delete": True})
    inbox = await folder_id(client, alice)
    await upload(client, alice, inbox, make_message(subject="x uploaded"))
    assert [m["subject"] for m in await messages(client, alice, "INBOX")] == [
        "x uploaded"
    ]


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, dict[str, str], bytes]]] = []
    arrived: ClassVar[threading.Event] = threading.Event()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).received.append((self.path, dict(self.headers), body))
        self.send_response(200)
        self.end_headers()
        type(self).arrived.set()

    def log_message(self, *args: Any) -> None:
        pass


async def test_forward_targets(
    client: httpx.AsyncClient, mail_doors: Any, sink: SmtpSink, runtime: Runtime
) -> None:
    sink.serve_domain("example.org")
    alice = await create_user(client, "alice", address="alice@example.com")
    hook = HTTPServer((HOST, 0), _Hook)
    _Hook.received = []
    thread = threading.Thread(target=hook.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://{HOST}:{hook.server_address[1]}/incoming?k=1"
        await add_filter(
            client, alice, {"subject": "fw"}, {"targets": ["carol@example.org", url]}
        )
        await add_filter(
            client,
            alice,
            {"subject": "fw"},
            {
                "targets": [f"smtp://{HOST}:{sink.port}", "carol@example.org"],
                "seen": True,
            },
        )
        await add_filter(
            client,
            alice,
            {"subject": "spam"},
            {"spam": True, "targets": ["carol@example.org"]},
        )
        await add_filter(
            client,
            alice,
            {"subject": "drop"},
            {"delete": True, "targets": ["dave@example.org"]},
        )

        data = make_message(subject="fw: the plan")
        await deliver(mail_doors.lmtp, data)
        received = await sink.wait_for(2)
        by_rcpt = {tuple(r.rcpt_tos): r for r in received}
        assert set(by_rcpt) == {
            ("carol@example.org",),
            ("alice@example.com",),
        }  # the relay gets the user's address
        for item in received:
            assert item.mail_from == "alice@example.com"
            assert item.data.endswith(data)
            assert b"X-Postern-Loop: alice@example.com" in item.data
            added = item.data[: -len(data)]
            assert b"for <alice@example.com>" in added and b"Return-Path" not in added
        await asyncio.to_thread(_Hook.arrived.wait, 15)
        [(path, headers, body)] = _Hook.received
        assert path == "/incoming?k=1" and body.endswith(data)
        assert headers["Content-Type"] == "message/rfc822"
        [kept] = await messages(client, alice, "INBOX")
        assert kept["seen"] is True  # the copy is stored too

        # Spam is not forwarded; a dropped message's forwards still go.
        before = await queued_rows(runtime)
        await deliver(mail_doors.lmtp, make_message(subject="spam offer"))
        assert await queued_rows(runtime) == before
        await deliver(mail_doors.lmtp, make_message(subject="drop this"))
        received = await sink.wait_for(3)
        assert received[-1].rcpt_tos == ["dave@example.org"]
        assert sum((await counts(client, alice)).values()) == 2

        # A copy that comes back carrying our loop mark is stored, not forwarded again.
        before = await queued_rows(runtime)
        await deliver(
            mail_doors.lmtp,
            b"X-Postern-Loop: alice@example.com\r\n" + make_message(subject="fw loop"),
        )
        assert await queued_rows(runtime) == before
        assert sum((await counts(client, alice)).values()) == 3
    finally:
        hook.shutdown()
        hook.server_close()


async def test_forward_limit(
    client: httpx.AsyncClient, mail_doors: Any, runtime: Runtime
) -> None:
    alice = await create_user(client, "alice", address="alice@example.com", forwards=2)
    await add_filter(
        client, alice, {"subject": "fw"}, {"targets": ["carol@example.org"]}
    )
    for n in range(4):
        await deliver(mail_doors.lmtp, make_message(subject=f"fw {n}"))
    assert await queued_rows(runtime) == 2
    assert len(await messages(client, alice, "INBOX")) == 4


async def test_rules_follow_changes(client: httpx.AsyncClient, mail_doors: Any) -> None:
    """The cached rules of a user change with the API: no stale filter applies."""
    alice = await create_user(client, "alice", address="alice@example.com")
    await deliver(mail_doors.lmtp, make_message(subject="x one"))  # cached: no filters
    made = await add_filter(client, alice, {"subject": "x"}, {"spam": True})
    await deliver(mail_doors.lmtp, make_message(subject="x two"))
    assert (
        await client.put(f"/users/{alice}/filters/{made}", json={"disabled": True})
    ).status_code == 200
    await deliver(mail_doors.lmtp, make_message(subject="x three"))
    assert [m["subject"] for m in await messages(client, alice, "Junk")] == ["x two"]
    assert sorted(m["subject"] for m in await messages(client, alice, "INBOX")) == [
        "x one",
        "x three",
    ]
