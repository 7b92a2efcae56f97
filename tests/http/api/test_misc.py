"""/api/health, and the App Store and phone endpoints that this server does not offer."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from postern.serve.runtime import Runtime
from tests.http.api.helpers import Outbox, auth, signed_up


async def test_health_needs_no_key(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_apple_payment_is_refused_clearly(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox) -> None:
    key = await signed_up(api, outbox, "ann@example.org")
    body = {"receipt_data": "TUlJVE9LRU4=", "is_macapp": False}
    assert (await api.post("/api/apple/process_payment", json=body)).status_code == 401
    response = await api.post("/api/apple/process_payment", json=body, headers=auth(key))
    assert response.status_code == 400
    assert response.json() == {"error": "In-app purchases are not enabled on this server"}
    # Configured: still no receipt validation here (no network), and it says so.
    runtime.settings.apple_shared_secret = SecretStr("shared")
    response = await api.post("/api/apple/process_payment", json=body, headers=auth(key))
    assert response.status_code == 501
    assert "not available" in response.json()["error"]
    info = (await api.get("/api/user_info", headers=auth(key))).json()
    assert info["is_premium"] is False


@pytest.mark.parametrize("configured", [False, True])
async def test_phone_reservations(api: httpx.AsyncClient, runtime: Runtime, outbox: Outbox, configured: bool) -> None:
    key = await signed_up(api, outbox, "bob@example.org")
    assert (await api.get("/api/phone/reservations/1")).status_code == 401
    if configured:
        runtime.settings.sms_provider_url = "https://sms.example.net/"
    response = await api.get("/api/phone/reservations/1", headers=auth(key))
    if configured:
        assert response.status_code == 404
        assert response.json() == {"error": "Reservation not found"}
    else:
        assert response.status_code == 400
        assert response.json() == {"error": "Phone numbers are not enabled on this server"}
