"""Fixtures of the identity service tests: a client without any key, the SMTP sink
standing in for the internet (example.net), and the outbound queue running."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from postern.http.app import create_app
from postern.serve.runtime import Runtime
from tests.conftest import MailDoors
from tests.sink import SmtpSink

V1 = "/_matrix/identity/api/v1"
V2 = "/_matrix/identity/v2"


@pytest.fixture
async def identity(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://postern.test") as client:
        yield client


@pytest.fixture
async def internet(sink: SmtpSink, mail_doors: MailDoors) -> AsyncIterator[SmtpSink]:
    """Mail to example.net arrives at the sink through the outbound queue. At the end,
    connections still open (a delivery under way, a kept connection) are cut, so that
    the sink stops at once."""
    sink.serve_domain("example.net")
    yield sink
    for connection in sink.connections:
        if connection.transport is not None:
            connection.transport.close()


@dataclass
class Mailed:
    to: list[str]
    message: email.message.EmailMessage
    text: str
    html: str
    token: str
    link: str

    @property
    def link_params(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.link).query).items()}


def read_mail(raw: bytes, to: list[str]) -> Mailed:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    text_part = message.get_body(("plain",))
    html_part = message.get_body(("html",))
    assert text_part is not None and html_part is not None
    text, html = text_part.get_content(), html_part.get_content()
    link = re.search(r"(https?://\S+/submitToken\?\S+)", text)
    assert link, text
    token = parse_qs(urlsplit(link.group(1)).query)["token"][0]
    return Mailed(to, message, text, html, token, link.group(1))


async def mail_number(sink: SmtpSink, n: int) -> Mailed:
    """The n-th mail (from 1) that reached the sink."""
    received = await sink.wait_for(n)
    return read_mail(received[n - 1].data, received[n - 1].rcpt_tos)
