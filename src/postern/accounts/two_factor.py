"""Two-factor authentication with TOTP (RFC 6238).

The seed is stored encrypted with the server key, bound to its user. A code is accepted
once: each accepted code's time step is recorded, and a code of that step or an earlier
one is refused afterwards, so a code seen over someone's shoulder cannot be replayed.
Wrong codes count against the shared rate limiter ("mfa").
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Any

import pyotp
import segno
from segno.encoder import DataOverflowError

from postern.accounts.authlog import NO_META, AuthLog, AuthMeta
from postern.accounts.rate_limit import RateLimiter
from postern.accounts.server_key import InvalidSignature, ServerKey
from postern.errors import AuthFailed, Conflict, InvalidInput
from postern.events import CredentialsChanged, EventBus
from postern.storage import two_factor as store
from postern.storage.database import Database
from postern.storage.ids import now_ms
from postern.storage.users import require_user

# Codes from the step before and after the current one are accepted too (clock drift).
VALID_WINDOW = 1


@dataclass(frozen=True, slots=True)
class TotpSetup:
    secret: str  # base32, for manual entry
    otpauth_url: str
    qrcode: str  # a data: URL of a PNG


def normalise_token(token: str) -> str | None:
    """The 6 digits of a code as typed ("123 456" included), or None."""
    digits = token.replace(" ", "").strip()
    return digits if len(digits) == 6 and digits.isascii() and digits.isdigit() else None


def _qrcode(url: str) -> str:
    """A data: URL of a PNG QR code of ``url``, with less error correction when a long
    issuer or address needs the room."""
    for error in ("m", "l"):
        try:
            return segno.make(url, error=error, micro=False, boost_error=False).png_data_uri(scale=4)
        except DataOverflowError:
            continue
    raise InvalidInput("issuer and address are too long for a QR code", field="issuer")


class TwoFactor:
    def __init__(self, db: Database, server_key: ServerKey, limiter: RateLimiter, authlog: AuthLog, bus: EventBus | None = None):
        self.db = db
        self.server_key = server_key
        self.limiter = limiter
        self.authlog = authlog
        # Told when a second factor turns on or off (remembered logins are forgotten).
        self.bus = bus

    def _changed(self, user_id: str, reason: str) -> None:
        if self.bus is not None:
            self.bus.publish([CredentialsChanged(user_id, reason)])

    async def enabled_methods(self, conn: Any, user_id: str) -> list[str]:
        """The second factors the user must give, e.g. ["totp"], inside a transaction."""
        return ["totp"] if await store.totp_enabled(conn, user_id) else []

    async def setup_totp(self, user_id: str, *, issuer: str, label: str, fresh: bool = False, meta: AuthMeta = NO_META) -> TotpSetup:
        """Make (or, unless ``fresh``, reuse) a seed; TOTP is on only once ``enable_totp``
        confirms a code from it."""
        async with self.db.write() as conn:
            await require_user(conn, user_id, lock=True)
            row = await store.get(conn, user_id)
            if row is not None and row.totp_enabled:
                raise Conflict("TOTP 2FA is already enabled for this user", code="TotpEnabled")
            secret = self._secret(user_id, row.totp_secret) if row is not None and row.totp_secret and not fresh else None
            if secret is None:
                secret = pyotp.random_base32()
                await store.set_secret(conn, user_id, self.server_key.encrypt(secret, context="totp:" + user_id), now_ms())
            # Inside the transaction: a code that can not be drawn stores no new seed.
            url = pyotp.TOTP(secret).provisioning_uri(name=label, issuer_name=issuer)
            qrcode = _qrcode(url)
            await self.authlog.record_in(conn, user_id, "setup 2fa totp", "success", meta)
        return TotpSetup(secret, url, qrcode)

    async def enable_totp(self, user_id: str, token: str, meta: AuthMeta = NO_META) -> None:
        async with self.db.read() as conn:
            await require_user(conn, user_id)
            row = await store.get(conn, user_id)
        if row is None or not row.totp_secret:
            raise InvalidInput("TOTP 2FA is not set up for this user", code="TotpNotSetup", field="token")
        if row.totp_enabled:
            raise Conflict("TOTP 2FA is already enabled for this user", code="TotpEnabled")
        if not await self._check(user_id, row.totp_secret, token, meta):
            raise AuthFailed("Invalid authentication token", code="InvalidToken")
        async with self.db.write() as conn:
            await store.enable(conn, user_id, now_ms())
            await self.authlog.record_in(conn, user_id, "enable 2fa totp", "success", meta)
        self._changed(user_id, "2FA enabled")

    async def verify_totp(self, user_id: str, token: str, meta: AuthMeta = NO_META) -> bool:
        """Check a code of a user whose TOTP is on. Raises RateLimited after too many
        wrong codes; records the check in the authentication log."""
        async with self.db.read() as conn:
            await require_user(conn, user_id)
            row = await store.get(conn, user_id)
        if row is None or not row.totp_enabled or not row.totp_secret:
            raise InvalidInput("TOTP 2FA is not enabled for this user", code="TotpNotEnabled", field="token")
        ok = await self._check(user_id, row.totp_secret, token, meta)
        await self.authlog.record(user_id, "check 2fa totp", "success" if ok else "fail", meta)
        return ok

    async def _check(self, user_id: str, encrypted_secret: str, token: str, meta: AuthMeta) -> bool:
        failures = await self.limiter.check("mfa", ip=meta.ip, account=user_id)
        step = self._matching_step(self._secret(user_id, encrypted_secret), token)
        accepted = False
        if step is not None:
            async with self.db.write() as conn:
                accepted = await store.use_step(conn, user_id, step)
        # The limiter's counters may live in this database: never inside its transaction.
        if accepted:
            if failures:
                await self.limiter.succeeded("mfa", account=user_id)
        else:
            await self.limiter.failed("mfa", ip=meta.ip, account=user_id)
        return accepted

    @staticmethod
    def _matching_step(secret: str, token: str) -> int | None:
        code = normalise_token(token)
        if code is None:
            return None
        totp = pyotp.TOTP(secret)
        now = time.time()
        current = totp.timecode(now)
        for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
            if hmac.compare_digest(totp.generate_otp(step), code):
                return step
        return None

    def _secret(self, user_id: str, encrypted: str) -> str:
        try:
            return self.server_key.decrypt(encrypted, context="totp:" + user_id)
        except InvalidSignature:
            # The server key changed since setup: the seed is lost, and no code can pass.
            raise AuthFailed("TOTP secret can not be read with this server's key", code="TotpUnreadable") from None

    async def disable_totp(self, user_id: str, meta: AuthMeta = NO_META) -> None:
        async with self.db.write() as conn:
            await require_user(conn, user_id, lock=True)
            await store.clear(conn, user_id)
            await self.authlog.record_in(conn, user_id, "disable 2fa totp", "success", meta)
        self._changed(user_id, "2FA disabled")

    async def disable_all(self, user_id: str, meta: AuthMeta = NO_META, *, conn: Any = None) -> None:
        """Turn every second factor off (inside ``conn``'s transaction when given)."""
        if conn is not None:
            await store.clear(conn, user_id)
            await self.authlog.record_in(conn, user_id, "disable 2fa", "success", meta)
            return
        async with self.db.write() as own:
            await require_user(own, user_id, lock=True)
            await self.disable_all(user_id, meta, conn=own)
        self._changed(user_id, "2FA disabled")
