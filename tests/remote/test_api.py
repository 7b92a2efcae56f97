"""/api/v1/remote-identities and the admin API's list: the RFC's rendering, bad input,
other users' ids, and the password never in any answer or log line."""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

import httpx
import pytest

from postern.serve.runtime import Runtime
from postern.storage import remote_identities as store
from tests.aliases import Person
from tests.remote.dovecot import Dovecot

PATH = "/api/v1/remote-identities"


def body(dovecot: Dovecot, login: str, password: str, **params: Any) -> dict[str, Any]:
    return {
        "identity_type": "email",
        "identity_id": "ann@example.org",
        "params": {
            "login": login,
            "password": password,
            "mail_protocol": "IMAP",
            "incomming_mail_server": "localhost",
            "mail_port": str(dovecot.imaps),
            "fetch_method": "from_now",
            **params,
        },
    }


async def test_create_tries_the_connection_and_renders_as_the_rfc(
    api: httpx.AsyncClient,
    ann: Person,
    dovecot: Dovecot,
    remote_user: tuple[str, str],
    runtime: Runtime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    login, password = remote_user
    created = await api.post(
        PATH, json=body(dovecot, login, password), headers=ann.headers
    )
    assert created.status_code == 201, created.text
    answer = created.json()
    assert answer["connection_ok"] is True
    assert uuid.UUID(answer["remote_identity_id"])
    assert answer["connected"] is True
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}", answer["last_connection"]
    )
    assert (
        answer["connection_required"] is True
        and answer["cancel_fetch_required"] is False
    )
    assert (
        answer["identity_type"] == "email"
        and answer["identity_id"] == "ann@example.org"
    )
    params = answer["params"]
    assert params["password"] is None and "password" in params
    assert params["incomming_mail_server"] == "localhost" and params[
        "mail_port"
    ] == str(dovecot.imaps)
    assert params["mail_protocol"] == "IMAP" and params["fetch_method"] == "from_now"
    assert (
        params["tls"] == "ssl"
        and params["folders"] == ["INBOX"]
        and params["keep_on_server"] is True
    )

    listed = await api.get(PATH, headers=ann.headers)
    assert listed.status_code == 200
    assert listed.json()["total"] == 1
    assert (
        listed.json()["remote_identities"][0]["remote_identity_id"]
        == answer["remote_identity_id"]
    )
    one = await api.get(f"{PATH}/{answer['remote_identity_id']}", headers=ann.headers)
    assert one.json()["params"] == params

    # Stored encrypted, bound to the row; never in an answer or a log line.
    async with runtime.db.read() as conn:
        row = await store.get(conn, answer["remote_identity_id"])
    assert (
        row is not None and password not in row.secret and row.secret.startswith("v1.")
    )
    for response in (created, listed, one):
        assert password not in response.text
    assert password not in caplog.text


async def test_wrong_password_is_stored_but_not_connected(
    api: httpx.AsyncClient, ann: Person, dovecot: Dovecot, remote_user: tuple[str, str]
) -> None:
    login, _ = remote_user
    created = await api.post(
        PATH, json=body(dovecot, login, "wrong-password"), headers=ann.headers
    )
    assert created.status_code == 201
    answer = created.json()
    assert answer["connection_ok"] is False and answer["connected"] is False
    assert "refused" in answer["last_error"]
    assert "wrong-password" not in created.text


async def test_untrusted_certificate_is_refused(
    api: httpx.AsyncClient,
    ann: Person,
    dovecot: Dovecot,
    remote_user: tuple[str, str],
    runtime: Runtime,
) -> None:
    runtime.remote_identities.connector._context = __import__(
        "ssl"
    ).create_default_context()  # the system's CAs only
    login, password = remote_user
    answer = (
        await api.post(PATH, json=body(dovecot, login, password), headers=ann.headers)
    ).json()
    assert answer["connected"] is False and "certificate" in answer["last_error"]


async def test_starttls_and_pop3(
    api: httpx.AsyncClient, ann: Person, dovecot: Dovecot, remote_user: tuple[str, str]
) -> None:
    login, password = remote_user
    imap = await api.post(
        PATH,
        json=body(dovecot, login, password, tls="starttls", mail_port=dovecot.imap),
        headers=ann.headers,
    )
    assert imap.json()["connected"] is True, imap.text
    pop = await api.post(
        PATH,
        json=body(
            dovecot, login, password, mail_protocol="POP3", mail_port=dovecot.pop3s
        ),
        headers=ann.headers,
    )
    assert pop.json()["connected"] is True, pop.text
    stls = await api.post(
        PATH,
        json=body(
            dovecot,
            login,
            password,
            mail_protocol="pop3",
            tls="starttls",
            mail_port=dovecot.pop3,
        ),
        headers=ann.headers,
    )
    assert stls.json()["connected"] is True, stls.text
    assert stls.json()["params"]["mail_protocol"] == "POP3"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"identity_type": "im"}, "not supported yet"),
        ({"identity_type": "social_identity"}, "not supported yet"),
        ({"identity_type": "fax"}, "identity_type"),
        ({"identity_id": "someone-else@example.net"}, "address of yours"),
        ({"identity_id": "not an address"}, "identity_id"),
        ({"params": None}, "params"),
        ({"params": {"login": "x"}}, "mail_protocol"),
        ({"params.mail_protocol": "SMTP"}, "mail_protocol"),
        ({"params.mail_port": "99999"}, "mail_port"),
        ({"params.mail_port": "abc"}, "mail_port"),
        ({"params.incomming_mail_server": "bad host!"}, "incomming_mail_server"),
        ({"params.incomming_mail_server": ""}, "incomming_mail_server"),
        ({"params.fetch_method": "later"}, "fetch_method"),
        ({"params.tls": "plain"}, "without TLS"),
        ({"params.tls": "none"}, "tls"),
        ({"params.password": None}, "password is required"),
        ({"params.password": "a\r\nb"}, "line breaks"),
        ({"params.login": "x\x00"}, "login"),
        ({"params.folders": []}, "folders"),
        ({"params.poll_interval": 0}, "poll_interval"),
        ({"params.poll_interval": True}, "poll_interval"),
        ({"params.keep_on_server": "yes"}, "keep_on_server"),
        ({"params.colour": "red"}, "not a known parameter"),
        ({"params.auth": "oauth2"}, "oauth_provider"),
        (
            {"params.mail_protocol": "POP3", "params.folders": ["Sent"]},
            "POP3 has only the INBOX",
        ),
        ({"connection_required": "yes"}, "connection_required"),
    ],
)
async def test_bad_input(
    api: httpx.AsyncClient,
    ann: Person,
    dovecot: Dovecot,
    change: dict[str, Any],
    words: str,
) -> None:
    data = body(dovecot, "login", "pw")
    for key, value in change.items():
        if key.startswith("params."):
            data["params"][key[7:]] = value
        else:
            data[key] = value
    answer = await api.post(PATH, json=data, headers=ann.headers)
    assert answer.status_code == 400, answer.text
    assert words in answer.json()["error"]
    assert (await api.get(PATH, headers=ann.headers)).json()["total"] == 0


