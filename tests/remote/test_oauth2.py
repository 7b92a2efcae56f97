"""OAuth2 against Dovecot's oauth2 passdb and a token endpoint on loopback: XOAUTH2
and OAUTHBEARER, the access token refreshed from the refresh token, an expired (or
revoked) access token replaced, a refresh token refused."""

from __future__ import annotations

import json
import secrets

import httpx
import pytest

from postern.config import Settings
from postern.serve.runtime import Runtime
from postern.storage import remote_identities as store
from tests.aliases import Person
from tests.remote.dovecot import Dovecot
from tests.remote.helpers import PATH, due_now, message, state, subjects


@pytest.fixture
def settings(settings: Settings, dovecot: Dovecot) -> Settings:
    providers = {"testmail": dovecot.oauth.provider("XOAUTH2"), "testbearer": dovecot.oauth.provider("OAUTHBEARER")}
    return settings.model_copy(update={"remote_oauth2_providers": json.dumps(providers)})


@pytest.mark.parametrize("provider", ["testmail", "testbearer"])
async def test_oauth2_fetch_and_token_refresh(
    api: httpx.AsyncClient, ann: Person, dovecot: Dovecot, remote_user: tuple[str, str], runtime: Runtime, provider: str
) -> None:
    login, _ = remote_user
    refresh_token = secrets.token_urlsafe(16)
    start = dovecot.oauth.issued
    dovecot.oauth.refresh_tokens[refresh_token] = login
    dovecot.append(login, message(1))
    body = {
        "identity_id": ann.email,
        "params": {
            "login": login,
            "auth": "oauth2",
            "oauth_provider": provider,
            "refresh_token": refresh_token,
            "mail_protocol": "IMAP",
            "incomming_mail_server": "localhost",
            "mail_port": dovecot.imaps,
            "fetch_method": "all",
        },
    }
    created = await api.post(PATH, json=body, headers=ann.headers)
    assert created.status_code == 201, created.text
    identity = created.json()
    assert identity["connected"] is True, identity["last_error"]
    assert refresh_token not in created.text and identity["params"]["refresh_token"] is None
    await runtime.remote_scheduler.fetch_once(identity["remote_identity_id"])
    assert await subjects(runtime, ann.user_id) == ["message 1"]
    issued = dovecot.oauth.issued
    assert issued == start + 1  # the access token was kept for the second connection

    # The access token expires early (revoked): the next fetch fails once, then a new
    # one is got from the refresh token.
    dovecot.oauth.access_tokens.clear()
    dovecot.append(login, message(2))
    await due_now(runtime, identity["remote_identity_id"])
    await runtime.remote_scheduler.fetch_once(identity["remote_identity_id"])
    await due_now(runtime, identity["remote_identity_id"])
    await runtime.remote_scheduler.fetch_once(identity["remote_identity_id"])
    assert await subjects(runtime, ann.user_id) == ["message 1", "message 2"]
    assert dovecot.oauth.issued == issued + 1
    async with runtime.db.read() as conn:
        row = await store.get(conn, identity["remote_identity_id"])
    assert refresh_token not in (row.secret or "") and all(t not in (row.access_token or "") for t in dovecot.oauth.access_tokens)

    # The refresh token is revoked: a clear error, no crash.
    dovecot.oauth.refresh_tokens.clear()
    dovecot.oauth.access_tokens.clear()
    await due_now(runtime, identity["remote_identity_id"])
    await runtime.remote_scheduler.fetch_once(identity["remote_identity_id"])
    await due_now(runtime, identity["remote_identity_id"])
    await runtime.remote_scheduler.fetch_once(identity["remote_identity_id"])
    shown = await state(api, ann, identity)
    assert shown["connected"] is False and "refresh token" in shown["last_error"]


async def test_unknown_provider_is_refused(api: httpx.AsyncClient, ann: Person) -> None:
    body = {
        "identity_id": ann.email,
        "params": {"login": "x", "auth": "oauth2", "oauth_provider": "nope", "refresh_token": "r", "mail_protocol": "IMAP", "incomming_mail_server": "localhost"},
    }
    answer = await api.post(PATH, json=body, headers=ann.headers)
    assert answer.status_code == 400 and "oauth_provider" in answer.json()["error"]
