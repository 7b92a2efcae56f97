"""Schemathesis over ``/openapi.json``: generated requests to every operation of the
admin API, in-process, with the admin token. No answer may be a server error, and
every answer must be what the document says: a documented status code, a documented
content type and a body that matches the documented schema (and no user's path may
reach another user's objects).

The database is seeded with two users, folders, addresses and messages (plain, with
HTML and attachments), and most generated requests whose ids are well formed get the
ids of those real objects instead, so that they reach past the 404s into the
handlers; uploads get plausible (often broken) messages, address bodies plausible
addresses. The operations that move or delete run after all the others, and deleting
users last of all, so that they do not empty the seed for the others.

Schemathesis runs an ASGI application on an event loop of its own, in a thread, and
ends its lifespan after every test. The runtime (database engine, locks) must live on
that loop: the application below builds it there on its first request, and closes it
there when the module's fixture is done.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from schemathesis.python import asgi as schemathesis_asgi
from sqlalchemy.ext.asyncio import create_async_engine

from postern.config import Settings
from postern.http.app import create_app
from postern.serve.runtime import Runtime
from tests.conftest import ADMIN_TOKEN, FAST_PASSWORDS, TEST_DATABASE_URL
from tests.helpers import create_user, folder_id, make_message, upload

AUTH = {"X-Access-Token": ADMIN_TOKEN}
ID_LIKE = frozenset("0123456789abcdef")


def _attachment_message() -> bytes:
    boundary = "b0undary"
    return (
        "From: Bob <bob@example.org>\r\n"
        "To: Carol <carol@example.com>, dave@example.com\r\n"
        "Cc: Eve <eve@example.net>\r\n"
        "Subject: =?UTF-8?Q?R=C3=A9sum=C3=A9_attached?=\r\n"
        "Date: Thu, 03 Nov 2011 10:00:00 +0100\r\n"
        "Message-ID: <att-1@example.org>\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n'
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Type: multipart/alternative; boundary=alt\r\n"
        "\r\n"
        "--alt\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        "See the attachment.\r\n"
        "--alt\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        "\r\n"
        '<p onclick="evil()">See <b>the</b> attachment.<script>alert(1)</script></p>\r\n'
        "--alt--\r\n"
        f"--{boundary}\r\n"
        'Content-Type: application/pdf; name="cv.pdf"\r\n'
        'Content-Disposition: attachment; filename="cv.pdf"\r\n'
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
        "JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PD4+CmVuZG9iagp0cmFpbGVyCjw8Pj4KJSVFT0YK\r\n"
        f"--{boundary}\r\n"
        "Content-Type: image/png\r\n"
        "Content-Disposition: inline\r\n"
        "Content-ID: <logo@example.org>\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
        "iVBORw0KGgo=\r\n"
        f"--{boundary}--\r\n"
    ).encode()


class SeededApp:
    """The postern ASGI application, built (and seeded) on the event loop that serves it."""

    def __init__(self) -> None:
        self.settings: Settings | None = None
        self.runtime: Runtime | None = None
        self.app: Any = None
        self.seed: dict[str, Any] = {}
        self._lock: asyncio.Lock | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if self.settings is None:
            # Before the fixture configures us (only /openapi.json is asked for; the
            # document does not depend on the runtime) and after it is done with us.
            if self.runtime is not None:
                await self.runtime.close()
                self.runtime = self.app = None
            await create_app(cast(Runtime, None))(scope, receive, send)
            return
        if self.app is None:
            await self._start()
        await self.app(scope, receive, send)

    @staticmethod
    async def _lifespan(receive: Any, send: Any) -> None:
        # Schemathesis ends the lifespan after every test item; the runtime outlives
        # them (on the same loop) and is closed by the fixture instead.
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _start(self) -> None:
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            if self.app is not None:
                return
            assert self.settings is not None
            runtime = Runtime.build(self.settings, passwords=FAST_PASSWORDS)
            await runtime.start()
            app = create_app(runtime)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://postern.test", headers=AUTH) as client:
                self.seed = await _seed(client)
            self.runtime, self.app = runtime, app


async def _seed(client: httpx.AsyncClient) -> dict[str, Any]:
    """Two users with folders, addresses and messages. Returns "messages" and
    "folders": path parameters that name real objects, and "owner": the user of every
    seeded folder and address."""
    messages: list[dict[str, Any]] = []
    folders: list[dict[str, Any]] = []
    owner: dict[str, str] = {}
    for name in ("alice", "bob"):
        user = await create_user(client, name, address=f"{name}@example.com", name=name.title(), tags=["seed", name])
        extra = await client.post(f"/users/{user}/addresses", json={"address": f"{name}.alias@exämple.com"})
        assert extra.status_code == 200, extra.text
        created = await client.post(f"/users/{user}/mailboxes", json={"path": "Projects/2024"})
        assert created.status_code == 200, created.text
        inbox = await folder_id(client, user, "INBOX")
        projects = created.json()["id"]
        in_inbox = [
            (await upload(client, user, inbox, make_message(subject=f"Hello {name}")), "ATT00001"),
            (await upload(client, user, inbox, _attachment_message(), unseen="true", flagged="true"), "ATT00001"),
            (2, "ATT00002"),
            (await upload(client, user, inbox, make_message(subject="Re: Résumé", In_Reply_To="<att-1@example.org>")), "ATT00001"),
        ]
        in_projects = await upload(client, user, projects, make_message(subject="Plans", body="<b>html?</b>\r\n"))
        addresses = [a["id"] for a in (await client.get(f"/users/{user}/addresses")).json()["results"]]
        all_folders = [f["id"] for f in (await client.get(f"/users/{user}/mailboxes")).json()["results"]]
        owner.update({a: user for a in addresses})
        owner.update({f: user for f in all_folders})
        for uid, attachment in in_inbox:
            messages.append({"user": user, "mailbox": inbox, "message": uid, "attachment": attachment, "address": addresses[0]})
        messages.append({"user": user, "mailbox": projects, "message": in_projects, "attachment": "ATT00001", "address": addresses[-1]})
        for index, folder in enumerate(all_folders):
            folders.append({"user": user, "mailbox": folder, "address": addresses[index % len(addresses)]})
    # The user API's run signs in as a user of its own (its changes stay away from the seed).
    await create_user(client, "carol", address="carol@example.com")
    signed_in = await client.post("/api/auth/login", json={"email": "carol", "password": "correct horse battery", "device": "conformance"})
    assert signed_in.status_code == 200, signed_in.text
    return {"messages": messages, "folders": folders, "owner": owner, "api_key": signed_in.json()["api_key"]}


CONFIG = SchemathesisConfig.from_dict(
    {
        # The admin token, in whichever of the two documented places schemathesis picks;
        # its own checks then try the requests without it and with a wrong one.
        "auth": {"openapi": {"APIKeyHeader": {"api_key": ADMIN_TOKEN}, "APIKeyQuery": {"api_key": ADMIN_TOKEN}}},
        "checks": {
            # Off: "a request valid by the document must be accepted" cannot hold for this
            # API. Part of its input rules are beyond JSON Schema: cursors are opaque
            # strings only the server makes (any other is a 400), next and previous
            # exclude each other, usernames and addresses have a syntax (IDN, UTF-8 local
            # parts), folder names have a per-segment length, uid sets must be in range.
            # Those 400s are documented and named by field; not_a_server_error and the
            # conformance checks still judge every one of those answers.
            "positive_data_acceptance": {"enabled": False},
        },
    }
)
APP = SeededApp()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP, config=CONFIG)
# The same document, for the user API's operations, with a user's API key.
USER_CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            # Off, for now: the user API refuses well-formed requests for what their
            # values mean at the time (a wrong password or code, an expired signed
            # suffix, a feature this server has off, an address that is not one), with
            # the 400 and 412 its spec gives. Every other check judges every answer.
            "positive_data_acceptance": {"enabled": False},
        }
    }
)
user_schema = schemathesis.openapi.from_asgi("/openapi.json", APP, config=USER_CONFIG).include(path_regex="^/api/")


@user_schema.auth()
class _UserApiKey:
    """The seeded user's API key, in the header the user API reads."""

    def get(self, case: schemathesis.Case, context: Any) -> str:
        return str(APP.seed.get("api_key", ""))

    def set(self, case: schemathesis.Case, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authentication": data}
UID_SET = re.compile(r"[0-9]+(:([0-9]+|\*))?(,[0-9]+(:([0-9]+|\*))?)*")

# Uploads of raw messages: sent as the bytes generated for them.
schemathesis.serializer.alias("message/rfc822", "application/octet-stream")


_header_text = st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=60)


