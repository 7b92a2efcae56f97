"""Mailboxes: the verified addresses aliases forward to (the user API's "mailboxes").

A new mailbox, and a new address for a mailbox, is proven by mail: a 6-digit code and
a link, valid for a day. Only a keyed digest of the code is kept (in ``account_codes``,
purpose ``verify_mailbox``, target the mailbox id), bound to the user, the mailbox and
the address it proves, so that a code mailed for one address never verifies another.
The third wrong code kills it (410 until a new one is sent). The link carries the code
signed with the server key: it needs no API key, and dies with its code.

An email change waits in ``pending_email`` until the new address is verified; the
mailbox keeps forwarding to its old address meanwhile. Deleting a mailbox moves what
forwarded to it to the default mailbox, in one transaction.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from postern.accounts.addressing import NormalisedAddress, normalise_address
from postern.accounts.authlog import NO_META, AuthMeta
from postern.accounts.rate_limit import Policy, RateLimiter
from postern.accounts.registration import CodeExhausted
from postern.accounts.server_key import InvalidSignature, ServerKey
from postern.config import Settings
from postern.delivery.system_mail import SystemMail
from postern.errors import Conflict, InvalidInput, NotFound
from postern.storage import mailboxes as store
from postern.storage.database import Database
from postern.storage.ids import new_id, now_ms

log = logging.getLogger("postern.mailboxes")

CODE_TTL_S = 24 * 3600
MAX_TRIES = 3
PURPOSE = store.VERIFY_PURPOSE
SEND_ACTION = "send_mailbox_code"
CHECK_ACTION = "activate"
# Mails sent per window: new mailboxes, address changes and resends.
SEND_POLICY = Policy(per_ip=30, per_account=10, window_s=3600)
MAX_ID = 2**31 - 1


class VerificationLinkInvalid(InvalidInput):
    code = "InvalidLink"


@dataclass(frozen=True, slots=True)
class MailboxChanges:
    default: bool | None = None
    email: str | None = None
    cancel_email_change: bool = False
    require_reply_authentication: bool | None = None


def new_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


def _ascii_domain(address: NormalisedAddress) -> str:
    return address.key.rpartition("@")[2]


class ForwardMailboxes:
    def __init__(self, *, db: Database, settings: Settings, server_key: ServerKey, limiter: RateLimiter, mail: SystemMail):
        self.db = db
        self.settings = settings
        self.server_key = server_key
        self.limiter = limiter
        self.mail = mail
        limiter.policies.setdefault(SEND_ACTION, SEND_POLICY)

    # Reading -------------------------------------------------------------------------

    async def list(self, user_id: str, *, verified_only: bool = False) -> Sequence[Row]:
        async with self.db.read() as conn:
            return await store.list_for(conn, user_id, verified_only=verified_only)

    async def get(self, user_id: str, mailbox_id: int) -> Row:
        async with self.db.read() as conn:
            return await self._get(conn, user_id, mailbox_id)

    @staticmethod
    async def _get(conn: Any, user_id: str, mailbox_id: int) -> Row:
        row = await store.get(conn, user_id, mailbox_id) if 0 < mailbox_id <= MAX_ID else None
        if row is None:
            raise NotFound("Mailbox not found")
        return row

    # Checks --------------------------------------------------------------------------

    @staticmethod
    def _parse(email: str, field: str = "email") -> NormalisedAddress:
        address = normalise_address(email, field)
        if "." not in _ascii_domain(address) or len(address.key) > 320:
            raise InvalidInput(f"{email.strip()} is not a valid email address", field=field)
        return address

    async def _check_usable(self, conn: Any, user_id: str, address: NormalisedAddress, besides: int | None = None) -> None:
        if await store.email_key_used(conn, user_id, address.key, besides=besides):
            raise InvalidInput(f"{address.display} is already one of your mailboxes", field="email")
        alias_domains = [*self.settings.resolved_alias_domains, self.settings.resolved_reverse_alias_domain]
        reason = await store.refusal(conn, address.key, _ascii_domain(address), alias_domains=alias_domains)
        if reason is not None:
            raise InvalidInput(f"{address.display} {reason} and cannot be a mailbox", field="email")

    # Codes ---------------------------------------------------------------------------

    def _digest(self, user_id: str, mailbox_id: int, address_key: str, code: str) -> str:
        return self.server_key.digest(f"{user_id}:{mailbox_id}:{address_key}:{code}", purpose=PURPOSE)

    async def _issue_code(self, conn: Any, user_id: str, mailbox_id: int, address_key: str) -> str:
        code = new_code()
        created = now_ms()
        await store.delete_codes(conn, user_id, mailbox_id)
        await store.insert_code(
            conn,
            {
                "id": new_id(),
                "user_id": user_id,
                "target": str(mailbox_id),
                "code_digest": self._digest(user_id, mailbox_id, address_key, code),
                "attempts": 0,
                "created_ms": created,
                "expires_ms": created + CODE_TTL_S * 1000,
            },
        )
        return code

    @staticmethod
    def _proven_key(mailbox: Row) -> str:
        """The address a code for this mailbox proves: the pending one, else its own."""
        return mailbox.pending_email_key or mailbox.email_key

    async def _use_code(self, conn: Any, mailbox: Row, code: str, *, count_wrong: bool) -> str:
        """ok, wrong, expired or exhausted; a right code is used up."""
        row = await store.latest_code(conn, mailbox.user_id, mailbox.id)
        if row is None:
            return "wrong"
        if row.attempts >= MAX_TRIES:
            return "exhausted"
        digest = self._digest(mailbox.user_id, mailbox.id, self._proven_key(mailbox), code)
        matches = hmac.compare_digest(row.code_digest, digest)
        if row.expires_ms <= now_ms():
            return "expired" if matches else "wrong"
        if not matches:
            if not count_wrong:
                return "wrong"
            attempts = await store.add_attempt(conn, row.id)
            return "exhausted" if attempts >= MAX_TRIES else "wrong"
        await store.delete_codes(conn, mailbox.user_id, mailbox.id)
        return "ok"

    async def _mail_code(self, user_id: str, mailbox_id: int, to: str, display: str, code: str, *, change: bool) -> None:
        token = self.server_key.sign(f"{mailbox_id}:{to}:{code}", purpose=PURPOSE, ttl_s=CODE_TTL_S)
        link = f"{self.settings.resolved_public_url}/api/mailboxes/verify?{urlencode({'token': token})}"
        what = "the new address of one of your mailboxes" if change else "a mailbox of your account"
        text = (
            "Hello,\n\n"
            f"Someone (perhaps you) asked to use {display} as {what}:\n"
            "mail sent to your aliases will be forwarded to it.\n\n"
            f"Your verification code is: {code}\n\n"
            f"Or follow this link:\n{link}\n\n"
            "Both are valid for 24 hours. If you did not ask for this, ignore this\n"
            "message: nothing is forwarded to this address until it is verified.\n"
        )
        try:
            await self.mail.send(user_id=user_id, to=to, subject=f"Verify your mailbox {display}", text=text)
        except Exception:
            log.exception("sending a mailbox verification failed")

    async def _may_send(self, user_id: str, meta: AuthMeta) -> None:
        await self.limiter.attempt(SEND_ACTION, ip=meta.ip, account=f"mailbox:{user_id}")

    # Create, verify, resend ----------------------------------------------------------

    async def create(self, user_id: str, email: str, meta: AuthMeta = NO_META) -> Row:
        address = self._parse(email)
        await self._may_send(user_id, meta)
        try:
            async with self.db.write() as conn:
                await self._check_usable(conn, user_id, address)
                mailbox_id = await store.insert(
                    conn,
                    {
                        "user_id": user_id,
                        "email": address.display,
                        "email_key": address.key,
                        "verified": False,
                        "is_default": not await store.has_default(conn, user_id),
                        "created_ms": now_ms(),
                    },
                )
                code = await self._issue_code(conn, user_id, mailbox_id, address.key)
                row = await self._get(conn, user_id, mailbox_id)
        except IntegrityError:
            raise InvalidInput(f"{address.display} is already one of your mailboxes", field="email") from None
        await self._mail_code(user_id, mailbox_id, address.key, address.display, code, change=False)
        return row

    async def resend(self, user_id: str, mailbox_id: int, meta: AuthMeta = NO_META) -> None:
        async with self.db.read() as conn:
            mailbox = await self._get(conn, user_id, mailbox_id)
        if mailbox.verified and not mailbox.pending_email_key:
            raise InvalidInput("This mailbox is verified already")
        await self._may_send(user_id, meta)
        async with self.db.write() as conn:
            mailbox = await self._get(conn, user_id, mailbox_id)
            key = self._proven_key(mailbox)
            display = mailbox.pending_email or mailbox.email
            code = await self._issue_code(conn, user_id, mailbox_id, key)
        await self._mail_code(user_id, mailbox_id, key, display, code, change=bool(mailbox.pending_email_key))

    async def verify_code(self, user_id: str, mailbox_id: int, code: str, meta: AuthMeta = NO_META) -> Row:
        account = f"mailbox:{user_id}"
        await self.limiter.check(CHECK_ACTION, ip=meta.ip, account=account)
        async with self.db.read() as conn:
            await self._get(conn, user_id, mailbox_id)
        result = "wrong"
        try:
            async with self.db.write() as conn:
                mailbox = await self._get(conn, user_id, mailbox_id)
                if mailbox.verified and not mailbox.pending_email_key:
                    return mailbox
                result = await self._use_code(conn, mailbox, code.replace(" ", "").strip(), count_wrong=True)
                if result == "ok":
                    await self._verified(conn, mailbox)
                    mailbox = await self._get(conn, user_id, mailbox_id)
        except IntegrityError:
            raise Conflict("This address is already one of your mailboxes") from None
        if result == "ok":
            await self.limiter.succeeded(CHECK_ACTION, account=account)
            return mailbox
        await self.limiter.failed(CHECK_ACTION, ip=meta.ip, account=account)
        if result == "exhausted":
            raise CodeExhausted("Too many wrong tries: ask for a new verification code")
        if result == "expired":
            raise InvalidInput("This code has expired: ask for a new one", code="CodeExpired")
        raise InvalidInput("Wrong code", code="WrongCode")

    async def verify_link(self, token: str) -> Row:
        """The mailbox a link verified (needs no API key: it carries a signed code)."""
        invalid = VerificationLinkInvalid("This link is invalid or has expired: ask for a new one")
        try:
            mailbox_text, _, rest = self.server_key.unsign(token, purpose=PURPOSE).partition(":")
            address_key, _, code = rest.rpartition(":")
            mailbox_id = int(mailbox_text)
        except (InvalidSignature, ValueError):
            raise invalid from None
        try:
            async with self.db.write() as conn:
                found = await store.get_by_id(conn, mailbox_id)
                if found is None:
                    raise invalid
                mailbox = await self._get(conn, found.user_id, mailbox_id)
                if mailbox.verified and not mailbox.pending_email_key and mailbox.email_key == address_key:
                    return mailbox  # a link followed twice
                result = await self._use_code(conn, mailbox, code, count_wrong=False)
                if result != "ok":
                    raise invalid
                await self._verified(conn, mailbox)
                return await self._get(conn, found.user_id, mailbox_id)
        except IntegrityError:
            raise Conflict("This address is already one of your mailboxes") from None

    async def _verified(self, conn: Any, mailbox: Row) -> None:
        if not mailbox.pending_email_key:
            await store.set_fields(conn, mailbox.id, verified=True)
            return
        address = normalise_address(mailbox.pending_email, "email")
        await self._check_usable(conn, mailbox.user_id, address, besides=mailbox.id)
        await store.set_fields(
            conn, mailbox.id, email=mailbox.pending_email, email_key=mailbox.pending_email_key, pending_email=None, pending_email_key=None
        )

    # Update and delete ---------------------------------------------------------------

    async def update(self, user_id: str, mailbox_id: int, changes: MailboxChanges, meta: AuthMeta = NO_META) -> Row:
        address = self._parse(changes.email) if changes.email is not None else None
        async with self.db.read() as conn:
            await self._get(conn, user_id, mailbox_id)
        if address is not None:
            await self._may_send(user_id, meta)
        code: str | None = None
        change = False
        try:
            async with self.db.write() as conn:
                mailbox = await self._get(conn, user_id, mailbox_id)
                if changes.require_reply_authentication is not None:
                    await store.set_fields(conn, mailbox_id, require_reply_authentication=changes.require_reply_authentication)
                if changes.default:
                    if not mailbox.verified:
                        raise InvalidInput("Only a verified mailbox can be the default")
                    if not mailbox.is_default:
                        await store.make_default(conn, user_id, mailbox_id)
                if changes.cancel_email_change and mailbox.pending_email_key:
                    await store.set_fields(conn, mailbox_id, pending_email=None, pending_email_key=None)
                    await store.delete_codes(conn, user_id, mailbox_id)
                if address is not None:
                    if address.key == mailbox.email_key:
                        raise InvalidInput(f"{address.display} is this mailbox's address already", field="email")
                    await self._check_usable(conn, user_id, address, besides=mailbox_id)
                    if mailbox.verified:
                        await store.set_fields(conn, mailbox_id, pending_email=address.display, pending_email_key=address.key)
                    else:
                        # Not verified yet: nothing forwards to it, the address simply changes.
                        await store.set_fields(conn, mailbox_id, email=address.display, email_key=address.key)
                    code = await self._issue_code(conn, user_id, mailbox_id, address.key)
                    change = bool(mailbox.verified)
                mailbox = await self._get(conn, user_id, mailbox_id)
        except IntegrityError:
            raise InvalidInput("This address is already one of your mailboxes", field="email") from None
        if address is not None and code is not None:
            await self._mail_code(user_id, mailbox_id, address.key, address.display, code, change=change)
        return mailbox

    async def delete(self, user_id: str, mailbox_id: int) -> None:
        async with self.db.write() as conn:
            mailbox = await self._get(conn, user_id, mailbox_id)
            if mailbox.is_default:
                raise InvalidInput("The default mailbox cannot be deleted: make another one the default first")
            default = await store.default_of(conn, user_id)
            if default is None:
                raise InvalidInput("You have no default mailbox to move this mailbox's aliases to")
            await store.remove(conn, user_id, mailbox_id, default.id)
