"""Fixtures of the user API tests: a client without the admin token, and an outbox
that catches the mail postern sends itself (one test also sends it for real, through
the queue to the SMTP sink)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from postern.serve.runtime import Runtime
from tests.aliases import Person, person
from tests.apps import app_for
from tests.http.api.helpers import Outbox, Sent


@pytest.fixture
async def api(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the user API (no admin token)."""
    transport = httpx.ASGITransport(app=app_for(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://postern.test") as client:
        yield client


@pytest.fixture
def outbox(runtime: Runtime) -> Outbox:
    box = Outbox(runtime)

    async def send(*, user_id: str, to: str, subject: str, text: str) -> None:
        box.sent.append(Sent(user_id, to, subject, text))

    runtime.system_mail.send = send  # type: ignore[method-assign]
    return box




@pytest.fixture
async def ann(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> Person:
    """A signed-up user of the user API (activated, an API key, a verified mailbox)."""
    return await person(api, runtime, outbox, "ann@example.org")


@pytest.fixture
async def bob(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> Person:
    """Another one: the user whose ids ann must never reach."""
    return await person(api, runtime, outbox, "bob@example.org")