@st.composite
def _raw_messages(draw: st.DrawFn) -> bytes:
    """Messages that look like mail, so that uploads get past "empty" into the parser."""
    charset = draw(st.sampled_from(["utf-8", "iso-8859-1", "us-ascii", "x-unknown", "utf-16"]))
    encoding = draw(st.sampled_from(["7bit", "8bit", "base64", "quoted-printable", "x-bogus"]))
    headers = [
        f"From: {draw(_header_text)} <{draw(st.sampled_from(['a@example.org', 'bad', '', '<>', 'ü@exämple.org']))}>",
        f"To: {draw(_header_text)}",
        f"Subject: {draw(_header_text)}",
        f"Date: {draw(st.sampled_from(['Wed, 02 Nov 2011 19:19:08 +0000', 'yesterday', '', 'Mon, 31 Feb 9999 99:99:99 +9999']))}",
        f"Message-ID: {draw(st.sampled_from(['<a@b>', '', '<<>>', 'no-brackets']))}",
        f"References: {draw(_header_text)}",
    ]
    body = draw(st.text(max_size=300))
    if draw(st.booleans()):
        boundary = draw(st.sampled_from(["b", "==x==", "", "a" * 70]))
        part = f"Content-Type: {draw(st.sampled_from(['text/html', 'text/plain', 'application/pdf', 'image/png', 'message/rfc822']))}; charset={charset}\r\n"
        part += f"Content-Transfer-Encoding: {encoding}\r\n"
        if draw(st.booleans()):
            part += f'Content-Disposition: attachment; filename="{draw(_header_text)}"\r\n'
        headers.append(f'Content-Type: multipart/{draw(st.sampled_from(["mixed", "alternative", "related"]))}; boundary="{boundary}"')
        body = f"--{boundary}\r\n{part}\r\n{body}\r\n--{boundary}--\r\n"
    else:
        headers.append(f"Content-Type: {draw(st.sampled_from(['text/plain', 'text/html']))}; charset={charset}")
        headers.append(f"Content-Transfer-Encoding: {encoding}")
    head = "\r\n".join(headers)
    return (head + "\r\n\r\n" + body).encode("utf-8", errors="surrogateescape")


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 24 and set(value) <= ID_LIKE


