"""Schemathesis over the identity service's own document
(``/_matrix/identity/openapi.json``): generated requests, JSON and form-encoded, to
every operation, v2 ones with a real access token. No answer may be a server error.

As in tests/http/test_openapi_conformance.py, schemathesis runs the application on a
loop of its own: the runtime is built there on the first request and closed there
when the module is done."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.python import asgi as schemathesis_asgi

from postern.config import Settings
from postern.http.app import create_app
from postern.serve.runtime import Runtime
from postern.storage import validation_sessions as store
from postern.verification.homeserver import Homeservers
from tests.conftest import FAST_PASSWORDS, TEST_DATABASE_URL
from tests.http.test_openapi_conformance import _drop_schema

ACCESS_TOKEN = "fuzz-" + secrets.token_urlsafe(16)


class IdentityApp:
    def __init__(self) -> None:
        self.settings: Settings | None = None
        self.runtime: Runtime | None = None
        self.app: Any = None
        self._lock: asyncio.Lock | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if self.settings is None:
            if self.runtime is not None:
                await self.runtime.close()
                self.runtime = self.app = None
            await create_app(cast(Runtime, None))(scope, receive, send)
            return
        if self.app is None:
            await self._start()
        await self.app(scope, receive, send)

    async def _start(self) -> None:
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            if self.app is not None:
                return
            assert self.settings is not None
            runtime = Runtime.build(self.settings, passwords=FAST_PASSWORDS)
            await runtime.start()

            async def no_srv(_name: str) -> list[tuple[int, int, int, str]]:
                return []

            # Every homeserver is unreachable at once (a closed loopback port).
            runtime.identity_accounts.homeservers = Homeservers(srv=no_srv, connect_map=lambda _h, _p: ("127.0.0.1", 9), timeout=2)
            async with runtime.db.write() as conn:
                await store.ensure_account(conn, "@fuzz:example.org", 0)
                await store.insert_token(
                    conn,
                    hashlib.sha256(ACCESS_TOKEN.encode()).hexdigest(),
                    "@fuzz:example.org",
                    0,
                )
            self.runtime, self.app = runtime, create_app(runtime)


CONFIG = SchemathesisConfig.from_dict({"checks": {"enabled": False, "not_a_server_error": {"enabled": True}}})
APP = IdentityApp()
schema = schemathesis.openapi.from_asgi("/_matrix/identity/openapi.json", APP, config=CONFIG)


@pytest.fixture(scope="module", autouse=True)
def identity_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityApp]:
    tmp_path: Path = tmp_path_factory.mktemp("identity-fuzz")
    database: dict[str, Any] = {"database_url": f"sqlite+aiosqlite:///{tmp_path / 'test.sqlite3'}"}
    db_schema = None
    if TEST_DATABASE_URL:
        db_schema = f"t_{secrets.token_hex(6)}"
        database = {"database_url": TEST_DATABASE_URL, "database_schema": db_schema}
    APP.settings = Settings(
        data_dir=tmp_path / "data",
        admin_token="x",
        domain="example.com",
        fsync=False,
        gc_interval=3600,
        **database,
    )
    try:
        assert schema["/_matrix/identity/versions"]["GET"].Case().call().status_code == 200
        yield APP
    finally:
        APP.settings = None
        schema["/_matrix/identity/versions"]["GET"].Case().call()
        schemathesis_asgi.shutdown_lifespans()
        if TEST_DATABASE_URL and db_schema:
            _drop_schema(TEST_DATABASE_URL, db_schema)


@schema.parametrize()
@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors(case: schemathesis.Case) -> None:
    """v2 operations get the access token most of the time (else their 401s would
    hide everything behind them)."""
    headers = dict(case.headers or {})
    if case.operation.path.startswith("/_matrix/identity/v2/") and secrets.randbelow(4):
        headers["Authorization"] = f"Bearer {ACCESS_TOKEN}"
    case.call_and_validate(headers=headers)


def test_the_document_covers_every_identity_path() -> None:
    document = create_app(cast(Runtime, None)).openapi()
    assert not [p for p in document["paths"] if p.startswith("/_matrix/")]
    paths = set(schema.raw_schema["paths"])
    assert {
        "/_matrix/identity/api/v1",
        "/_matrix/identity/api/v1/validate/email/requestToken",
        "/_matrix/identity/api/v1/validate/email/submitToken",
        "/_matrix/identity/api/v1/3pid/getValidated3pid",
        "/_matrix/identity/v2/account/register",
        "/_matrix/identity/v2/account",
        "/_matrix/identity/v2/account/logout",
        "/_matrix/identity/v2/terms",
        "/_matrix/identity/versions",
    } <= paths
