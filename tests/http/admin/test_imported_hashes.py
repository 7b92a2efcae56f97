"""POST /users and PUT /users/{user} with ``hashedPassword``: the hash of another system
is imported for real (issue 14, item 13). Logging in with the hash string fails, the
real password works (through the admin API and a mail door) and then the stored hash
is argon2id; a string that is not a supported hash is refused with 400 and nothing is
created."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import poplib
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher, Type
from passlib.hash import bcrypt, md5_crypt, pbkdf2_sha256, sha256_crypt, sha512_crypt

from postern.config import Settings
from postern.serve.runtime import Runtime
from postern.serve.server import bound_port, start_pop3_doors

PASSWORD = "the real password"


def _phc_pbkdf2(password: str) -> str:
    salt = b"0123456789abcdef"
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 1000, 64)
    b64 = lambda data: base64.b64encode(data).decode().rstrip("=")  # noqa: E731
    return f"$pbkdf2-sha512$i=1000,l=64${b64(salt)}${b64(key)}"


HASHES = {
    "bcrypt": lambda: bcrypt.using(rounds=4).hash(PASSWORD),
    "bcrypt-2y": lambda: bcrypt.using(rounds=4, ident="2y").hash(PASSWORD),
    "md5-crypt": lambda: md5_crypt.hash(PASSWORD),
    "sha256-crypt": lambda: sha256_crypt.using(rounds=1000).hash(PASSWORD),
    "sha512-crypt": lambda: sha512_crypt.using(rounds=1000).hash(PASSWORD),
    "pbkdf2 (passlib)": lambda: pbkdf2_sha256.using(rounds=1000).hash(PASSWORD),
    "pbkdf2 (PHC, WildDuck)": lambda: _phc_pbkdf2(PASSWORD),
    "argon2i": lambda: PasswordHasher(time_cost=1, memory_cost=64, parallelism=1, type=Type.I).hash(PASSWORD),
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"pop3_listen": "127.0.0.1:0", "pop3s_listen": None})


async def _authenticate(client: httpx.AsyncClient, username: str, password: str) -> int:
    return (await client.post("/authenticate", json={"username": username, "password": password})).status_code


async def _stored_hash(runtime: Runtime, username: str) -> str:
    user = await runtime.accounts.find_login(username)
    assert user is not None
    return user.password_hash


@pytest.mark.parametrize("kind", list(HASHES))
async def test_an_imported_hash_checks_the_real_password_and_becomes_argon2id(client: httpx.AsyncClient, runtime: Runtime, kind: str) -> None:
    imported = HASHES[kind]()
    response = await client.post("/users", json={"username": "moved", "password": imported, "hashedPassword": True})
    assert response.status_code == 200, response.text
    assert await _authenticate(client, "moved", imported) == 403  # the hash is no password
    assert await _stored_hash(runtime, "moved") == imported
    assert await _authenticate(client, "moved", PASSWORD) == 200
    rehashed = await _stored_hash(runtime, "moved")
    assert rehashed.startswith("$argon2id$"), rehashed
    assert await _authenticate(client, "moved", PASSWORD) == 200
    assert await _authenticate(client, "moved", imported) == 403


async def test_an_imported_hash_opens_a_mail_door(client: httpx.AsyncClient, runtime: Runtime) -> None:
    imported = HASHES["sha512-crypt"]()
    response = await client.post("/users", json={"username": "popper", "password": imported, "hashedPassword": True})
    assert response.status_code == 200, response.text
    listeners = await start_pop3_doors(runtime)
    try:
        def pop() -> bytes:
            client = poplib.POP3("127.0.0.1", bound_port(listeners["pop3"]), timeout=10)
            try:
                client.user("popper")
                return client.pass_(PASSWORD)
            finally:
                client.quit()

        assert (await asyncio.to_thread(pop)).startswith(b"+OK")
    finally:
        for server in listeners.values():
            server.close()
    assert (await _stored_hash(runtime, "popper")).startswith("$argon2id$")


@pytest.mark.parametrize("bad", ["plain text", "$2b$04$tooshort", "$6$", "$1$salt$", "$argon2id$v=19$m=8", "$pbkdf2-sha512$i=0,l=64$AAAA$AAAA", "{SSHA}abcdef"])
async def test_a_string_that_is_not_a_supported_hash_is_refused(client: httpx.AsyncClient, bad: str) -> None:
    response = await client.post("/users", json={"username": "moved", "password": bad, "hashedPassword": True})
    assert response.status_code == 400, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == "InputValidationError" and "password" in body.get("details", {}), body
    assert (await client.get("/users", params={"query": "moved"})).json()["total"] == 0


async def test_update_imports_a_hash_too(client: httpx.AsyncClient, runtime: Runtime) -> None:
    created = await client.post("/users", json={"username": "changer", "password": "first password"})
    user = created.json()["id"]
    imported = HASHES["bcrypt"]()
    response = await client.put(f"/users/{user}", json={"password": imported, "hashedPassword": True})
    assert response.status_code == 200, response.text
    assert await _authenticate(client, "changer", imported) == 403
    assert await _authenticate(client, "changer", "first password") == 403
    assert await _authenticate(client, "changer", PASSWORD) == 200
    bad = await client.put(f"/users/{user}", json={"password": "not a hash", "hashedPassword": True})
    assert bad.status_code == 400
    assert await _authenticate(client, "changer", PASSWORD) == 200