def _addresses() -> st.SearchStrategy[str]:
    local = st.one_of(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,20}", fullmatch=True), st.sampled_from(["jörg", "用户", "o'brien", "a.b"]))
    domain = st.sampled_from(["example.com", "EXAMPLE.org", "exämple.com", "xn--exmple-cua.com", "例え.jp", "mail.example.co.uk"])
    return st.builds(lambda left, right: f"{left}@{right}", local, domain)


@schema.hook
def flatmap_body(context: Any, body: Any) -> Any:
    """Plausible messages for uploads, and seeded folders for moves, part of the time."""
    operation = context.operation
    if isinstance(body, (bytes, str)) and operation is not None and operation.method.upper() == "POST" and operation.path.endswith("/messages"):
        # Any string or bytes is a valid message/rfc822 body by the document.
        return st.one_of(st.just(body), _raw_messages())
    if isinstance(body, dict) and isinstance(body.get("address"), str) and 3 <= len(body["address"]) <= 320:
        # Addresses the API should take: IDN domains, UTF-8 local parts, mixed case
        # (only in place of a valid one, so that negative cases stay negative).
        return st.one_of(st.just(body), _addresses().map(lambda address: {**body, "address": address}))
    folders = APP.seed.get("folders")
    if folders and isinstance(body, dict) and _is_id(body.get("moveTo")):
        return st.one_of(st.just(body), st.sampled_from(folders).map(lambda t: {**body, "moveTo": t["mailbox"]}))
    return st.just(body)


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
    """Most of the time, put the ids of seeded objects where well formed ids were
    generated (ill formed ones stay as they are, so that negative cases stay negative)."""
    if not APP.seed or not path_parameters:
        return st.just(path_parameters)
    pool = APP.seed["messages"] if "message" in path_parameters else APP.seed["folders"] + APP.seed["messages"]

    def real(target: dict[str, Any]) -> dict[str, Any]:
        result = dict(path_parameters)
        for name, value in path_parameters.items():
            if name not in target:
                continue
            if name in ("user", "mailbox", "address"):
                if _is_id(value):
                    result[name] = target[name]
            elif name == "message":
                if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 2**32 - 1:
                    result[name] = target[name]
                elif isinstance(value, str) and UID_SET.fullmatch(value):
                    # The update's uid set: one id, a range to the end, a list, a range.
                    uid = target[name]
                    result[name] = [str(uid), f"{uid}:*", f"1,{uid}", f"{uid}:{uid + 1}"][uid % 4]
            elif name == "attachment" and isinstance(value, str) and len(value) == 8 and value.startswith("ATT") and value[3:].isdigit():
                result[name] = target[name]
        return result

    def mixed(pair: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
        # One seeded object's user with another's folder, message or address (often
        # another user's: that must be a 404, never the other user's data).
        first, second = pair
        result = real(second)
        if "user" in result and _is_id(path_parameters.get("user")):
            result["user"] = first["user"]
        return result

    coherent = st.sampled_from(pool).map(real)
    return st.one_of(st.just(path_parameters), coherent, coherent, st.tuples(st.sampled_from(pool), st.sampled_from(pool)).map(mixed))


def no_foreign_objects(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """A user's path never reaches another user's folder or address, nor moves to one."""
    owner = APP.seed.get("owner", {})
    user = case.path_parameters.get("user") if case.path_parameters else None
    if user is None or response.status_code >= 300:
        return None
    foreign = [
        name
        for name, value in [*(case.path_parameters or {}).items(), ("moveTo", case.body.get("moveTo") if isinstance(case.body, dict) else None)]
        if name in ("mailbox", "address", "moveTo") and value in owner and owner[value] != user
    ]
    if foreign:
        raise AssertionError(f"{case.operation.label} answered {response.status_code} for another user's {', '.join(foreign)}")
    return True


REACHED: Counter[str] = Counter()


@schemathesis.hook  # this hook exists only globally; it leaves other schemas alone
def after_call(context: Any, case: schemathesis.Case, response: Any) -> None:
    if case.operation.app is APP and 200 <= response.status_code < 300:
        REACHED[case.operation.label] += 1


def _drop_schema(url: str, name: str) -> None:
    async def main() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        finally:
            await engine.dispose()

    asyncio.run(main())


@pytest.fixture(scope="module", autouse=True)
def seeded_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeededApp]:
    tmp_path: Path = tmp_path_factory.mktemp("conformance")
    database: dict[str, Any] = {"database_url": f"sqlite+aiosqlite:///{tmp_path / 'test.sqlite3'}"}
    db_schema = None
    if TEST_DATABASE_URL:
        db_schema = f"t_{secrets.token_hex(6)}"
        database = {"database_url": TEST_DATABASE_URL, "database_schema": db_schema}
    APP.settings = Settings(
        data_dir=tmp_path / "data",
        admin_token=ADMIN_TOKEN,
        domain="example.com",
        fsync=False,
        gc_interval=3600,
        # Small, so that generated uploads also meet the size limit.
        max_message_size=64 * 1024,
        **database,
    )
    try:
        # The first request builds the runtime and seeds it, on schemathesis's loop.
        response = schema["/health"]["GET"].Case().call()
        assert response.status_code == 200
        assert APP.seed["messages"], "the seed is missing"
        yield APP
    finally:
        # The next request closes the runtime, on the loop it lives on.
        APP.settings = None
        schema["/health"]["GET"].Case().call()
        schemathesis_asgi.shutdown_lifespans()
        assert APP.runtime is None
        if TEST_DATABASE_URL and db_schema:
            _drop_schema(TEST_DATABASE_URL, db_schema)


CONFORMANCE = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
# Run after every other operation, as they remove or move seeded objects; deleting
# the users goes last of all.
MOVES = "PUT /users/{user}/mailboxes/{mailbox}/messages/{message}"
DELETES_USERS = "DELETE /users/{user}"


def _changes(ctx: Any) -> bool:
    return (ctx.operation.method.upper() == "DELETE" or ctx.operation.label == MOVES) and ctx.operation.label != DELETES_USERS


def _deletes_users(ctx: Any) -> bool:
    return ctx.operation.label == DELETES_USERS


def test_seeded_message_conforms() -> None:
    """One request that certainly finds a message, validated the same way."""
    target = APP.seed["messages"][0]
    case = schema["/users/{user}/mailboxes/{mailbox}/messages"]["GET"].Case(
        path_parameters={"user": target["user"], "mailbox": target["mailbox"]}, query={"limit": 250}
    )
    response = case.call(headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["results"], response.text
    case.validate_response(response, headers=AUTH, additional_checks=[no_foreign_objects])


@pytest.mark.parametrize(
    ("path", "method", "parts"),
    [
        ("/users", "GET", {"query": {"query": "a\x00b"}}),
        ("/users", "GET", {"query": {"tags": "a\x00b", "requiredTags": "c"}}),
        ("/addresses", "GET", {"query": {"query": "\x00"}}),
        ("/users", "POST", {"body": {"username": "nul", "password": "secret", "name": "N\x00L"}}),
        ("/users", "POST", {"body": {"username": "nul", "password": "secret", "tags": ["a\x00"]}}),
        ("/users/{user}", "PUT", {"body": {"pubKey": "\x00", "language": "en"}}),
    ],
)
def test_nul_characters_are_refused(path: str, method: str, parts: dict[str, Any]) -> None:
    """Found by this file on PostgreSQL (text cannot hold NUL): a 400, not a 500."""
    parameters = {"user": APP.seed["messages"][0]["user"]} if "{user}" in path else None
    case = schema[path][method].Case(path_parameters=parameters, media_type="application/json" if "body" in parts else None, **parts)
    response = case.call(headers=AUTH)
    assert response.status_code == 400, response.text
    case.validate_response(response, headers=AUTH)


@schema.exclude(_changes).exclude(_deletes_users).parametrize()
@CONFORMANCE
def test_api_conforms(case: schemathesis.Case) -> None:
    case.call_and_validate(additional_checks=[no_foreign_objects])


@schema.include(_changes).parametrize()
@CONFORMANCE
def test_api_conforms_changing(case: schemathesis.Case) -> None:
    case.call_and_validate(additional_checks=[no_foreign_objects])


@schema.include(_deletes_users).parametrize()
@CONFORMANCE
def test_api_conforms_deleting_users(case: schemathesis.Case) -> None:
    case.call_and_validate(additional_checks=[no_foreign_objects])


# Last of the user API's: those that end the session or the account.
USER_ENDS = {"DELETE /api/user", "GET /api/logout", "POST /api/logout", "DELETE /api/api_key"}


def _ends_session(ctx: Any) -> bool:
    return ctx.operation.label in USER_ENDS


@user_schema.exclude(_ends_session).parametrize()
@CONFORMANCE
def test_user_api_conforms(case: schemathesis.Case) -> None:
    case.call_and_validate()


def test_foreign_object_check_catches_a_leak() -> None:
    alice, bob = APP.seed["messages"][0], APP.seed["messages"][-1]
    assert alice["user"] != bob["user"]
    case = schema["/users/{user}/mailboxes/{mailbox}"]["GET"].Case(path_parameters={"user": alice["user"], "mailbox": bob["mailbox"]})
    with pytest.raises(AssertionError, match="another user's mailbox"):
        no_foreign_objects(None, SimpleNamespace(status_code=200), case)
    assert no_foreign_objects(None, SimpleNamespace(status_code=404), case) is None


def test_generated_requests_reached_seeded_objects() -> None:
    """The seed served its purpose: generated requests got past the 404s."""
    assert REACHED["GET /users/{user}"] > 0, REACHED
    below_a_message = sum(n for label, n in REACHED.items() if "{message}" in label)
    assert below_a_message > 0, REACHED
