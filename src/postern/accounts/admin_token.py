"""The admin API's access token.

Only its SHA-256 digest is kept (in the database, so every process of a cluster
agrees); the token itself is shown once, when it is created or rotated. A token set
in the configuration (``POSTERN_ADMIN_TOKEN``) takes precedence and is never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from postern.config import Settings
from postern.storage import state
from postern.storage.database import Database

STATE_KEY = "admin_token_sha256"
# How often a failed check may look for a token rotated by another process.
RELOAD_INTERVAL_S = 5.0


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class AdminToken:
    def __init__(self, db: Database, settings: Settings):
        self.db = db
        self.required = settings.admin_auth
        configured = settings.admin_token.get_secret_value() if settings.admin_token else None
        self._configured = bool(configured)
        self._digest: str | None = _digest(configured) if configured else None
        self._loaded_at = 0.0

    async def ensure(self) -> str | None:
        """Load the token's digest; create a token if there is none. Returns a newly
        created token (to be shown once), or None. None either while the admin API
        runs without a token: one made then would never be shown, and the first start
        with the token required makes and shows it."""
        if self._configured or not self.required:
            return None
        async with self.db.write() as conn:
            stored = await state.get_value(conn, STATE_KEY)
            if stored:
                self._digest, self._loaded_at = stored, time.monotonic()
                return None
            token = secrets.token_urlsafe(32)
            await state.set_value(conn, STATE_KEY, _digest(token))
        self._digest, self._loaded_at = _digest(token), time.monotonic()
        return token

    async def rotate(self) -> str:
        token = secrets.token_urlsafe(32)
        async with self.db.write() as conn:
            await state.set_value(conn, STATE_KEY, _digest(token))
        self._digest, self._loaded_at = _digest(token), time.monotonic()
        return token

    async def check(self, token: str) -> bool:
        presented = _digest(token)
        if not self._configured and time.monotonic() - self._loaded_at > RELOAD_INTERVAL_S:
            # `postern token` may have rotated it from another process: re-read it whatever
            # the token presented, so that the old one stops working too, not only after
            # someone presents the new one.
            self._loaded_at = time.monotonic()
            async with self.db.read() as conn:
                self._digest = await state.get_value(conn, STATE_KEY)
        return bool(self._digest) and hmac.compare_digest(presented, self._digest or "")
