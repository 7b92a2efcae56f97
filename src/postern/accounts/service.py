"""The accounts service: users, their addresses and password authentication."""

from __future__ import annotations

import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from postern.accounts.addressing import (
    NormalisedAddress,
    normalise_address,
    normalise_username,
)
from postern.accounts.application_passwords import (
    ApplicationPasswords,
    covers,
    scopes_of,
)
from postern.accounts.application_passwords import candidate as asp_candidate
from postern.accounts.authlog import NO_META, AuthLog, AuthMeta
from postern.accounts.login_cache import LoginCache
from postern.accounts.passwords import Passwords
from postern.accounts.rate_limit import RateLimiter, canonical_login, is_plain_login, login_account
from postern.accounts.server_key import ServerKey
from postern.config import Settings
from postern.errors import AuthFailed, Conflict, Forbidden, InvalidInput, NotFound
from postern.events import CredentialsChanged, EventBus, UserDeleted, UserLoggedOut
from postern.mailstore.folders import default_folder_rows
from postern.storage import folders as folder_store
from postern.storage import logins as login_store
from postern.storage import users as user_store
from postern.storage.address_claims import AddressClaimed
from postern.storage.database import Database
from postern.storage.ids import is_id, new_id, now_ms
from postern.storage.logins import AspMatch, UserRow
from postern.storage.pagination import Cursor
from postern.storage.users import require_user  # what every service checks first; importable from here too

if TYPE_CHECKING:
    from postern.accounts.two_factor import TwoFactor

SCOPES = ("master", "imap", "pop3", "smtp")
# Scopes of the mail doors: with 2FA on, the master password does not open them.
MAIL_SCOPES = ("imap", "pop3", "smtp")
TEMPORARY_PASSWORD_LENGTH = 20


class ApplicationPasswordRequired(AuthFailed):
    """The master password was right, but 2FA is on and a mail door (IMAP, POP3, SMTP)
    takes only application specific passwords. Still an ``AuthFailed`` (403 over HTTP);
    doors may say more, as the password itself was right."""


UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class NewUser:
    username: str
    password: str | None
    address: str | None = None
    # The password is a hash made elsewhere (see passwords.Passwords.imported).
    password_hashed: bool = False
    empty_address: bool = False
    name: str | None = None
    quota: int | None = None
    retention_ms: int | None = None
    language: str | None = None
    recipients: int | None = None
    forwards: int | None = None
    tags: Sequence[str] = ()
    pub_key: str = ""
    encrypt_messages: bool = False
    encrypt_forwarded: bool = False
    # The account's own contact email (the user API's "email"; never a hosted address)
    # and whether the account is usable yet (the user API's registrations start inactive).
    email: str | None = None
    activated: bool = True
    # The user API's premium plan, granted by the operator.
    premium: bool = False


def _login_keys(login: str) -> tuple[str | None, str | None]:
    """What a login may name: a username, and (when it has an ``@``) an address's key;
    None for a form that cannot be one."""
    try:
        username: str | None = normalise_username(login)
    except InvalidInput:
        username = None
    address_key: str | None = None
    if "@" in login:
        try:
            address_key = normalise_address(login).key
        except InvalidInput:
            address_key = None
    return username, address_key


@dataclass(frozen=True, slots=True)
class Authenticated:
    user: Row | UserRow
    scope: str
    require_2fa: list[str]
    require_password_change: bool
    asp_id: str | None = None  # the application specific password used, if one was


def normalise_tags(tags: Sequence[str]) -> list[str]:
    seen: dict[str, None] = {}
    for tag in tags:
        tag = tag.strip().lower()
        if tag:
            if len(tag) > 128:
                raise InvalidInput("tags must be at most 128 characters each", field="tags")
            seen[tag] = None
    return list(seen)


