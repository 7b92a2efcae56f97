"""Header injection through user values (issue 14, item 2), over the real doors: an
alias's name with a line break is refused by the user API (400 naming the field), and
a name that is already stored with one (written before the check existed) still gives
a reply with exactly one From, the name folded into it and nothing injected."""

from __future__ import annotations

import email
import email.policy
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import update

from postern.config import Settings
from postern.http.app import create_app
from postern.serve.runtime import Runtime
from postern.storage.schema import aliases
from tests.aliases.helpers import make_alias
from tests.aliases.test_send_as_alias import contact_of, hosted_user, submit
from tests.conftest import MailDoors
from tests.helpers import make_message
from tests.sink import SmtpSink

INJECTED = "The Shop\r\nFrom: boss@bank.example\r\nBcc: spy@evil.example"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.alias_domains = ["alias.test"]
    return settings


@pytest.fixture
async def api(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://postern.test"
    ) as client:
        yield client


@pytest.mark.parametrize(
    "name",
    [INJECTED, "a\nb", "a\rb", "tab\there", "nel\x85x", "sep\u2028x", "bell\x07"],
)
async def test_alias_name_with_a_line_break_is_refused(
    runtime: Runtime, api: httpx.AsyncClient, name: str
) -> None:
    me = await hosted_user(runtime, "me")
    alias_id = await make_alias(runtime, me, "shop@alias.test")
    headers = {"Authentication": await runtime.api_keys.create(me.user_id, "test")}
    response = await api.put(
        f"/api/aliases/{alias_id}", json={"name": name}, headers=headers
    )
    assert response.status_code == 400, response.text
    assert "name" in response.json()["error"]
    response = await api.patch("/api/user_info", json={"name": name}, headers=headers)
    assert response.status_code == 400, response.text
    assert "name" in response.json()["error"]
    # A plain name is fine, and what is stored is what was given.
    response = await api.put(
        f"/api/aliases/{alias_id}", json={"name": "The Shop, Ltd. ☕"}, headers=headers
    )
    assert response.status_code == 200, response.text


async def test_contact_with_a_line_break_is_refused(
    runtime: Runtime, api: httpx.AsyncClient
) -> None:
    me = await hosted_user(runtime, "me")
    alias_id = await make_alias(runtime, me, "shop@alias.test")
    headers = {"Authentication": await runtime.api_keys.create(me.user_id, "test")}
    response = await api.post(
        f"/api/aliases/{alias_id}/contacts",
        json={"contact": '"John\r\nBcc: x@evil.example" <john@wick.test>'},
        headers=headers,
    )
    assert response.status_code == 400, response.text
    assert "contact" in response.json()["error"]


async def test_admin_user_name_with_a_line_break_is_refused(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/users",
        json={
            "username": "eve",
            "password": "correct horse battery",
            "name": "Eve\r\nBcc: x@evil.example",
        },
    )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "InputValidationError"
    assert "name" in str(response.json())


async def test_stored_name_with_a_line_break_gives_one_from(
    runtime: Runtime, mail_doors: MailDoors, sink: SmtpSink
) -> None:
    sink.serve_domain("wick.test")
    me = await hosted_user(runtime, "me")
    alias_id = await make_alias(runtime, me, "shop@alias.test")
    async with runtime.db.write() as conn:  # written before the API refused it
        await conn.execute(
            update(aliases).where(aliases.c.id == alias_id).values(name=INJECTED)
        )
    john = await contact_of(runtime, me, alias_id)
    raw = make_message(From="me@example.com", To=john.reverse_alias, body="hello\r\n")
    replies = await submit(
        mail_doors.submission, "me", "me@example.com", [john.reverse_alias], raw
    )
    assert replies["data"][0] == 250, replies
    [reply] = await sink.wait_for(1)
    head = reply.data.split(b"\r\n\r\n", 1)[0]
    lines = head.split(b"\r\n")
    assert sum(1 for line in lines if line.lower().startswith(b"from:")) == 1, head
    assert not any(
        line.lower().startswith((b"bcc:", b"from: boss")) for line in lines
    ), head
    message = email.message_from_bytes(reply.data, policy=email.policy.default)
    [sender] = message["From"].addresses
    assert sender.addr_spec == "shop@alias.test"
    assert (
        sender.display_name == "The Shop From: boss@bank.example Bcc: spy@evil.example"
    )
    assert message["Bcc"] is None
