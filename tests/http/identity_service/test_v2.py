"""v2: an OpenID token checked with a fake homeserver over TLS (a test CA), the server
name resolved as Matrix does (IP literal, .well-known delegation, SRV), access
tokens, terms on and off, and the validation endpoints behind them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from postern.serve.runtime import Runtime
from postern.verification.homeserver import Homeservers
from postern.verification.identity_accounts import load_terms
from tests.http.identity_service.conftest import V2, mail_number
from tests.http.identity_service.fake_homeserver import FakeHomeserver, make_ca_and_leaf
from tests.sink import SmtpSink

SECRET = "v2secret"
POLICY_URL = "https://example.org/terms-1.0.html"


@pytest.fixture
async def homeserver(tmp_path: Path, runtime: Runtime) -> AsyncIterator[FakeHomeserver]:
    ca, cert, key = make_ca_and_leaf(tmp_path, ["hs.test", "matrix.hs.test", "srv.test", "127.0.0.1"])
    server = FakeHomeserver(cert, key)
    await server.start()
    srv_records = {"_matrix-fed._tcp.srv.test": [(10, 0, 8449, "target.srv.test.")]}

    async def srv(name: str) -> list[tuple[int, int, int, str]]:
        return srv_records.get(name, [])

    def connect(host: str, port: int) -> tuple[str, int]:
        # Every name the test uses leads to the fake server (like curl --resolve).
        return ("127.0.0.1", server.port) if host in ("hs.test", "matrix.hs.test", "target.srv.test", "srv.test") else (host, port)

    # POSTERN_IDENTITY_CA_FILE names the test CA.
    runtime.identity_accounts.homeservers = Homeservers(ca_file=ca, srv=srv, connect_map=connect, timeout=5)
    try:
        yield server
    finally:
        await server.stop()


async def register(identity: httpx.AsyncClient, server_name: str, token: str) -> httpx.Response:
    body = {
        "access_token": token,
        "token_type": "Bearer",
        "matrix_server_name": server_name,
        "expires_in": 3600,
    }
    return await identity.post(f"{V2}/account/register", json=body)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_register_with_an_ip_literal(identity: httpx.AsyncClient, homeserver: FakeHomeserver) -> None:
    name = f"127.0.0.1:{homeserver.port}"
    homeserver.tokens["openid-1"] = f"@alice:{name}"
    response = await register(identity, name, "openid-1")
    assert response.status_code == 200, response.text
    token = response.json()["token"]
    assert response.json()["access_token"] == token
    response = await identity.get(f"{V2}/account", headers=bearer(token))
    assert response.status_code == 200 and response.json() == {"user_id": f"@alice:{name}"}
    assert homeserver.requests[-1] == ("/_matrix/federation/v1/openid/userinfo", name)


async def test_register_through_well_known_delegation(identity: httpx.AsyncClient, homeserver: FakeHomeserver) -> None:
    homeserver.well_known["hs.test"] = "matrix.hs.test:8448"
    homeserver.tokens["openid-2"] = "@bob:hs.test"
    response = await register(identity, "hs.test", "openid-2")
    assert response.status_code == 200, response.text
    # The delegated server was asked, with its own name in Host and in TLS.
    assert homeserver.requests == [
        ("/.well-known/matrix/server", "hs.test"),
        ("/_matrix/federation/v1/openid/userinfo", "matrix.hs.test:8448"),
    ]
    assert homeserver.sni == ["hs.test", "matrix.hs.test"]


async def test_well_known_redirects_are_followed(identity: httpx.AsyncClient, homeserver: FakeHomeserver) -> None:
    homeserver.redirects["hs.test"] = "https://matrix.hs.test/.well-known/matrix/server"
    homeserver.well_known["matrix.hs.test"] = "matrix.hs.test:8448"
    homeserver.tokens["openid-r"] = "@dan:hs.test"
    response = await register(identity, "hs.test", "openid-r")
    assert response.status_code == 200, response.text
    assert [path for path, _host in homeserver.requests] == [
        "/.well-known/matrix/server",
        "/.well-known/matrix/server",
        "/_matrix/federation/v1/openid/userinfo",
    ]
    # A redirect away from https is not followed: no delegation, then port 8448.
    homeserver.redirects["hs.test"] = "http://matrix.hs.test/.well-known/matrix/server"
    homeserver.requests.clear()
    response = await register(identity, "hs.test", "openid-r")
    assert [path for path, _host in homeserver.requests] == ["/.well-known/matrix/server", "/_matrix/federation/v1/openid/userinfo"]


async def test_register_through_srv(identity: httpx.AsyncClient, homeserver: FakeHomeserver) -> None:
    homeserver.tokens["openid-3"] = "@carol:srv.test"
    response = await register(identity, "srv.test", "openid-3")
    assert response.status_code == 200, response.text
    # No delegation: the SRV target, with the server name in Host and in TLS.
    assert homeserver.requests[-1] == (
        "/_matrix/federation/v1/openid/userinfo",
        "srv.test",
    )
    assert homeserver.sni[-1] == "srv.test"


async def test_register_refusals(identity: httpx.AsyncClient, homeserver: FakeHomeserver, runtime: Runtime) -> None:
    name = f"127.0.0.1:{homeserver.port}"
    homeserver.tokens["someone-else"] = "@eve:other.test"
    for server_name, token in ((name, "unknown"), (name, "someone-else")):
        response = await register(identity, server_name, token)
        assert response.status_code == 401, response.text
        assert response.json()["errcode"] == "M_UNAUTHORIZED"
    for body in (
        {"access_token": "x", "matrix_server_name": "not a server/"},
        {"access_token": "x", "matrix_server_name": "hs.test", "token_type": "MAC"},
        {"access_token": 5, "matrix_server_name": "hs.test"},
    ):
        response = await identity.post(f"{V2}/account/register", json=body)
        assert response.status_code == 400 and response.json()["errcode"] == "M_INVALID_PARAM", body
    response = await identity.post(f"{V2}/account/register", json={"access_token": "x"})
    assert response.status_code == 400 and response.json()["errcode"] == "M_MISSING_PARAMS"
    # A certificate the CA file does not vouch for is refused.
    homeserver.tokens["openid-4"] = f"@alice:{name}"
    runtime.identity_accounts.homeservers.ca_file = None
    response = await register(identity, name, "openid-4")
    assert response.status_code == 401


async def test_v2_validation_behind_tokens_and_terms(
    identity: httpx.AsyncClient,
    homeserver: FakeHomeserver,
    runtime: Runtime,
    internet: SmtpSink,
    tmp_path: Path,
) -> None:
    response = await identity.get("/_matrix/identity/versions")
    assert response.status_code == 200 and "v1.1" in response.json()["versions"]
    assert (await identity.get(V2)).json() == {}
    name = f"127.0.0.1:{homeserver.port}"
    homeserver.tokens["openid"] = f"@alice:{name}"
    token = (await register(identity, name, "openid")).json()["token"]

    request_url = f"{V2}/validate/email/requestToken"
    body = {"client_secret": SECRET, "email": "v2@example.net", "send_attempt": 1}
    for headers in ({}, bearer("wrong")):
        response = await identity.post(request_url, json=body, headers=headers)
        assert response.status_code == 401 and response.json()["errcode"] == "M_UNAUTHORIZED"

    # Terms off: the token is enough (in the header, or the query as older clients do).
    assert (await identity.get(f"{V2}/terms")).json() == {"policies": {}}
    response = await identity.post(request_url, json=body, params={"access_token": token})
    assert response.status_code == 200, response.text
    sid = response.json()["sid"]
    mail = await mail_number(internet, 1)
    submit = {"sid": sid, "client_secret": SECRET, "token": mail.token}
    response = await identity.post(f"{V2}/validate/email/submitToken", json=submit, headers=bearer(token))
    assert response.status_code == 200 and response.json() == {"success": True}

    # Terms on: nothing but the account and the terms until they are accepted.
    terms_file = tmp_path / "terms.json"
    terms_file.write_text(f'{{"policies": {{"terms": {{"version": "1.0", "en": {{"name": "Terms", "url": "{POLICY_URL}"}}}}}}}}')
    runtime.identity_accounts.policies = load_terms(terms_file)
    response = await identity.get(
        f"{V2}/3pid/getValidated3pid",
        params={"sid": sid, "client_secret": SECRET},
        headers=bearer(token),
    )
    assert response.status_code == 403 and response.json()["errcode"] == "M_TERMS_NOT_SIGNED"
    assert (await identity.get(f"{V2}/account", headers=bearer(token))).status_code == 200
    response = await identity.get(f"{V2}/terms")
    assert response.json()["policies"]["terms"]["en"]["url"] == POLICY_URL
    response = await identity.post(
        f"{V2}/terms",
        json={"user_accepts": ["https://example.org/other"]},
        headers=bearer(token),
    )
    assert response.status_code == 200
    response = await identity.post(request_url, json=body, headers=bearer(token))
    assert response.status_code == 403 and response.json()["errcode"] == "M_TERMS_NOT_SIGNED"
    assert (await identity.post(f"{V2}/terms", json={"user_accepts": [POLICY_URL]})).status_code == 401
    response = await identity.post(f"{V2}/terms", json={"user_accepts": [POLICY_URL]}, headers=bearer(token))
    assert response.status_code == 200 and response.json() == {}
    response = await identity.get(
        f"{V2}/3pid/getValidated3pid",
        params={"sid": sid, "client_secret": SECRET},
        headers=bearer(token),
    )
    assert response.status_code == 200 and response.json()["address"] == "v2@example.net"

    # The mailed link needs no token.
    response = await identity.get(f"{V2}/validate/email/submitToken", params=mail.link_params)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")

    # Logout ends the token.
    assert (await identity.post(f"{V2}/account/logout", headers=bearer(token))).status_code == 200
    response = await identity.get(f"{V2}/account", headers=bearer(token))
    assert response.status_code == 401 and response.json()["errcode"] == "M_UNAUTHORIZED"


async def test_cors_for_browsers(identity: httpx.AsyncClient) -> None:
    response = await identity.options(
        f"{V2}/account/register",
        headers={
            "Origin": "https://app.example.org",
            "Access-Control-Request-Method": "POST",
        },
    )
    assert response.status_code == 200 and response.headers["access-control-allow-origin"] == "*"
    response = await identity.get("/_matrix/identity/versions")
    assert response.headers["access-control-allow-origin"] == "*"
