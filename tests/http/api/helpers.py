"""Helpers the user API tests share."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import httpx
from postern.serve.runtime import Runtime

PASSWORD = "correct horse battery"


@dataclass
class Sent:
    user_id: str
    to: str
    subject: str
    text: str

    @property
    def code(self) -> str:
        match = re.search(r"code is:? (\d{6})", self.text)
        assert match, self.text
        return match.group(1)


@dataclass
class Outbox:
    runtime: Runtime
    sent: list[Sent] = field(default_factory=list)

    async def all(self) -> list[Sent]:
        await self.runtime.registration.settle()
        return self.sent

    async def last_to(self, to: str) -> Sent:
        found = [m for m in await self.all() if m.to == to]
        assert found, f"no mail to {to}: {self.sent}"
        return found[-1]


async def register(api: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    response = await api.post("/api/auth/register", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return response


async def register_active(api: httpx.AsyncClient, outbox: Outbox, email: str, password: str = PASSWORD) -> None:
    await register(api, email, password)
    code = (await outbox.last_to(email)).code
    response = await api.post("/api/auth/activate", json={"email": email, "code": code})
    assert response.status_code == 200, response.text


async def login(api: httpx.AsyncClient, email: str, password: str = PASSWORD, device: str = "test device") -> dict[str, Any]:
    response = await api.post("/api/auth/login", json={"email": email, "password": password, "device": device})
    assert response.status_code == 200, response.text
    return response.json()


async def signed_up(api: httpx.AsyncClient, outbox: Outbox, email: str, password: str = PASSWORD) -> str:
    """Register, activate and log in; the API key."""
    await register_active(api, outbox, email, password)
    key = (await login(api, email, password))["api_key"]
    assert key
    return key


def auth(key: str) -> dict[str, str]:
    return {"Authentication": key}
