"""Sending as a remote identity: mail submitted (the submission door, over a real
socket) From the identity's address goes out through the identity's own SMTP server
(STARTTLS with a verified certificate, AUTH with the identity's login), queued like
any mail, with its copy in Sent; another user cannot send as it."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from postern.serve.runtime import Runtime
from tests.aliases import Person
from tests.conftest import MailDoors
from tests.remote.dovecot import Dovecot
from tests.remote.helpers import PATH, subjects

PASSWORD = "correct horse battery"


@dataclass
class RelayServer:
    """The identity's own SMTP server: STARTTLS required before AUTH."""

    login: str
    password: str
    received: list[tuple[str, str, list[str], bytes]] = field(default_factory=list)
    port: int = 0

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:  # noqa: N802
        self.received.append((str(session.auth_data.login.decode()), envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content or b""))
        return "250 2.0.0 Ok: queued at the ISP"

    def authenticate(self, server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == self.login and auth_data.password.decode() == self.password
        return AuthResult(success=ok, handled=False, auth_data=auth_data)


@pytest.fixture
async def relay(dovecot: Dovecot) -> AsyncIterator[RelayServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(dovecot.root / "tls" / "cert.pem", dovecot.root / "tls" / "key.pem")
    server = RelayServer("me-at-isp", "isp-password")
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(
        lambda: SMTP(server, tls_context=context, require_starttls=True, authenticator=server.authenticate, auth_require_tls=True, hostname="smtp.isp.test"),
        "127.0.0.1",
        0,
    )
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()
        await listener.wait_closed()


def _submit(port: int, login: str, mail_from: str, rcpts: list[str], raw: bytes) -> Any:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo()
        smtp.login(login, PASSWORD)
        try:
            return smtp.sendmail(mail_from, rcpts, raw)
        except smtplib.SMTPException as error:
            return error


async def _identity(api: httpx.AsyncClient, who: Person, dovecot: Dovecot, remote_user: tuple[str, str], relay: RelayServer, **smtp: Any) -> dict[str, Any]:
    body = {
        "identity_id": "ann@example.org",
        "connection_required": False,
        "params": {
            "login": remote_user[0],
            "password": remote_user[1],
            "mail_protocol": "IMAP",
            "incomming_mail_server": "localhost",
            "mail_port": dovecot.imaps,
            "outgoing_mail_server": "localhost",
            "smtp_port": relay.port,
            "smtp_tls": "starttls",
            "smtp_login": relay.login,
            "smtp_password": smtp.get("smtp_password", relay.password),
        },
    }
    answer = await api.post(PATH, json=body, headers=who.headers)
    assert answer.status_code == 201, answer.text
    assert "isp-password" not in answer.text and answer.json()["params"]["smtp_password"] is None
    return answer.json()


async def _wait(check: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_mail_from_the_identity_goes_through_its_own_server(
    api: httpx.AsyncClient,
    ann: Person,
    bob: Person,
    dovecot: Dovecot,
    remote_user: tuple[str, str],
    relay: RelayServer,
    mail_doors: MailDoors,
    runtime: Runtime,
) -> None:
    await _identity(api, ann, dovecot, remote_user, relay)
    raw = b"From: Ann <ann@example.org>\r\nTo: friend@elsewhere.test\r\nSubject: via my ISP\r\nMessage-ID: <s1@example.org>\r\n\r\nhello\r\n"
    refused = await asyncio.to_thread(_submit, mail_doors.submission, "ann@example.org", "ann@example.org", ["friend@elsewhere.test"], raw)
    assert refused == {}, refused

    async def delivered() -> bool:
        return bool(relay.received)

    await _wait(delivered)
    login, mail_from, rcpts, data = relay.received[0]
    assert (login, mail_from, rcpts) == ("me-at-isp", "ann@example.org", ["friend@elsewhere.test"])
    assert data.endswith(raw)
    assert "via my ISP" in await subjects(runtime, ann.user_id, "Sent Mail")

    # Bob may not send as ann's identity.
    refused = await asyncio.to_thread(_submit, mail_doors.submission, "bob@example.org", "ann@example.org", ["friend@elsewhere.test"], raw)
    assert isinstance(refused, smtplib.SMTPException)


async def test_a_refused_login_is_retried_not_lost(
    api: httpx.AsyncClient, ann: Person, dovecot: Dovecot, remote_user: tuple[str, str], relay: RelayServer, mail_doors: MailDoors, runtime: Runtime
) -> None:
    await _identity(api, ann, dovecot, remote_user, relay, smtp_password="wrong")
    raw = b"From: ann@example.org\r\nTo: friend@elsewhere.test\r\nSubject: retry\r\n\r\nhello\r\n"
    assert await asyncio.to_thread(_submit, mail_doors.submission, "ann@example.org", "ann@example.org", ["friend@elsewhere.test"], raw) == {}
    from sqlalchemy import select

    from postern.storage.schema import outbound

    async def deferred() -> bool:
        async with runtime.db.read() as conn:
            rows = list(await conn.execute(select(outbound.c.state, outbound.c.last_response, outbound.c.target)))
        return bool(rows) and rows[0].state == "deferred"

    await _wait(deferred)
    async with runtime.db.read() as conn:
        row = (await conn.execute(select(outbound.c.last_response, outbound.c.target))).first()
    assert row.target.startswith("remote-identity:") and "refused the identity's login" in row.last_response
    assert "wrong" not in row.last_response and relay.received == []
