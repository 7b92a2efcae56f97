"""Fixtures of the remote identity tests: Dovecot as the remote account (one per
module; each test gets users of its own), the runtime told to trust its test CA."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from postern.config import Settings
from postern.http.app import create_app
from postern.serve.runtime import Runtime
from tests.aliases import Person, person
from tests.http.api.conftest import outbox  # noqa: F401 (a fixture)
from tests.http.api.helpers import Outbox
from tests.remote.dovecot import Dovecot


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    # Not under pytest's temporary folder: Dovecot's mail user must reach it.
    root = Path(tempfile.mkdtemp(prefix="postern-dovecot-"))
    server = Dovecot(root)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def remote_user(dovecot: Dovecot) -> tuple[str, str]:
    """A fresh account on the remote server: (login, password)."""
    login = f"u{secrets.token_hex(4)}"
    return login, dovecot.add_user(login)


@pytest.fixture
def settings(settings: Settings, dovecot: Dovecot) -> Settings:
    return settings.model_copy(
        update={
            "remote_ca_file": dovecot.ca,
            "remote_min_poll_interval": 1,
            "remote_timeout": 10.0,
        }
    )


@pytest.fixture
async def api(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://postern.test"
    ) as client:
        yield client


@pytest.fixture
async def ann(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> Person:  # noqa: F811
    return await person(api, runtime, outbox, "ann@example.org")


@pytest.fixture
async def bob(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> Person:  # noqa: F811
    return await person(api, runtime, outbox, "bob@example.org")
