"""Fixtures of the verification tests: the user API's people (tests/http/api)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from postern.http.app import create_app
from postern.serve.runtime import Runtime
from tests.aliases import Person, person
from tests.http.api.helpers import Outbox
from tests.http.identity_service.conftest import identity, internet  # noqa: F401 - fixtures shared


@pytest.fixture
async def api(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://postern.test"
    ) as client:
        yield client


@pytest.fixture
def outbox(runtime: Runtime) -> Outbox:
    """The user API's own mail (activation codes) caught, not sent."""
    from tests.http.api.helpers import Sent

    box = Outbox(runtime)

    async def send(*, user_id: str, to: str, subject: str, text: str) -> None:
        box.sent.append(Sent(user_id, to, subject, text))

    runtime.system_mail.send = send  # type: ignore[method-assign]
    return box


@pytest.fixture
async def ann(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> Person:
    return await person(api, runtime, outbox, "ann@example.org")