async def test_not_json_and_no_key(api: httpx.AsyncClient, ann: Person) -> None:
    assert (
        await api.post(
            PATH,
            content=b"[1,2]",
            headers={**ann.headers, "Content-Type": "application/json"},
        )
    ).status_code == 400
    assert (
        await api.post(
            PATH,
            content=b"{",
            headers={**ann.headers, "Content-Type": "application/json"},
        )
    ).status_code == 400
    assert (await api.get(PATH)).status_code == 401
    assert (await api.get(PATH, headers={"Authentication": "wrong"})).status_code == 401


async def test_patch_keeps_the_password_and_others_ids_are_not_found(
    api: httpx.AsyncClient,
    ann: Person,
    bob: Person,
    dovecot: Dovecot,
    remote_user: tuple[str, str],
    runtime: Runtime,
) -> None:
    login, password = remote_user
    created = (
        await api.post(PATH, json=body(dovecot, login, password), headers=ann.headers)
    ).json()
    identity = f"{PATH}/{created['remote_identity_id']}"
    async with runtime.db.read() as conn:
        secret = (await store.get(conn, created["remote_identity_id"])).secret

    # The object sent back as it was read (password null, read-only fields in it).
    echoed = dict(created, connection_required=False)
    echoed.pop("connection_ok")
    patched = await api.patch(identity, json=echoed, headers=ann.headers)
    assert patched.status_code == 200, patched.text
    assert patched.json()["connection_required"] is False
    async with runtime.db.read() as conn:
        assert (await store.get(conn, created["remote_identity_id"])).secret == secret
    tried = await runtime.remote_identities.try_connection(
        await runtime.remote_identities.get(ann.user_id, created["remote_identity_id"])
    )
    assert tried.connected

    changed = await api.patch(
        identity,
        json={
            "params": {"poll_interval": 120, "folders": "all", "keep_on_server": False}
        },
        headers=ann.headers,
    )
    assert (
        changed.json()["params"]["poll_interval"] == 120
        and changed.json()["params"]["folders"] == "all"
    )
    assert (
        await api.patch(
            identity, json={"params": {"mail_port": "x"}}, headers=ann.headers
        )
    ).status_code == 400
    assert (
        await api.patch(identity, json={"identity_type": "im"}, headers=ann.headers)
    ).status_code == 400

    # Bob reaches none of it; unknown and malformed ids are 404 too.
    for path in (
        identity,
        f"{PATH}/{uuid.uuid4()}",
        f"{PATH}/not-a-uuid",
        f"{PATH}/{'x' * 64}",
    ):
        assert (await api.get(path, headers=bob.headers)).status_code == 404
        assert (
            await api.patch(
                path, json={"connection_required": True}, headers=bob.headers
            )
        ).status_code == 404
        assert (await api.delete(path, headers=bob.headers)).status_code == 404
    assert (await api.get(PATH, headers=bob.headers)).json() == {
        "remote_identities": [],
        "total": 0,
    }

    deleted = await api.delete(identity, headers=ann.headers)
    assert deleted.status_code == 200 and deleted.json() == {"deleted": True}
    assert (await api.get(identity, headers=ann.headers)).status_code == 404


async def test_admin_lists_without_secrets(
    api: httpx.AsyncClient,
    client: httpx.AsyncClient,
    ann: Person,
    dovecot: Dovecot,
    remote_user: tuple[str, str],
) -> None:
    login, password = remote_user
    await api.post(PATH, json=body(dovecot, login, password), headers=ann.headers)
    answer = await client.get(f"/users/{ann.user_id}/remote-identities")
    assert answer.status_code == 200, answer.text
    assert (
        answer.json()["total"] == 1
        and answer.json()["results"][0]["params"]["login"] == login
    )
    assert password not in answer.text
    assert (
        await client.get("/users/000000000000000000000000/remote-identities")
    ).status_code == 404
    assert (await api.get(f"/users/{ann.user_id}/remote-identities")).status_code in (
        401,
        403,
    )
