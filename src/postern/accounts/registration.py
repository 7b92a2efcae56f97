"""Accounts of the user API (SimpleLogin): registration, activation by a mailed code,
and password reset by a mailed code.

A registered account is a normal user (it shows in the admin API's ``/users``) whose
username is its normalised email, kept in ``users.email``/``email_key`` and never as a
hosted address: registering bob@gmail.com must not make postern accept mail for it.
It starts inactive, with its email as its first (default, unverified) mailbox;
activation verifies that mailbox.

Codes are 6 digits from ``secrets``, stored as a keyed digest bound to their user,
compared with ``hmac.compare_digest``, valid for an hour; the third wrong guess kills
a code (410 until a new one is asked for). Answers never tell whether an email has an
account: register, reactivate and forgot_password answer the same either way, and
mail is composed and sent in the background so that their timing does not tell
either.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

from sqlalchemy.engine import Row

from postern.accounts.addressing import NormalisedAddress, normalise_address
from postern.accounts.api_keys import ApiKeys
from postern.accounts.authlog import NO_META, AuthLog, AuthMeta
from postern.accounts.rate_limit import RateLimiter
from postern.accounts.server_key import InvalidSignature, ServerKey
from postern.accounts.service import Accounts, NewUser
from postern.config import Settings
from postern.errors import Conflict, DomainError, Forbidden, InvalidInput
from postern.storage import account_codes as code_store
from postern.storage import mailboxes as mailbox_store
from postern.storage import users as user_store
from postern.storage.database import Database
from postern.storage.ids import new_id, now_ms

log = logging.getLogger("postern.registration")

CODE_TTL_MS = 3600 * 1000
MAX_TRIES = 3
ACTIVATE = "activate"
RESET = "reset_password"
WRONG_CODE = "Wrong email or code"


class AccountMail(Protocol):
    """How the accounts room sends a user its codes and notices (activation, password
    reset): ``delivery.system_mail.SystemMail`` fills it in, so that accounts does not
    import delivery (the arrow points from delivery to accounts)."""

    async def send(self, *, user_id: str, to: str, subject: str, text: str) -> None: ...


class CodeExhausted(DomainError):
    """Too many wrong guesses: the code is dead until a new one is asked for (410)."""

    code = "TooManyTries"


class NotActivated(DomainError):
    """The password is right but the account waits for its activation code (422)."""

    code = "NotActivated"


class RegistrationClosed(Forbidden):
    code = "RegistrationClosed"


def normalise_email(email: str) -> NormalisedAddress | None:
    try:
        return normalise_address(email, "email")
    except InvalidInput:
        return None


def new_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


def contact_email(user: Row) -> str | None:
    """Where account mail for ``user`` goes: its email (ASCII domain), else its main
    hosted address."""
    return user.email_key or user.address


@dataclass(frozen=True, slots=True)
class _Outcome:
    result: str  # ok, wrong, expired, exhausted
    user_id: str | None = None


class Registration:
    def __init__(
        self,
        *,
        db: Database,
        settings: Settings,
        accounts: Accounts,
        server_key: ServerKey,
        limiter: RateLimiter,
        authlog: AuthLog,
        api_keys: ApiKeys,
        mail: AccountMail,
    ):
        self.db = db
        self.settings = settings
        self.accounts = accounts
        self.server_key = server_key
        self.limiter = limiter
        self.authlog = authlog
        self.api_keys = api_keys
        self.mail = mail
        self._background: set[asyncio.Task[None]] = set()

    # Background mail ---------------------------------------------------------------

    def _later(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(self._run(work))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    async def _run(work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except Exception:
            log.exception("sending account mail failed")

    async def settle(self) -> None:
        """Wait for the mail started by earlier requests (tests, shutdown)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    # Lookups ------------------------------------------------------------------------

    async def by_email(self, email: str) -> Row | None:
        """The account registered with this email (``users.email_key``)."""
        normalised = normalise_email(email)
        if normalised is None:
            return None
        async with self.db.read() as conn:
            return await user_store.get_user_by_email_key(conn, normalised.key)

    async def find(self, login: str) -> Row | None:
        """An account by its email, else by username or hosted address (users made by
        the operator use the user API with those)."""
        return await self.by_email(login) or await self.accounts.find_login(login)

    # Codes --------------------------------------------------------------------------

    def _digest(self, user_id: str, code: str, purpose: str) -> str:
        return self.server_key.digest(f"{user_id}:{code}", purpose=purpose)

    async def _issue_code(self, user_id: str, purpose: str) -> str:
        code = new_code()
        created = now_ms()
        async with self.db.write() as conn:
            await code_store.delete_for(conn, user_id, purpose)
            await code_store.insert(
                conn,
                {
                    "id": new_id(),
                    "user_id": user_id,
                    "purpose": purpose,
                    "code_digest": self._digest(user_id, code, purpose),
                    "attempts": 0,
                    "created_ms": created,
                    "expires_ms": created + CODE_TTL_MS,
                },
            )
        return code

    async def _use_code(self, conn: Any, user_id: str, purpose: str, code: str) -> str:
        """Check ``code`` inside the caller's write transaction; a right one is used
        up, a wrong one counted. Returns ok, wrong, expired or exhausted."""
        row = await code_store.latest(conn, user_id, purpose)
        if row is None:
            return "wrong"
        if row.attempts >= MAX_TRIES:
            return "exhausted"
        try:
            matches = hmac.compare_digest(row.code_digest, self._digest(user_id, code, purpose))
        except UnicodeError:
            matches = False
        if row.expires_ms <= now_ms():
            # "Expired" only to whoever knows the code: others learn nothing from it.
            return "expired" if matches else "wrong"
        if not matches:
            attempts = await code_store.add_attempt(conn, row.id)
            return "exhausted" if attempts >= MAX_TRIES else "wrong"
        await code_store.delete_for(conn, user_id, purpose)
        return "ok"

    @staticmethod
    def _raise_for(result: str, what: str) -> None:
        if result == "exhausted":
            raise CodeExhausted(f"Too many wrong tries: ask for a new {what}")
        if result == "expired":
            raise InvalidInput(f"This {what} has expired: ask for a new one", code="CodeExpired")
        if result != "ok":
            raise InvalidInput(WRONG_CODE, code="WrongCode")

    async def expire_codes(self) -> int:
        async with self.db.write() as conn:
            return await code_store.delete_expired(conn, now_ms())

    # Mail ---------------------------------------------------------------------------

    async def _mail_activation(self, user_id: str, to: str) -> None:
        code = await self._issue_code(user_id, ACTIVATE)
        text = (
            "Hello,\n\n"
            f"Your activation code is: {code}\n\n"
            "Enter it in the app to activate your account. It is valid for one hour.\n\n"
            "If you did not create an account, you can ignore this message.\n"
        )
        await self.mail.send(user_id=user_id, to=to, subject=f"Your activation code is {code}", text=text)

    async def _mail_existing(self, user_id: str, to: str) -> None:
        text = (
            "Hello,\n\n"
            "Someone (perhaps you) tried to create an account with this email address,\n"
            "which already has one. Nothing was changed.\n\n"
            "If it was you, sign in instead, or ask for a password reset if you forgot\n"
            "your password. Otherwise, you can ignore this message.\n"
        )
        await self.mail.send(user_id=user_id, to=to, subject="You already have an account", text=text)

    async def _mail_reset(self, user_id: str, to: str) -> None:
        code = await self._issue_code(user_id, RESET)
        token = self.server_key.sign(user_id, purpose=RESET, ttl_s=CODE_TTL_MS // 1000)
        link = f"{self.settings.resolved_public_url}/reset_password?{urlencode({'token': token, 'code': code})}"
        text = (
            "Hello,\n\n"
            "Someone (perhaps you) asked to reset the password of your account.\n\n"
            f"Your reset code is: {code}\n\n"
            f"Or follow this link:\n{link}\n\n"
            "The code is valid for one hour. If you did not ask for it, you can ignore\n"
            "this message: your password stays as it is.\n"
        )
        await self.mail.send(user_id=user_id, to=to, subject="Reset your password", text=text)

    # Register, activate, reactivate ------------------------------------------------

    async def register(self, email: str, password: str, meta: AuthMeta = NO_META) -> None:
        if not self.settings.registration:
            raise RegistrationClosed("Registration is closed on this server")
        await self.limiter.attempt("register", ip=meta.ip, account=email)
        normalised = normalise_email(email)
        if normalised is None:
            raise InvalidInput(f"{email} is not a valid email address", field="email")
        if len(normalised.key) > 128:
            raise InvalidInput("The email address is too long (at most 128 characters)", field="email")
        existing = await self._by_key_or_username(normalised.key)
        if existing is None:
            await self._check_not_forwarded(normalised)
            try:
                user_id = await self.accounts.create_user(
                    NewUser(username=normalised.key, password=password, empty_address=True, email=normalised.display, activated=False)
                )
            except Conflict:
                # Lost a race with another registration of this email, or a username
                # taken otherwise: answered as for any existing account below.
                existing = await self._by_key_or_username(normalised.key)
                if existing is None:
                    raise
            else:
                async with self.db.write() as conn:
                    await self._ensure_mailbox(conn, user_id, normalised, verified=False)
                    await self.authlog.record_in(conn, user_id, "register", "success", meta)
                self._later(self._mail_activation(user_id, normalised.key))
                return
        # The same work as a registration (a password hash) and the same answer.
        await self.accounts.passwords.hash(password)
        if existing.activated or existing.disabled:
            self._later(self._mail_existing(existing.id, normalised.key))
        else:
            self._later(self._mail_activation(existing.id, normalised.key))

    async def _check_not_forwarded(self, email: NormalisedAddress) -> None:
        """InvalidInput when postern itself forwards mail to ``email`` (an alias, a
        deleted alias, a reverse alias, an address on a domain of aliases): the
        activation code would go to whoever the alias forwards to. The rule of the
        user API's mailboxes (``mailboxes.refusal``): the registration email is the
        account's first mailbox. (A hosted address is its owner's account: answered
        as an existing one, above.)"""
        alias_domains = [*self.settings.resolved_alias_domains, self.settings.resolved_reverse_alias_domain]
        async with self.db.read() as conn:
            reason = await mailbox_store.refusal(conn, email.key, email.key.rpartition("@")[2], alias_domains=alias_domains)
        if reason is not None:
            raise InvalidInput(f"{email.display} {reason}: register with the address of a mailbox of your own", field="email")

    async def _by_key_or_username(self, key: str) -> Row | None:
        """The account this email already belongs to: as its email, its username, or
        one of its hosted addresses (whose owner signs in with it already; an account
        named after someone's address would take over logins by that address)."""
        async with self.db.read() as conn:
            return (
                await user_store.get_user_by_email_key(conn, key)
                or await user_store.get_user_by_username(conn, key)
                or await user_store.get_user_by_address_key(conn, key)
            )

    @staticmethod
    async def _ensure_mailbox(conn: Any, user_id: str, email: NormalisedAddress, *, verified: bool) -> None:
        row = await mailbox_store.get_by_email_key(conn, user_id, email.key)
        if row is None:
            await mailbox_store.insert(
                conn,
                {
                    "user_id": user_id,
                    "email": email.display,
                    "email_key": email.key,
                    "verified": verified,
                    "is_default": not await mailbox_store.has_default(conn, user_id),
                    "created_ms": now_ms(),
                },
            )
        elif verified and not row.verified:
            await mailbox_store.set_verified(conn, row.id)

    async def activate(self, email: str, code: str, meta: AuthMeta = NO_META) -> None:
        await self.limiter.check("activate", ip=meta.ip, account=email)
        normalised = normalise_email(email)
        result = "wrong"
        if normalised is not None:
            async with self.db.write() as conn:
                user = await user_store.get_user_by_email_key(conn, normalised.key)
                if user is not None and not user.activated:
                    result = await self._use_code(conn, user.id, ACTIVATE, code.replace(" ", ""))
                    if result == "ok":
                        await self._activate_in(conn, user, meta)
        if result == "ok":
            await self.limiter.succeeded("activate", account=email)
        else:
            await self.limiter.failed("activate", ip=meta.ip, account=email)
        self._raise_for(result, "activation code")

    async def _activate_in(self, conn: Any, user: Row, meta: AuthMeta) -> None:
        await user_store.update_user(conn, user.id, {"activated": True})
        if user.email:
            await self._ensure_mailbox(conn, user.id, normalise_address(user.email, "email"), verified=True)
        await self.authlog.record_in(conn, user.id, "account activated", "success", meta)

    async def activate_verified(self, user: Row, meta: AuthMeta = NO_META) -> None:
        """Activate an account whose email was proven otherwise (a social login)."""
        async with self.db.write() as conn:
            await code_store.delete_for(conn, user.id, ACTIVATE)
            await self._activate_in(conn, user, meta)

    async def create_verified(self, email: str, name: str | None, meta: AuthMeta = NO_META) -> str:
        """An active account without a password for an email a provider vouched for."""
        normalised = normalise_email(email)
        if normalised is None or len(normalised.key) > 128:
            raise InvalidInput("The provider gave no usable email address", field="email")
        user_id = await self.accounts.create_user(
            NewUser(username=normalised.key, password=None, empty_address=True, email=normalised.display, name=name or None)
        )
        async with self.db.write() as conn:
            await self._ensure_mailbox(conn, user_id, normalised, verified=True)
            await self.authlog.record_in(conn, user_id, "register", "success", meta)
        return user_id

    async def reactivate(self, email: str, meta: AuthMeta = NO_META) -> None:
        await self.limiter.attempt("send_code", ip=meta.ip, account=email)
        user = await self.by_email(email)
        if user is not None and not user.activated and not user.disabled and user.email_key:
            self._later(self._mail_activation(user.id, user.email_key))

    # Password reset -----------------------------------------------------------------

    async def forgot_password(self, email: str, meta: AuthMeta = NO_META) -> None:
        await self.limiter.attempt("send_code", ip=meta.ip, account=email)
        user = await self.find(email)
        to = contact_email(user) if user is not None else None
        if user is not None and to and not user.disabled:
            self._later(self._mail_reset(user.id, to))

    async def reset_password(self, *, email: str | None, token: str | None, code: str, password: str, meta: AuthMeta = NO_META) -> None:
        user_id: str | None = None
        if token:
            try:
                user_id = self.server_key.unsign(token, purpose=RESET)
            except InvalidSignature:
                raise InvalidInput("This reset link is invalid or has expired: ask for a new one", field="token") from None
            account = user_id
        elif email:
            account = email
        else:
            raise InvalidInput("email or token is required", field="email")
        await self.limiter.check("activate", ip=meta.ip, account=account)
        if user_id is None:
            user = await self.find(account)
            user_id = user.id if user is not None else None
        # Hashed whether or not the account exists, before the write transaction.
        password_hash = await self.accounts.passwords.hash(password)
        result = "wrong"
        if user_id is not None:
            async with self.db.write() as conn:
                user = await user_store.get_user(conn, user_id, for_update=True)
                if user is not None and not user.disabled:
                    result = await self._use_code(conn, user_id, RESET, code.replace(" ", ""))
                    if result == "ok":
                        await user_store.update_user(conn, user_id, {"password_hash": password_hash, "require_password_change": False})
                        revoked = await self.api_keys.revoke_all(conn, user_id)
                        await self.authlog.record_in(conn, user_id, "password reset", "success", meta, revokedApiKeys=revoked)
        if result == "ok":
            await self.limiter.succeeded("activate", account=account)
        else:
            await self.limiter.failed("activate", ip=meta.ip, account=account)
        self._raise_for(result, "reset code")
