"""Email validation sessions (the Matrix identity service's requestToken and
submitToken), which also prove an external address for a postern user.

- A session is keyed by (address, client secret): asking again answers the same sid.
- ``send_attempt`` mails again only when it is higher than the last one seen for that
  pair (a retried request never mails twice); the same token is mailed again.
- The token is an HMAC of the session's random salt under the server key: 256 bits,
  64 hexadecimal characters; the table alone tells no token.
- A session expires 24 hours after its last change (creation, a new mail,
  validation); a validated session may be used for 24 hours after its validation.
  Expired sessions are deleted by the garbage collector (``expire``).
- Mail is limited per client IP (every request) and per address (every mail sent),
  so that nobody can mail-bomb an address through postern.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from postern.accounts.addressing import NormalisedAddress, normalise_address
from postern.accounts.rate_limit import Policy, RateLimiter
from postern.accounts.server_key import ServerKey
from postern.errors import InvalidInput
from postern.storage import validation_sessions as store
from postern.storage.database import Database
from postern.storage.ids import now_ms
from postern.verification import errors
from postern.verification.errors import MatrixError
from postern.verification.mail import SendFailed, ValidationMailer
from postern.verification.next_link import check_next_link
from postern.verification.ownership import EMAIL_TOKEN

SESSION_TTL_MS = 24 * 3600 * 1000
VALIDATED_TTL_MS = 24 * 3600 * 1000
CLIENT_SECRET = re.compile(r"^[0-9a-zA-Z.=_-]{1,255}$")
MAX_SID = 2**31 - 1
MAX_SEND_ATTEMPT = 2**53
MAX_TOKEN = 255

REQUEST_ACTION = "identity_request"  # every requestToken, per client IP
MAIL_ACTION = "identity_mail"  # every mail sent, per address
SUBMIT_ACTION = "identity_submit"  # wrong tokens, per client IP
POLICIES = {
    # A homeserver asks for all its users from one address: room for them.
    REQUEST_ACTION: Policy(per_ip=200, per_account=200, window_s=3600),
    MAIL_ACTION: Policy(per_ip=200, per_account=5, window_s=3600),
    SUBMIT_ACTION: Policy(per_ip=50, per_account=50, window_s=15 * 60),
}

SUBMIT_PATH = "/_matrix/identity/api/v1/validate/email/submitToken"


@dataclass(frozen=True, slots=True)
class Validated:
    sid: int
    address: str
    validated_ms: int
    next_link: str | None
    user_id: str | None


def parse_sid(value: object) -> int:
    text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if not text.isascii() or not text.isdigit() or len(text) > 10 or int(text) > MAX_SID:
        raise MatrixError(errors.INVALID_PARAM, "sid must be a session id")
    return int(text)


def check_client_secret(value: object) -> str:
    if not isinstance(value, str) or not CLIENT_SECRET.match(value):
        raise MatrixError(
            errors.INVALID_PARAM,
            "client_secret must be 1 to 255 letters, digits or . = _ -",
        )
    return value


def parse_email(value: object) -> NormalisedAddress:
    if not isinstance(value, str) or len(value) > 320:
        raise MatrixError(errors.INVALID_EMAIL, "email must be an email address")
    try:
        return normalise_address(value, "email")
    except InvalidInput as error:
        raise MatrixError(errors.INVALID_EMAIL, error.message) from None


def parse_send_attempt(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() and len(value.strip()) <= 16:
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEND_ATTEMPT:
        raise MatrixError(errors.INVALID_PARAM, "send_attempt must be a whole number from 0")
    return value


class ValidationSessions:
    def __init__(
        self,
        *,
        db: Database,
        server_key: ServerKey,
        limiter: RateLimiter,
        mailer: ValidationMailer,
        public_url: str,
        server_name: str,
        next_link_domains: Sequence[str] = (),
        clock: Callable[[], int] = now_ms,
    ):
        self.db = db
        self.server_key = server_key
        self.limiter = limiter
        self.mailer = mailer
        self.public_url = public_url.rstrip("/")
        self.server_name = server_name
        self.next_link_domains = list(next_link_domains)
        self.clock = clock
        for action, policy in POLICIES.items():
            limiter.policies.setdefault(action, policy)

    def token_of(self, sid: int, salt: str) -> str:
        return self.server_key.digest(f"{sid}:{salt}", purpose="validation token")

    def link_of(self, sid: int, client_secret: str, token: str) -> str:
        return f"{self.public_url}{SUBMIT_PATH}?" + urlencode({"token": token, "client_secret": client_secret, "sid": str(sid)})

    def _expired(self, row: Row, now: int) -> bool:
        if row.validated_ms is not None:
            return now - int(row.validated_ms) > VALIDATED_TTL_MS
        return now - int(row.mtime_ms) > SESSION_TTL_MS

    # requestToken --------------------------------------------------------------------

    async def request_token(
        self,
        *,
        email: object,
        client_secret: object,
        send_attempt: object = None,
        next_link: object = None,
        ip: str | None = None,
        user_id: str | None = None,
    ) -> int:
        """The session's sid; mails the token when the session is new or
        ``send_attempt`` is higher than the last one seen."""
        secret = check_client_secret(client_secret)
        address = parse_email(email)
        attempt = parse_send_attempt(send_attempt)
        link: str | None = None
        if next_link is not None:
            if not isinstance(next_link, str):
                raise MatrixError(errors.INVALID_PARAM, "next_link must be a string")
            link = check_next_link(next_link, self.next_link_domains) if next_link else None
        await self.limiter.attempt(REQUEST_ACTION, ip=ip)

        now = self.clock()
        async with self.db.read() as conn:
            row = await store.find_session(conn, address.key, secret)
        if row is not None and not self._expired(row, now):
            if row.user_id != user_id:
                # One client secret of a user's own session and the identity service's
                # never meet: postern makes its users' secrets itself.
                raise MatrixError(errors.INVALID_PARAM, "client_secret is already in use")
            if attempt is None or (row.send_attempt is not None and attempt <= row.send_attempt):
                return int(row.id)
            await self.limiter.attempt(MAIL_ACTION, account=address.key)
            values: dict[str, Any] = {"send_attempt": attempt, "mtime_ms": now}
            if link is not None:
                values["next_link"] = link
            async with self.db.write() as conn:
                await store.update_session(conn, row.id, values)
            try:
                await self._mail(int(row.id), secret, row.token_salt, address, user_id)
            except MatrixError:
                async with self.db.write() as conn:  # a retry with the same attempt mails again
                    await store.update_session(conn, row.id, {"send_attempt": row.send_attempt})
                raise
            return int(row.id)

        await self.limiter.attempt(MAIL_ACTION, account=address.key)
        salt = secrets.token_hex(16)
        values = {
            "address": address.display,
            "address_key": address.key,
            "client_secret": secret,
            "token_salt": salt,
            "send_attempt": attempt,
            "next_link": link,
            "user_id": user_id,
            "created_ms": now,
            "mtime_ms": now,
            "validated_ms": None,
        }
        try:
            async with self.db.write() as conn:
                if row is not None:  # expired: a new session takes its place
                    await store.delete_session(conn, row.id)
                sid = await store.insert_session(conn, values)
        except IntegrityError:
            # The same request at the same moment: the other one made (and mails) it.
            async with self.db.read() as conn:
                again = await store.find_session(conn, address.key, secret)
            if again is None:
                raise MatrixError(errors.UNKNOWN, "the session could not be made; try again") from None
            return int(again.id)
        try:
            await self._mail(sid, secret, salt, address, user_id)
        except MatrixError:
            async with self.db.write() as conn:
                await store.delete_session(conn, sid)
            raise
        return sid

    async def _mail(
        self,
        sid: int,
        secret: str,
        salt: str,
        address: NormalisedAddress,
        user_id: str | None,
    ) -> None:
        token = self.token_of(sid, salt)
        values = {
            "address": address.display,
            "token": token,
            "link": self.link_of(sid, secret, token),
            "sid": str(sid),
            "server": self.server_name,
        }
        try:
            await self.mailer.send(to=address.key, values=values, user_id=user_id)
        except SendFailed:
            raise MatrixError(errors.EMAIL_SEND_ERROR, "The validation email could not be sent") from None

    # submitToken ---------------------------------------------------------------------

    async def submit_token(
        self,
        *,
        sid: object,
        client_secret: object,
        token: object,
        ip: str | None = None,
    ) -> Validated:
        """Validate the session; its stored next_link comes back with it."""
        number = parse_sid(sid)
        secret = check_client_secret(client_secret)
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN:
            raise MatrixError(errors.INVALID_PARAM, "token must be the token that was mailed")
        await self.limiter.check(SUBMIT_ACTION, ip=ip)
        now = self.clock()
        async with self.db.read() as conn:
            row = await store.get_session(conn, number)
        if row is None:
            raise MatrixError(errors.NO_VALID_SESSION, "No session could be found with this sid")
        if not hmac.compare_digest(row.client_secret.encode(), secret.encode()):
            await self.limiter.failed(SUBMIT_ACTION, ip=ip)
            raise MatrixError(
                errors.INVALID_PARAM,
                "Client secret does not match the one given when requesting the token",
            )
        if self._expired(row, now):
            raise MatrixError(
                errors.SESSION_EXPIRED,
                "This validation session has expired: call requestToken again",
            )
        if not hmac.compare_digest(
            self.token_of(number, row.token_salt).encode(),
            token.encode("utf-8", "surrogatepass"),
        ):
            await self.limiter.failed(SUBMIT_ACTION, ip=ip)
            raise MatrixError(errors.TOKEN_INCORRECT, "The token is incorrect")
        validated_ms = int(row.validated_ms) if row.validated_ms is not None else now
        if row.validated_ms is None:
            try:
                async with self.db.write() as conn:
                    await store.mark_validated(conn, number, now)
                    if row.user_id is not None:
                        await store.add_proven(
                            conn,
                            {
                                "user_id": row.user_id,
                                "address": row.address,
                                "address_key": row.address_key,
                                "method": EMAIL_TOKEN,
                                "proven_ms": now,
                            },
                        )
            except IntegrityError:
                pass  # a submit at the same moment recorded the same proof
        return Validated(number, row.address, validated_ms, row.next_link, row.user_id)

    # getValidated3pid ----------------------------------------------------------------

    async def validated(self, *, sid: object, client_secret: object) -> Validated:
        number = parse_sid(sid)
        secret = check_client_secret(client_secret)
        async with self.db.read() as conn:
            row = await store.get_session(conn, number)
        if row is None or not hmac.compare_digest(row.client_secret.encode(), secret.encode()):
            raise MatrixError(
                errors.NO_VALID_SESSION,
                "No valid session was found matching that sid and client secret",
            )
        if row.validated_ms is None:
            if self._expired(row, self.clock()):
                raise MatrixError(
                    errors.SESSION_EXPIRED,
                    "This validation session has expired: call requestToken again",
                )
            raise MatrixError(
                errors.SESSION_NOT_VALIDATED,
                "This validation session has not yet been completed",
            )
        if self._expired(row, self.clock()):
            raise MatrixError(
                errors.SESSION_EXPIRED,
                "This validation session has expired: call requestToken again",
            )
        return Validated(number, row.address, int(row.validated_ms), row.next_link, row.user_id)

    # Upkeep --------------------------------------------------------------------------

    async def expire(self) -> int:
        """Delete every session past its 24 hours (the garbage collector calls it)."""
        cutoff = self.clock() - max(SESSION_TTL_MS, VALIDATED_TTL_MS)
        async with self.db.write() as conn:
            return await store.delete_sessions_changed_before(conn, cutoff)


class UserProofs:
    """A postern user proving an external address (the user API's identities): one
    pending session per user and address, its client secret made here; the mailed
    link proves the address, which then counts in ``ownership``."""

    def __init__(self, sessions: ValidationSessions):
        self.sessions = sessions

    async def start(self, user_id: str, email: object, *, ip: str | None = None) -> tuple[int, str]:
        """(sid, address as displayed); mails the token (again, for a pending one)."""
        address = parse_email(email)
        now = self.sessions.clock()
        async with self.sessions.db.read() as conn:
            pending = [
                r
                for r in await store.pending_for_user(conn, user_id)
                if r.address_key == address.key and not self.sessions._expired(r, now)
            ]
        if pending:
            row = pending[-1]
            sid = await self.sessions.request_token(
                email=address.key,
                client_secret=row.client_secret,
                send_attempt=(row.send_attempt or 0) + 1,
                ip=ip,
                user_id=user_id,
            )
        else:
            sid = await self.sessions.request_token(
                email=address.key,
                client_secret=secrets.token_urlsafe(24),
                send_attempt=1,
                ip=ip,
                user_id=user_id,
            )
        return sid, address.display

    async def pending(self, user_id: str) -> list[Row]:
        now = self.sessions.clock()
        async with self.sessions.db.read() as conn:
            return [r for r in await store.pending_for_user(conn, user_id) if not self.sessions._expired(r, now)]

    async def forget(self, user_id: str, email: object) -> bool:
        """Drop a proof by mail (and pending sessions) of the address; False when
        there was neither."""
        address = parse_email(email)
        async with self.sessions.db.write() as conn:
            pending = [r for r in await store.pending_for_user(conn, user_id) if r.address_key == address.key]
            await store.delete_user_sessions_for(conn, user_id, address.key)
            dropped = await store.delete_proven(conn, user_id, address.key)
        return dropped or bool(pending)
