"""Signing in to the user API: password (``/api/auth/login``), the TOTP second step
(``/api/auth/mfa``) and a provider's token (``/api/auth/google``, ``/facebook``).

A wrong email and a wrong password get one answer, after the same work (a password
verify against a decoy hash for unknown emails); failures count against the shared
rate limiter's login policy (per IP and account, the account whatever the email's
spelling: ``RateLimiter.check_login``), never inside a write
transaction (the database limiter opens its own).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Row

from postern.accounts.api_keys import ApiKeys
from postern.accounts.authlog import NO_META, AuthLog, AuthMeta
from postern.accounts.rate_limit import RateLimiter, canonical_login, is_plain_login, login_account
from postern.accounts.registration import NotActivated, Registration
from postern.accounts.server_key import InvalidSignature, ServerKey
from postern.accounts.social_login import PROVIDERS, InvalidSocialToken, Verifier
from postern.accounts.two_factor import TwoFactor
from postern.errors import Conflict, InvalidInput
from postern.storage import users as user_store
from postern.storage.database import Database

MFA_TTL_S = 300
WRONG_LOGIN = "Email or password incorrect"


@dataclass(frozen=True, slots=True)
class SignedIn:
    name: str
    email: str
    mfa_enabled: bool
    mfa_key: str  # "" unless the second step is needed
    api_key: str  # "" while the second step is needed


def display_email(user: Row) -> str:
    return user.email or user.address or user.username


class UserLogin:
    def __init__(
        self,
        *,
        db: Database,
        registration: Registration,
        two_factor: TwoFactor,
        api_keys: ApiKeys,
        server_key: ServerKey,
        limiter: RateLimiter,
        authlog: AuthLog,
        verifiers: dict[str, Verifier],
    ):
        self.db = db
        self.registration = registration
        self.passwords = registration.accounts.passwords
        self.two_factor = two_factor
        self.api_keys = api_keys
        self.server_key = server_key
        self.limiter = limiter
        self.authlog = authlog
        self.verifiers = verifiers

    async def login(self, email: str, password: str, device: str, meta: AuthMeta = NO_META) -> SignedIn:
        # One spelling per address (see rate_limit.is_plain_login); the attempt counts
        # against the account it names, whatever the spelling.
        plain = is_plain_login(email)
        user = await self.registration.find(email if plain else canonical_login(email))
        ticket = await self.limiter.check_login(login_account(user.id if user else None, email), ip=meta.ip)
        ok = await self.passwords.verify(user.password_hash if user is not None else None, password) and plain
        if user is None or not ok:
            await self.limiter.login_failed(ticket)
            if user is not None:
                await self.authlog.record(user.id, "authentication", "fail", meta)
            raise InvalidInput(WRONG_LOGIN, code="AuthFailed")
        await self.limiter.login_succeeded(ticket)
        await self.registration.accounts.rehash_if_needed(user, password)
        self._check_usable(user)
        return await self._signed_in(user, device, meta)

    @staticmethod
    def _check_usable(user: Row) -> None:
        if user.disabled:
            raise InvalidInput("Account disabled", code="UserDisabled")
        if not user.activated:
            raise NotActivated("Please check your inbox for the activation email")

    async def _signed_in(self, user: Row, device: str, meta: AuthMeta) -> SignedIn:
        async with self.db.read() as conn:
            methods = await self.two_factor.enabled_methods(conn, user.id)
        name, email = user.name or "", display_email(user)
        if "totp" in methods:
            await self.authlog.record(user.id, "authentication", "success", meta, require2fa="totp")
            mfa_key = self.server_key.sign(user.id, purpose="mfa", ttl_s=MFA_TTL_S)
            return SignedIn(name, email, True, mfa_key, "")
        api_key = await self._new_key(user, device, meta)
        return SignedIn(name, email, False, "", api_key)

    async def _new_key(self, user: Row, device: str, meta: AuthMeta) -> str:
        async with self.db.write() as conn:
            api_key = await self.api_keys.create(user.id, device, conn=conn)
            await self.authlog.record_in(conn, user.id, "authentication", "success", meta, device=device[:256])
        return api_key

    async def mfa(self, mfa_token: str, mfa_key: str, device: str, meta: AuthMeta = NO_META) -> SignedIn:
        try:
            user_id = self.server_key.unsign(mfa_key, purpose="mfa")
        except InvalidSignature:
            raise InvalidInput("Invalid mfa_key", field="mfa_key") from None
        async with self.db.read() as conn:
            user = await user_store.get_user(conn, user_id)
        if user is None or user.disabled or not user.activated:
            raise InvalidInput("Invalid mfa_key", field="mfa_key")
        try:
            ok = await self.two_factor.verify_totp(user_id, mfa_token, meta)
        except InvalidInput:  # TOTP was turned off meanwhile
            raise InvalidInput("Invalid mfa_key", field="mfa_key") from None
        if not ok:
            raise InvalidInput("Wrong TOTP Token", field="mfa_token")
        api_key = await self._new_key(user, device, meta)
        return SignedIn(user.name or "", display_email(user), True, "", api_key)

    async def social(self, provider: str, token: str, device: str, meta: AuthMeta = NO_META) -> SignedIn:
        label = PROVIDERS[provider]
        verifier = self.verifiers.get(provider)
        if verifier is None:
            raise InvalidInput(f"{label} login is not configured on this server", code="NotConfigured")
        await self.limiter.check("login", ip=meta.ip)
        try:
            identity = await verifier.verify(token)
        except InvalidSocialToken:
            await self.limiter.failed("login", ip=meta.ip)
            raise InvalidInput(f"The {label} token is invalid", field=f"{provider}_token") from None
        if not identity.email:
            raise InvalidInput(f"Cannot get a verified email from {label}", field=f"{provider}_token")
        user = await self.registration.by_email(identity.email)
        if user is None:
            try:
                await self.registration.create_verified(identity.email, identity.name, meta)
            except Conflict:
                pass  # created meanwhile, or the email is another account's username
            user = await self.registration.by_email(identity.email)
            if user is None:
                raise InvalidInput(f"This {label} account can not be used here", field=f"{provider}_token")
        elif not user.activated and not user.disabled:
            # The provider proved the email: as good as the activation code.
            await self.registration.activate_verified(user, meta)
            user = await self.registration.by_email(identity.email) or user
        self._check_usable(user)
        return await self._signed_in(user, device, meta)