class Accounts:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        passwords: Passwords,
        bus: EventBus,
        server_key: ServerKey,
        limiter: RateLimiter,
        *,
        authlog: AuthLog | None = None,
        two_factor: TwoFactor | None = None,
    ):
        self.db = db
        self.settings = settings
        self.passwords = passwords
        self.bus = bus
        self.server_key = server_key
        self.limiter = limiter
        self.authlog = authlog or AuthLog(db)
        if two_factor is None:
            from postern.accounts.two_factor import TwoFactor

            two_factor = TwoFactor(db, server_key, limiter, self.authlog)
        self.two_factor = two_factor
        if two_factor.bus is None:
            two_factor.bus = bus
        self.application_passwords = ApplicationPasswords(db, settings, server_key, self.authlog, bus=bus)
        # Remembered logins, forgotten on the events of credential changes (any process's).
        self.login_cache = LoginCache(settings.login_cache_seconds)
        bus.watch(self.login_cache.on_events)

    # Users ---------------------------------------------------------------------------

    async def create_user(self, new: NewUser) -> str:
        username = normalise_username(new.username)
        address: NormalisedAddress | None = None
        if not new.empty_address:
            if new.address:
                address = normalise_address(new.address)
            elif "@" in username:
                address = normalise_address(username, "username")
            else:
                address = normalise_address(f"{username}@{self.settings.domain}", "address")
        email = normalise_address(new.email, "email") if new.email else None
        password_hash = await self._password_hash(new.password, new.password_hashed)
        user_id = new_id()
        created = now_ms()
        values: dict[str, Any] = {
            "id": user_id,
            "username": username,
            "name": new.name,
            "password_hash": password_hash,
            "address": address.display if address else None,
            "language": new.language,
            "retention_ms": new.retention_ms or None,
            "quota_allowed": new.quota if new.quota is not None else self.settings.default_quota,
            "recipients_limit": new.recipients if new.recipients is not None else self.settings.default_recipients,
            "forwards_limit": new.forwards if new.forwards is not None else self.settings.default_forwards,
            "pub_key": new.pub_key,
            "encrypt_messages": new.encrypt_messages,
            "encrypt_forwarded": new.encrypt_forwarded,
            "email": email.display if email else None,
            "email_key": email.key if email else None,
            "activated": new.activated,
            "premium": new.premium,
            "created_ms": created,
        }
        try:
            async with self.db.write() as conn:
                if await user_store.get_user_by_username(conn, username) is not None:
                    raise Conflict("This username already exists", code="UserExistsError", field="username")
                if address and await user_store.address_key_taken(conn, address.key):
                    raise Conflict("This address already exists", code="AddressExistsError", field="address")
                if email and await user_store.get_user_by_email_key(conn, email.key) is not None:
                    raise Conflict("This email is already used by another account", code="EmailExistsError", field="email")
                await user_store.insert_user(conn, values, normalise_tags(new.tags))
                if address:
                    await user_store.insert_address(
                        conn,
                        {
                            "id": new_id(),
                            "user_id": user_id,
                            "address": address.display,
                            "address_key": address.key,
                            "main": True,
                            "created_ms": created,
                        },
                    )
                await folder_store.insert_folders(conn, default_folder_rows(user_id, values["retention_ms"]))
        except AddressClaimed:
            # An alias, a deleted alias or a reverse alias holds it (one namespace).
            raise Conflict("This address already exists", code="AddressExistsError", field="address") from None
        except IntegrityError:
            # Lost a race with a concurrent request for the same name or address.
            raise Conflict("This username or address already exists", code="UserExistsError", field="username") from None
        return user_id

    async def get_user(self, user_id: str) -> tuple[Row, list[str]]:
        async with self.db.read() as conn:
            user = await self._user(conn, user_id)
            tags = await user_store.tags_of(conn, [user_id])
        return user, tags[user_id]

    async def user_details(self, user_id: str) -> tuple[Row, list[str], list[str]]:
        """The user, its tags and its enabled second factors (e.g. ["totp"])."""
        async with self.db.read() as conn:
            user = await self._user(conn, user_id)
            tags = await user_store.tags_of(conn, [user_id])
            methods = await self.two_factor.enabled_methods(conn, user_id)
        return user, tags[user_id], methods

    async def _user(self, conn: Any, user_id: str, lock: bool = False) -> Row:
        return await require_user(conn, user_id, lock=lock)

    async def list_users(
        self, *, query: str | None, any_tags: Sequence[str], all_tags: Sequence[str], limit: int, cursor: Cursor | None
    ) -> tuple[list[Row], dict[str, list[str]], int]:
        async with self.db.read() as conn:
            rows, total = await user_store.list_users(
                conn, query=query, any_tags=normalise_tags(any_tags), all_tags=normalise_tags(all_tags), limit=limit, cursor=cursor
            )
            tags = await user_store.tags_of(conn, [r.id for r in rows])
        return rows, tags, total

    async def update_user(
        self, user_id: str, changes: dict[str, Any], existing_password: str | None = None, meta: AuthMeta = NO_META
    ) -> None:
        values: dict[str, Any] = {}
        for key in ("name", "language", "pub_key", "encrypt_messages", "encrypt_forwarded", "disabled", "premium"):
            if key in changes:
                values[key] = changes[key]
        if "quota" in changes:
            values["quota_allowed"] = changes["quota"]
        if "retention_ms" in changes:
            values["retention_ms"] = changes["retention_ms"] or None
        if "recipients" in changes:
            values["recipients_limit"] = changes["recipients"]
        if "forwards" in changes:
            values["forwards_limit"] = changes["forwards"]
        if "password" in changes:
            values["password_hash"] = await self._password_hash(changes["password"], changes.get("password_hashed", False))
            values["require_password_change"] = False
        if existing_password is not None:
            # Verified before the write transaction: argon2 takes tens of milliseconds
            # and must not hold the write lock meanwhile.
            async with self.db.read() as conn:
                user = await self._user(conn, user_id)
            if not await self.passwords.verify(user.password_hash, existing_password):
                await self.authlog.record(user_id, "password change", "fail", meta)
                raise AuthFailed("Password verification failed", field="existingPassword")
        async with self.db.write() as conn:
            await self._user(conn, user_id)
            await user_store.update_user(conn, user_id, values)
            if "tags" in changes:
                await user_store.set_tags(conn, user_id, normalise_tags(changes["tags"]))
            if "password" in changes:
                await self.authlog.record_in(conn, user_id, "password change", "success", meta)
        if "password" in changes:
            # Sessions opened with the old password end (their clients log in again).
            self.bus.publish([UserLoggedOut(user_id, "Password changed")])
        elif "disabled" in changes:
            self.bus.publish([CredentialsChanged(user_id, "Account disabled" if changes["disabled"] else "Account enabled")])

    async def _password_hash(self, password: str | None, hashed: bool) -> str | None:
        if password is None:
            return None
        return self.passwords.imported(password) if hashed else await self.passwords.hash(password)

    async def rehash_if_needed(self, user: Any, password: str) -> None:
        """After a successful login with the password: an imported (or outdated) hash
        becomes an argon2id one. Only if the stored hash is still the one checked."""
        if not self.passwords.needs_rehash(user.password_hash):
            return
        new_hash = await self.passwords.hash(password)
        async with self.db.write() as conn:
            await user_store.replace_password_hash(conn, user.id, user.password_hash, new_hash)

    async def delete_user(self, user_id: str) -> None:
        async with self.db.write() as conn:
            await self._user(conn, user_id, lock=True)
            await user_store.delete_user(conn, user_id)
        self.bus.publish([UserDeleted(user_id)])

    async def logout(self, user_id: str, reason: str | None = None, meta: AuthMeta = NO_META) -> None:
        """End every open IMAP and POP3 session of the user (they follow the bus)."""
        async with self.db.write() as conn:
            await self._user(conn, user_id)
            await self.authlog.record_in(conn, user_id, "logout", "success", meta, reason=reason)
        self.bus.publish([UserLoggedOut(user_id, reason)])

    async def reset_password(self, user_id: str, meta: AuthMeta = NO_META) -> str:
        """Give the user a new random temporary password (returned once), require a
        password change at the next login and turn every second factor off, in one
        transaction; the user's open sessions end."""
        password = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(TEMPORARY_PASSWORD_LENGTH))
        password_hash = await self.passwords.hash(password)
        async with self.db.write() as conn:
            await self._user(conn, user_id, lock=True)
            await user_store.update_user(conn, user_id, {"password_hash": password_hash, "require_password_change": True})
            await self.two_factor.disable_all(user_id, meta, conn=conn)
            await self.authlog.record_in(conn, user_id, "password reset", "success", meta)
        self.bus.publish([UserLoggedOut(user_id, "Password reset")])
        return password

    # Authentication ------------------------------------------------------------------

    async def find_login(self, login: str) -> Row | None:
        """A user by username or by any of its addresses."""
        async with self.db.read() as conn:
            return await self._find_login(conn, login.strip())

    @staticmethod
    async def _find_login(conn: Any, login: str) -> Row | None:
        username, address_key = _login_keys(login)
        user = await user_store.get_user_by_username(conn, username) if username is not None else None
        if user is None and address_key is not None:
            user = await user_store.get_user_by_address_key(conn, address_key)
        return user

    async def authenticate(self, login: str, password: str, scope: str = "master", meta: AuthMeta = NO_META) -> Authenticated:
        """The one way every door checks a password: the HTTP API, SMTP AUTH, IMAP, POP3.

        ``password`` is the master password or an application specific password (ASP).
        Raises ``RateLimited`` when the login or ``meta.ip`` failed too often lately
        (checked before any password is looked at), ``ApplicationPasswordRequired``
        when the master password is used for a mail scope while 2FA is on,
        ``AuthFailed`` for anything else wrong (an unknown login answers exactly like a
        wrong password, in about the same time), ``Forbidden`` (code UserDisabled) for
        a disabled account with a right password. Every outcome for an existing user is
        written to the authentication log; nothing secret ever is.

        With scope "master" and TOTP on, the answer's ``require_2fa`` is ["totp"]: the
        caller must then check a code (``TwoFactor.verify_totp``)."""
        if scope not in SCOPES:
            raise InvalidInput(f"scope must be one of {', '.join(SCOPES)}", field="scope")
        # The limiter's counters may live in this database: none of its calls may sit
        # inside a transaction of ours. The attempt counts against the account the login
        # names (whatever its spelling), checked before any password is looked at.
        # A login is taken in one spelling only (``is_plain_login``): another spelling
        # (``<alice@example.com>``, ``alice@example.com.``, a fullwidth ``ａlice``) counts
        # against the account it names, and never opens it.
        plain = is_plain_login(login)
        user, asp, totp = await self._login_state(login if plain else canonical_login(login), password)
        ticket = await self.limiter.check_login(login_account(user.id if user else None, login), ip=meta.ip, asp_id=asp.id if asp else None)
        reason: str | None = None
        remembered = False
        if asp is not None:
            # An ASP never opens "master", only the mail scopes it was made for.
            ok = covers(scopes_of(asp), scope)
            reason = None if ok else "scope"
        elif user is not None and user.password_hash is not None and self.login_cache.verified(user.id, user.password_hash, password):
            # This password opened this account lately, and its hash has not changed since.
            ok = remembered = True
        else:
            # Verify even when the user does not exist (against a decoy hash), so that
            # the answer's timing does not tell which accounts exist.
            ok = await self.passwords.verify(user.password_hash if user else None, password)
        if not plain:
            ok, reason = False, "spelling"
        if user is None or not ok:
            await self.limiter.login_failed(ticket)
            if user is not None:
                await self.authlog.record(user.id, "authentication", "fail", meta, scope=scope, asp=asp.id if asp else None, reason=reason)
            raise AuthFailed("Authentication failed")
        if user.disabled:
            await self.authlog.record(user.id, "authentication", "fail", meta, scope=scope, asp=asp.id if asp else None, reason="disabled")
            raise Forbidden("User account is disabled", code="UserDisabled")
        if not user.activated:
            # Registered through the user API and not yet confirmed by the mailed code.
            await self.authlog.record(user.id, "authentication", "fail", meta, scope=scope, reason="not activated")
            raise Forbidden("User account is not activated", code="UserNotActivated")
        if asp is None and totp and scope in MAIL_SCOPES:
            # Not counted as a guess: the password was right.
            await self.authlog.record(user.id, "authentication", "fail", meta, scope=scope, reason="asp required")
            raise ApplicationPasswordRequired(
                "Authentication failed. Two-factor authentication is enabled: use an application specific password"
            )
        await self.limiter.login_succeeded(ticket, asp.id if asp else None)
        if asp is None:
            await self.rehash_if_needed(user, password)
        require_2fa = ["totp"] if totp and scope == "master" and asp is None else []

        if asp is None and not remembered and user.password_hash is not None:
            self.login_cache.remember(user.id, user.password_hash, password)
        # Written with concurrent logins' entries: a burst of logins costs a few commits.
        await self.authlog.record_login(user.id, meta, scope, asp.id if asp else None)
        return Authenticated(user, scope, require_2fa, bool(user.require_password_change), asp.id if asp else None)

    async def _login_state(self, login: str, password: str) -> tuple[UserRow | None, AspMatch | None, bool]:
        """In one statement: the user of ``login`` (as ``_find_login`` finds it), its ASP
        matching ``password`` (if the password has an ASP's form) and whether TOTP is on."""
        username, address_key = _login_keys(login.strip())
        normalised = asp_candidate(password)
        digest = self.application_passwords.digest(normalised) if normalised is not None else None
        state = await login_store.login_state(self.db, username, address_key, digest)
        if state is None:
            return None, None, False
        return state.user, state.asp, state.totp

    # Addresses -----------------------------------------------------------------------

    async def list_addresses(self, user_id: str) -> list[Row]:
        async with self.db.read() as conn:
            await self._user(conn, user_id)
            return await user_store.list_user_addresses(conn, user_id)

    async def get_address(self, user_id: str, address_id: str) -> Row:
        async with self.db.read() as conn:
            await self._user(conn, user_id)
            return await self._address(conn, user_id, address_id)

    async def _address(self, conn: Any, user_id: str, address_id: str) -> Row:
        row = await user_store.get_address(conn, user_id, address_id) if is_id(address_id) else None
        if row is None:
            raise NotFound("This address does not exist", code="AddressNotFound")
        return row

    async def add_address(self, user_id: str, address: str, main: bool = False) -> str:
        normalised = normalise_address(address)
        address_id = new_id()
        try:
            async with self.db.write() as conn:
                user = await self._user(conn, user_id, lock=True)
                if await user_store.address_key_taken(conn, normalised.key):
                    raise Conflict("This address already exists", code="AddressExistsError", field="address")
                await user_store.insert_address(
                    conn,
                    {
                        "id": address_id,
                        "user_id": user_id,
                        "address": normalised.display,
                        "address_key": normalised.key,
                        "main": False,
                        "created_ms": now_ms(),
                    },
                )
                # The first address of a user is its main one, whatever was asked.
                if main or user.address is None:
                    await user_store.set_main_address(conn, user_id, address_id, normalised.display)
        except (IntegrityError, AddressClaimed):
            raise Conflict("This address already exists", code="AddressExistsError", field="address") from None
        return address_id

    async def set_main_address(self, user_id: str, address_id: str) -> None:
        async with self.db.write() as conn:
            await self._user(conn, user_id, lock=True)
            row = await self._address(conn, user_id, address_id)
            if not row.main:
                await user_store.set_main_address(conn, user_id, address_id, row.address)

    async def delete_address(self, user_id: str, address_id: str) -> None:
        async with self.db.write() as conn:
            await self._user(conn, user_id, lock=True)
            row = await self._address(conn, user_id, address_id)
            if row.main:
                raise Forbidden("Main address can not be deleted", code="MainAddressError")
            await user_store.delete_address(conn, address_id)

    async def search_addresses(self, *, query: str | None, limit: int, cursor: Cursor | None) -> tuple[list[Row], int]:
        async with self.db.read() as conn:
            return await user_store.search_addresses(conn, query=query, limit=limit, cursor=cursor)
