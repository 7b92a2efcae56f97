"""An alias forward delivered to its owner's own hosted address goes through the
owner's filters (filed where they say), but never gets the owner's autoreply: that
would give the owner's real address away to the alias's contact."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from postern.config import Settings
from postern.serve.runtime import Runtime
from postern.storage.schema import outbound
from tests.aliases.helpers import make_alias, make_user, send
from tests.helpers import make_message
from tests.rules.test_filters_delivery import add_filter, make_folder, messages


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.alias_domains = ["alias.test"]
    return settings


async def test_local_alias_copy_is_filtered_without_autoreply(runtime: Runtime, client: httpx.AsyncClient, mail_doors: Any) -> None:
    me = await make_user(runtime, "me", mailboxes=["box@example.com"])
    other = await make_user(runtime, "other", address="box@example.com")
    await make_alias(runtime, me, "a1@alias.test")
    shop = await make_folder(client, other.user_id, "Shop")
    await add_filter(client, other.user_id, {"to": "a1@alias.test", "subject": "order"}, {"mailbox": shop, "flag": True})
    response = await client.put(f"/users/{other.user_id}/autoreply", json={"status": True, "subject": "Away", "text": "away"})
    assert response.status_code == 200, response.text
    replies = await send(mail_doors.smtp, "john@wick.com", ["a1@alias.test"], make_message(subject="Your order", From="john@wick.com", To="a1@alias.test"))
    assert all(code == 250 for code, _ in replies.values()), replies
    [filed] = await messages(client, other.user_id, "Shop")
    assert filed["subject"] == "Your order" and filed["flagged"] is True
    assert await messages(client, other.user_id, "INBOX") == []
    async with runtime.db.read() as conn:
        assert list(await conn.execute(select(outbound))) == []
