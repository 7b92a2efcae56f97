"""Secrets of remote identities: encrypted with the server key and bound to their row
(the identity's id and the column are the AEAD's associated data, so a value copied
to another row or column does not decrypt), and OAuth2 access tokens got from a
refresh token at the provider's token endpoint."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from postern.accounts.server_key import InvalidSignature, ServerKey
from postern.remote.wire import AuthenticationFailed, RemoteError


def seal(key: ServerKey, identity_id: str, column: str, value: str | None) -> str | None:
    if value is None:
        return None
    return key.encrypt(value, context=f"remote identity {identity_id} {column}")


def unseal(key: ServerKey, identity_id: str, column: str, token: str | None) -> str | None:
    if token is None:
        return None
    try:
        return key.decrypt(token, context=f"remote identity {identity_id} {column}")
    except InvalidSignature:
        raise RemoteError("the stored credentials cannot be read with this server key") from None


@dataclass(frozen=True, slots=True)
class OAuthProvider:
    name: str
    client_id: str
    client_secret: str
    token_url: str
    mechanism: str  # XOAUTH2 | OAUTHBEARER


def providers_from(text: str | None) -> dict[str, OAuthProvider]:
    if not text:
        return {}
    data = json.loads(text)
    found = {}
    for name, item in data.items():
        mechanism = str(item.get("mechanism", "XOAUTH2")).upper()
        if mechanism not in ("XOAUTH2", "OAUTHBEARER"):
            raise ValueError(f"OAuth2 provider {name}: mechanism must be XOAUTH2 or OAUTHBEARER")
        found[name] = OAuthProvider(
            name,
            str(item["client_id"]),
            str(item.get("client_secret", "")),
            str(item["token_url"]),
            mechanism,
        )
    return found


@dataclass(frozen=True, slots=True)
class AccessToken:
    token: str
    expires_in: int


async def refresh(provider: OAuthProvider, refresh_token: str, timeout: float) -> AccessToken:
    """A new access token (RFC 6749 section 6); AuthenticationFailed when the provider
    refuses the refresh token (revoked, expired)."""
    body = urllib.parse.urlencode(
        {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": provider.client_id,
            "client_secret": provider.client_secret,
        }
    ).encode()

    def post() -> tuple[int, bytes]:
        request = urllib.request.Request(  # noqa: S310 (the token URL of the operator's provider settings)
            provider.token_url,
            data=body,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (as above)
                return response.status, response.read(1 << 20)
        except urllib.error.HTTPError as error:
            return error.code, error.read(1 << 16)

    try:
        status, raw = await asyncio.to_thread(post)
    except (OSError, ValueError) as error:
        raise RemoteError(f"the token endpoint of {provider.name} cannot be reached: {type(error).__name__}") from None
    try:
        data: Any = json.loads(raw)
    except ValueError:
        data = {}
    if status in (400, 401) or (isinstance(data, dict) and data.get("error") in ("invalid_grant", "unauthorized_client")):
        raise AuthenticationFailed(f"{provider.name} refused the refresh token (sign in again)")
    if status != 200 or not isinstance(data, dict) or not isinstance(data.get("access_token"), str):
        raise RemoteError(f"the token endpoint of {provider.name} answered {status}")
    expires = data.get("expires_in", 3600)
    return AccessToken(
        data["access_token"],
        int(expires) if isinstance(expires, (int, float, str)) and str(expires).isdigit() else 3600,
    )
