"""POST /authenticate: username or any address, the password, the scope."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.helpers import create_user

PASSWORD = "correct horse battery"
AUTH_FIELDS = {"success", "id", "username", "address", "scope", "require2fa", "requirePasswordChange"}


def error_of(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    assert "success" not in body, body
    if code is not None:
        assert body.get("code") == code, body
    return body


async def authenticate(client: httpx.AsyncClient, username: str, password: str = PASSWORD, **extra: Any) -> httpx.Response:
    return await client.post("/authenticate", json={"username": username, "password": password, **extra})


def assert_authenticated(response: httpx.Response, user_id: str, username: str, address: str | None, scope: str = "master") -> None:
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == AUTH_FIELDS, body
    assert body == {
        "success": True,
        "id": user_id,
        "username": username,
        "address": address,
        "scope": scope,
        "require2fa": False,
        "requirePasswordChange": False,
    }


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> str:
    user_id = await create_user(client, "alice", address="alice@example.com", name="Alice")
    response = await client.post(f"/users/{user_id}/addresses", json={"address": "alice.alias@example.org"})
    assert response.status_code == 200, response.text
    return user_id


async def test_by_username(client: httpx.AsyncClient, alice: str) -> None:
    assert_authenticated(await authenticate(client, "alice"), alice, "alice", "alice@example.com")


async def test_username_is_case_insensitive(client: httpx.AsyncClient, alice: str) -> None:
    assert_authenticated(await authenticate(client, "ALICE"), alice, "alice", "alice@example.com")
    assert_authenticated(await authenticate(client, "Alice"), alice, "alice", "alice@example.com")


async def test_by_main_address(client: httpx.AsyncClient, alice: str) -> None:
    assert_authenticated(await authenticate(client, "alice@example.com"), alice, "alice", "alice@example.com")


async def test_by_secondary_address(client: httpx.AsyncClient, alice: str) -> None:
    # The answer names the main address, whichever one was used to log in.
    assert_authenticated(await authenticate(client, "alice.alias@example.org"), alice, "alice", "alice@example.com")


@pytest.mark.parametrize("login", ["ALICE@EXAMPLE.COM", "Alice.Alias@Example.ORG", "alice@EXAMPLE.com"])
async def test_address_is_case_insensitive(client: httpx.AsyncClient, alice: str, login: str) -> None:
    assert_authenticated(await authenticate(client, login), alice, "alice", "alice@example.com")


async def test_by_idn_address_in_either_form(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "andris", address="андрис@уайлддак.орг")
    for login in ["андрис@уайлддак.орг", "андрис@xn--80aalaxjd5d.xn--c1avg", "АНДРИС@УАЙЛДДАК.ОРГ", "андрис@XN--80AALAXJD5D.XN--C1AVG"]:
        assert_authenticated(await authenticate(client, login), user_id, "andris", "андрис@уайлддак.орг")


async def test_by_idn_address_added_in_punycode(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "jaan", emptyAddress=True)
    response = await client.post(f"/users/{user_id}/addresses", json={"address": "jaan@xn--80aalaxjd5d.xn--c1avg"})
    assert response.status_code == 200, response.text
    assert_authenticated(await authenticate(client, "jaan@уайлддак.орг"), user_id, "jaan", "jaan@уайлддак.орг")


async def test_by_email_form_username(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "bob@example.org", address="bob.main@example.com")
    assert_authenticated(await authenticate(client, "bob@example.org"), user_id, "bob@example.org", "bob.main@example.com")
    assert_authenticated(await authenticate(client, "BOB@example.org"), user_id, "bob@example.org", "bob.main@example.com")
    assert_authenticated(await authenticate(client, "bob.main@example.com"), user_id, "bob@example.org", "bob.main@example.com")


async def test_user_without_address(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "noaddr", emptyAddress=True)
    assert_authenticated(await authenticate(client, "noaddr"), user_id, "noaddr", None)


async def test_wrong_password_is_403(client: httpx.AsyncClient, alice: str) -> None:
    for login in ["alice", "alice@example.com", "alice.alias@example.org"]:
        error_of(await authenticate(client, login, "wrong password"), 403, "AuthFailed")
    error_of(await authenticate(client, "alice", PASSWORD.upper()), 403, "AuthFailed")
    error_of(await authenticate(client, "alice", PASSWORD + " "), 403, "AuthFailed")


async def test_unknown_user_answers_like_a_wrong_password(client: httpx.AsyncClient, alice: str) -> None:
    wrong = await authenticate(client, "alice", "wrong password")
    error_of(wrong, 403, "AuthFailed")
    for login in ["nobody", "nobody@example.com", "alice@example.net", "not a valid username!", "@@", "x" * 300, "alice.alias@example.org.invalid"]:
        response = await authenticate(client, login, "wrong password")
        assert response.status_code == wrong.status_code, (login, response.text)
        assert response.json() == wrong.json(), login
    # Even with the right password of someone else.
    response = await authenticate(client, "nobody", PASSWORD)
    assert response.status_code == 403 and response.json() == wrong.json()


@pytest.mark.parametrize("scope", ["master", "imap", "pop3", "smtp"])
async def test_scopes_are_accepted_and_echoed(client: httpx.AsyncClient, alice: str, scope: str) -> None:
    assert_authenticated(await authenticate(client, "alice", scope=scope), alice, "alice", "alice@example.com", scope)


async def test_scope_defaults_to_master(client: httpx.AsyncClient, alice: str) -> None:
    assert (await authenticate(client, "alice")).json()["scope"] == "master"


@pytest.mark.parametrize("scope", ["admin", "IMAP", "", "lmtp", None, 1, ["imap"]])
async def test_invalid_scope_is_400(client: httpx.AsyncClient, alice: str, scope: Any) -> None:
    body = error_of(await authenticate(client, "alice", scope=scope), 400, "InputValidationError")
    assert "scope" in body.get("details", {}), body


async def test_optional_logging_fields_are_accepted(client: httpx.AsyncClient, alice: str) -> None:
    response = await authenticate(client, "alice", protocol="IMAP", sess="abc123", ip="192.168.10.10", scope="imap")
    assert_authenticated(response, alice, "alice", "alice@example.com", "imap")


@pytest.mark.parametrize(
    "body",
    [
        {"password": PASSWORD},
        {"username": "alice"},
        {"username": "", "password": PASSWORD},
        {"username": "alice", "password": ""},
        {"username": None, "password": PASSWORD},
        {"username": "alice", "password": None},
        {"username": "alice", "password": 12345},
        {"username": ["alice"], "password": PASSWORD},
        {"username": "alice", "password": "p" * 257},
        {"username": "a" * 321, "password": PASSWORD},
    ],
)
async def test_invalid_input_is_400(client: httpx.AsyncClient, alice: str, body: dict[str, Any]) -> None:
    response = await client.post("/authenticate", json=body)
    body_out = error_of(response, 400, "InputValidationError")
    assert body_out.get("details"), body_out


async def test_disabled_user_is_refused(client: httpx.AsyncClient, alice: str) -> None:
    assert (await client.put(f"/users/{alice}", json={"disabled": True})).status_code == 200
    for login in ["alice", "alice@example.com", "alice.alias@example.org"]:
        response = await authenticate(client, login)
        assert response.status_code == 403, response.text
        body = error_of(response, 403)
        assert "id" not in body and "username" not in body
    # A wrong password is still just a wrong password.
    error_of(await authenticate(client, "alice", "wrong password"), 403, "AuthFailed")
    # Enabled again, it works again.
    assert (await client.put(f"/users/{alice}", json={"disabled": False})).status_code == 200
    assert_authenticated(await authenticate(client, "alice"), alice, "alice", "alice@example.com")


async def test_user_without_password_cannot_authenticate(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "nopass", password=False)
    unknown = await authenticate(client, "nobody", "anything")
    for n, password in enumerate(["anything", PASSWORD, "postern-decoy-password", "false", " "]):
        response = await authenticate(client, "nopass", password, ip=f"192.0.2.{n}")
        error_of(response, 403, "AuthFailed")
        assert response.json() == unknown.json()
    response = await authenticate(client, "nopass@example.com", "postern-decoy-password")
    error_of(response, 403, "AuthFailed")
    assert (await client.get(f"/users/{user_id}")).json()["hasPasswordSet"] is False


async def test_password_change_takes_effect(client: httpx.AsyncClient, alice: str) -> None:
    assert (await client.put(f"/users/{alice}", json={"password": "the new one"})).status_code == 200
    assert_authenticated(await authenticate(client, "alice", "the new one"), alice, "alice", "alice@example.com")
    error_of(await authenticate(client, "alice", PASSWORD), 403, "AuthFailed")


async def test_unicode_password(client: httpx.AsyncClient) -> None:
    user_id = await create_user(client, "uni", password="пароль ☃ 密码")
    assert_authenticated(await authenticate(client, "uni", "пароль ☃ 密码"), user_id, "uni", "uni@example.com")
    error_of(await authenticate(client, "uni", "пароль ☃ 密"), 403, "AuthFailed")


async def test_two_users_do_not_mix(client: httpx.AsyncClient, alice: str) -> None:
    bob = await create_user(client, "bob", password="bob's own password")
    assert_authenticated(await authenticate(client, "bob", "bob's own password"), bob, "bob", "bob@example.com")
    error_of(await authenticate(client, "bob", PASSWORD), 403, "AuthFailed")
    error_of(await authenticate(client, "alice", "bob's own password"), 403, "AuthFailed")


async def test_deleted_address_no_longer_logs_in(client: httpx.AsyncClient, alice: str) -> None:
    listed = (await client.get(f"/users/{alice}/addresses")).json()["results"]
    alias = next(a for a in listed if a["address"] == "alice.alias@example.org")
    assert (await client.delete(f"/users/{alice}/addresses/{alias['id']}")).status_code == 200
    error_of(await authenticate(client, "alice.alias@example.org"), 403, "AuthFailed")
    assert_authenticated(await authenticate(client, "alice"), alice, "alice", "alice@example.com")


async def test_requires_the_access_token(anonymous: httpx.AsyncClient, alice: str) -> None:
    response = await anonymous.post("/authenticate", json={"username": "alice", "password": PASSWORD})
    error_of(response, 401)


# Rate limits --------------------------------------------------------------------------


@pytest.fixture
def small_limits(runtime: Any) -> None:
    from postern.accounts.rate_limit import Policy

    # 3 failures per (IP, account), 5 per IP; past 3 per account, new clients wait.
    runtime.rate_limiter.policies["login"] = Policy(per_ip=5, per_account=3, window_s=60, per_pair=3, backoff_cap_s=60)


def assert_rate_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"] == "Rate limit exceeded"
    assert 1 <= int(response.headers["Retry-After"]) <= 61


@pytest.mark.usefixtures("small_limits")
async def test_too_many_failures_per_account_is_429(client: httpx.AsyncClient, alice: str) -> None:
    for _ in range(3):
        error_of(await authenticate(client, "alice", "wrong password", ip="192.0.2.1"), 403, "AuthFailed")
    # That pair waits now, even with the right password, by any name of the account ...
    assert_rate_limited(await authenticate(client, "alice", ip="192.0.2.1"))
    assert_rate_limited(await authenticate(client, "ALICE@example.com", ip="192.0.2.1"))
    # ... and so does a new client elsewhere (the account's failures reached its limit
    # and one more makes it wait) ...
    error_of(await authenticate(client, "alice", "wrong password", ip="192.0.2.2"), 403, "AuthFailed")
    assert_rate_limited(await authenticate(client, "ALICE", ip="198.51.100.1"))
    # Other accounts are not affected.
    bob = await create_user(client, "bob", password="bob's own password")
    assert_authenticated(await authenticate(client, "bob", "bob's own password", ip="192.0.2.3"), bob, "bob", "bob@example.com")


@pytest.mark.usefixtures("small_limits")
async def test_unknown_accounts_are_limited_alike(client: httpx.AsyncClient, alice: str) -> None:
    """A limit only real accounts had would tell which accounts exist."""
    for login, ip in (("alice", "192.0.2.1"), ("nobody", "192.0.2.2")):
        for _ in range(3):
            error_of(await authenticate(client, login, "wrong password", ip=ip), 403, "AuthFailed")
        assert_rate_limited(await authenticate(client, login, "wrong password", ip=ip))


@pytest.mark.usefixtures("small_limits")
async def test_too_many_failures_per_ip_is_429(client: httpx.AsyncClient, alice: str) -> None:
    users = ["u1", "u2", "u3", "u4", "u5"]
    for name in users:
        await create_user(client, name)
    for name in users:
        error_of(await authenticate(client, name, "wrong password", ip="203.0.113.9"), 403, "AuthFailed")
    # That address is refused for every account it has not logged in to before ...
    assert_rate_limited(await authenticate(client, "alice", ip="203.0.113.9"))
    # ... while the same accounts still log in from elsewhere.
    assert_authenticated(await authenticate(client, "alice", ip="203.0.113.10"), alice, "alice", "alice@example.com")


@pytest.mark.usefixtures("small_limits")
async def test_success_clears_the_pairs_failures(client: httpx.AsyncClient, alice: str) -> None:
    for _ in range(2):
        error_of(await authenticate(client, "alice", "wrong password", ip="192.0.2.1"), 403, "AuthFailed")
    assert_authenticated(await authenticate(client, "alice", ip="192.0.2.1"), alice, "alice", "alice@example.com")
    for _ in range(2):
        error_of(await authenticate(client, "alice", "wrong password", ip="192.0.2.1"), 403, "AuthFailed")
    assert_authenticated(await authenticate(client, "alice", ip="192.0.2.1"), alice, "alice", "alice@example.com")


@pytest.mark.usefixtures("small_limits")
async def test_rate_limited_attempts_are_not_checked(client: httpx.AsyncClient, runtime: Any, alice: str) -> None:
    for _ in range(3):
        await authenticate(client, "alice", "wrong password")
    before = (await client.get(f"/users/{alice}/authlog")).json()["total"]
    assert_rate_limited(await authenticate(client, "alice"))
    # Refused before any password was looked at: nothing more to log.
    assert (await client.get(f"/users/{alice}/authlog")).json()["total"] == before


async def test_unknown_user_costs_a_hash_verification_too(
    client: httpx.AsyncClient, runtime: Any, alice: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown login verifies against a decoy hash, so that the answer takes about as
    long as a wrong password's (argon2 is the cost that counts)."""
    calls: list[str | None] = []
    verify = runtime.accounts.passwords.verify

    async def counting(stored_hash: str | None, password: str) -> bool:
        calls.append(stored_hash)
        return await verify(stored_hash, password)

    monkeypatch.setattr(runtime.accounts.passwords, "verify", counting)  # restored after the test
    error_of(await authenticate(client, "alice", "wrong password"), 403, "AuthFailed")
    error_of(await authenticate(client, "nobody", "wrong password"), 403, "AuthFailed")
    error_of(await authenticate(client, "nobody", "abcdefghijklmnop", scope="imap"), 403, "AuthFailed")  # shaped like an ASP
    assert len(calls) == 3 and calls[0] is not None and calls[1:] == [None, None]
