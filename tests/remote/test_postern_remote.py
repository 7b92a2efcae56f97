"""postern's own IMAP and POP3 doors as the remote account: another user's hosted
mailbox fetched into ann's INBOX over STARTTLS / STLS (certificate from the test CA)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from postern.config import Settings
from postern.serve.runtime import Runtime
from postern.serve.server import bound_port, start_imap_doors, start_pop3_doors
from tests.aliases import Person
from tests.helpers import create_user, folder_id, upload
from tests.remote.dovecot import Dovecot
from tests.remote.helpers import PATH, message, state, subjects


@pytest.fixture
def settings(settings: Settings, dovecot: Dovecot) -> Settings:
    tls = dovecot.root / "tls"
    return settings.model_copy(
        update={"imap_listen": "127.0.0.1:0", "pop3_listen": "127.0.0.1:0", "tls_cert": tls / "cert.pem", "tls_key": tls / "key.pem"}
    )


@pytest.mark.parametrize("protocol", ["IMAP", "POP3"])
async def test_postern_as_the_remote(api: httpx.AsyncClient, client: httpx.AsyncClient, ann: Person, runtime: Runtime, protocol: str) -> None:
    doors = await (start_imap_doors(runtime) if protocol == "IMAP" else start_pop3_doors(runtime))
    try:
        port = bound_port(doors["imap" if protocol == "IMAP" else "pop3"])
        carol = await create_user(client, "carol")
        inbox_id = await folder_id(client, carol, "INBOX")
        for n in (1, 2):
            await upload(client, carol, inbox_id, message(n), unseen="true")
        body = {
            "identity_id": ann.email,
            "params": {
                "login": "carol",
                "password": "correct horse battery",
                "mail_protocol": protocol,
                "incomming_mail_server": "localhost",
                "mail_port": port,
                "tls": "starttls",
                "fetch_method": "all",
            },
        }
        created = await api.post(PATH, json=body, headers=ann.headers)
        assert created.json()["connected"] is True, created.json()["last_error"]
        await runtime.remote_scheduler.fetch_once(created.json()["remote_identity_id"])
        assert await subjects(runtime, ann.user_id) == ["message 1", "message 2"]
        shown = await state(api, ann, created.json())
        assert shown["last_error"] is None and shown["fetched_count"] == 2
        if protocol == "IMAP":
            # Left unread at the remote: EXAMINE and BODY.PEEK. (postern's POP3, like
            # WildDuck's, marks what RETR reads as seen itself.)
            listed = await client.get(f"/users/{carol}/mailboxes/{inbox_id}/messages")
            assert all(not m["seen"] for m in listed.json()["results"])
    finally:
        for server in doors.values():
            server.close()
        await asyncio.gather(*(s.wait_closed() for s in doors.values()), return_exceptions=True)
