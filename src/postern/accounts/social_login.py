"""Sign-in with Google or Facebook for the user API (``/api/auth/google``,
``/api/auth/facebook``): off unless the operator configures the provider.

A verifier turns the access token an app got from the provider into the email the
provider vouches for. The real ones ask the provider over HTTPS (certificates
verified) and check that the token was issued to this server's own client or app;
tests and other deployments inject their own (``Verifier``).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

from postern.config import Settings

TIMEOUT_S = 10.0
PROVIDERS = {"google": "Google", "facebook": "Facebook"}


@dataclass(frozen=True, slots=True)
class SocialIdentity:
    email: str | None
    name: str | None = None


class InvalidSocialToken(Exception):
    pass


class Verifier(Protocol):
    async def verify(self, token: str) -> SocialIdentity:
        """The identity behind ``token``, or InvalidSocialToken."""


def _get_json(url: str) -> Any:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 (https only)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S, context=ssl.create_default_context()) as response:  # noqa: S310 (https only)
            return json.loads(response.read(1 << 20))
    except urllib.error.HTTPError as error:
        raise InvalidSocialToken(f"the provider refused the token ({error.code})") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise InvalidSocialToken(f"the provider could not be asked: {error}") from None


async def get_json(url: str) -> Any:
    return await asyncio.to_thread(_get_json, url)


class GoogleVerifier:
    """An OAuth access token, checked at Google's tokeninfo endpoint: it must have been
    issued to ``client_id`` and carry a verified email."""

    def __init__(self, client_id: str):
        self.client_id = client_id

    async def verify(self, token: str) -> SocialIdentity:
        info = await get_json("https://oauth2.googleapis.com/tokeninfo?" + urlencode({"access_token": token}))
        if not isinstance(info, dict) or self.client_id not in (info.get("aud"), info.get("azp")):
            raise InvalidSocialToken("the token was not issued to this server")
        if str(info.get("email_verified", "")).lower() != "true":
            return SocialIdentity(None)
        return SocialIdentity(info.get("email"), None)


class FacebookVerifier:
    """A user access token, checked with Graph API's debug_token (issued to our app,
    valid), then asked for the user's name and email."""

    def __init__(self, app_id: str, app_secret: str):
        self.app_id = app_id
        self.app_secret = app_secret

    async def verify(self, token: str) -> SocialIdentity:
        debug = await get_json(
            "https://graph.facebook.com/debug_token?"
            + urlencode({"input_token": token, "access_token": f"{self.app_id}|{self.app_secret}"})
        )
        data = debug.get("data", {}) if isinstance(debug, dict) else {}
        if not data.get("is_valid") or str(data.get("app_id")) != self.app_id:
            raise InvalidSocialToken("the token was not issued to this server")
        me = await get_json("https://graph.facebook.com/me?" + urlencode({"fields": "id,name,email", "access_token": token}))
        if not isinstance(me, dict):
            raise InvalidSocialToken("unexpected answer")
        return SocialIdentity(me.get("email"), me.get("name"))


def verifiers_from(settings: Settings) -> dict[str, Verifier]:
    verifiers: dict[str, Verifier] = {}
    if settings.google_client_id:
        verifiers["google"] = GoogleVerifier(settings.google_client_id)
    if settings.facebook_app_id and settings.facebook_app_secret:
        verifiers["facebook"] = FacebookVerifier(settings.facebook_app_id, settings.facebook_app_secret.get_secret_value())
    return verifiers
