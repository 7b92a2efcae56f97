"""Application specific passwords (ASPs): random passwords a user gives to one mail
client, each valid for some of the scopes imap, pop3 and smtp (never "master").

A password is 16 random lowercase letters (75 bits), shown once. Only a keyed digest
(``ServerKey.digest``) is stored, so a login finds its password in one indexed lookup
without argon2; spaces are ignored ("abcd efgh ijkl mnop" is the same password).
"""

from __future__ import annotations

import base64
import plistlib
import re
import secrets
import string
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from postern.accounts.authlog import NO_META, AuthLog, AuthMeta
from postern.accounts.server_key import ServerKey
from postern.config import Settings, parse_listen
from postern.errors import InvalidInput, NotFound
from postern.events import CredentialsChanged, EventBus
from postern.storage import application_passwords as store
from postern.storage.database import Database
from postern.storage.ids import is_id, new_id, now_ms

ASP_SCOPES = ("imap", "pop3", "smtp")
PASSWORD_LENGTH = 16
DIGEST_PURPOSE = "asp"


def normalise_scopes(scopes: Iterable[str] | str | None) -> list[str]:
    """["*"] or the distinct scopes asked for, in a fixed order. "*" (the default)
    covers every scope an ASP may have; "master" is never one of them."""
    if scopes is None:
        return ["*"]
    items = scopes.split(",") if isinstance(scopes, str) else list(scopes)
    wanted = {s.strip().lower() for s in items if isinstance(s, str) and s.strip()}
    if not wanted:
        return ["*"]
    unknown = sorted(wanted - {"*", *ASP_SCOPES})
    if unknown:
        raise InvalidInput(f"scopes must be some of *, {', '.join(ASP_SCOPES)} (not {', '.join(unknown)})", field="scopes")
    if "*" in wanted:
        return ["*"]
    return [s for s in ASP_SCOPES if s in wanted]


def covers(scopes: list[str], scope: str) -> bool:
    return scope in ASP_SCOPES and ("*" in scopes or scope in scopes)


def generate_password() -> str:
    return "".join(secrets.choice(string.ascii_lowercase) for _ in range(PASSWORD_LENGTH))


def candidate(password: str) -> str | None:
    """The password as an ASP would be stored (spaces removed, lowercase), or None
    when it cannot be one."""
    compact = "".join(password.split()).lower()
    if len(compact) == PASSWORD_LENGTH and compact.isascii() and compact.isalpha():
        return compact
    return None


def scopes_of(row: Any) -> list[str]:
    return list(orjson.loads(row.scopes))


@dataclass(frozen=True, slots=True)
class CreatedPassword:
    id: str
    password: str
    scopes: list[str]
    mobileconfig: str | None = None


@dataclass(frozen=True, slots=True)
class MailClientSettings:
    hostname: str
    imap_port: int
    smtp_port: int


def mail_client_settings(settings: Settings) -> MailClientSettings:
    """Where a mail client reaches this server: the public ports when configured, else
    the ports the doors listen on (IMAPS before IMAP), else the production ports (993
    IMAPS, 587 submission)."""

    def port(public: str, listens: tuple[str, ...], default: int) -> int:
        value = getattr(settings, public, None)
        if value:
            return int(value)
        for listen in listens:
            address = getattr(settings, listen, None)
            if address:
                try:
                    return parse_listen(address).port or default
                except ValueError:
                    continue
        return default

    return MailClientSettings(
        hostname=settings.hostname,
        # Implicit TLS first: the profile asks for TLS, which STARTTLS ports give too.
        imap_port=port("imap_public_port", ("imaps_listen", "imap_listen"), 993),
        smtp_port=port("submission_public_port", ("submission_listen",), 587),
    )


# What XML 1.0, and so a plist, cannot hold.
_NOT_IN_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")


def _text(value: str) -> str:
    return _NOT_IN_XML.sub("", value)


def mobileconfig(client: MailClientSettings, *, username: str, address: str, display_name: str, password: str, description: str) -> str:
    """The profile of :func:`mobileconfig_plist`, base64 encoded (the admin API's answer)."""
    return base64.b64encode(
        mobileconfig_plist(
            client, username=username, address=address, display_name=display_name, password=password, description=description
        )
    ).decode("ascii")


def mobileconfig_plist(
    client: MailClientSettings, *, username: str, address: str, display_name: str, password: str | None, description: str
) -> bytes:
    """An Apple configuration profile (unsigned, XML plist) with one IMAP account
    (com.apple.mail.managed); without a password the device asks for it. Signing it would need a certificate postern does not have; iOS and
    macOS install unsigned profiles after warning that they are unverified."""
    identifier = ".".join(reversed(client.hostname.split("."))) or "postern"
    account = {
        "PayloadType": "com.apple.mail.managed",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{identifier}.postern.mail.{uuid.uuid4()}",
        "PayloadUUID": str(uuid.uuid4()).upper(),
        "PayloadDisplayName": "Mail account",
        "PayloadDescription": f"Configures the mail account {address}",
        "EmailAccountDescription": _text(description),
        "EmailAccountName": _text(display_name),
        "EmailAccountType": "EmailTypeIMAP",
        "EmailAddress": address,
        "IncomingMailServerAuthentication": "EmailAuthPassword",
        "IncomingMailServerHostName": client.hostname,
        "IncomingMailServerPortNumber": client.imap_port,
        "IncomingMailServerUseSSL": True,
        "IncomingMailServerUsername": username,
        "OutgoingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingMailServerHostName": client.hostname,
        "OutgoingMailServerPortNumber": client.smtp_port,
        "OutgoingMailServerUseSSL": True,
        "OutgoingMailServerUsername": username,
        "OutgoingPasswordSameAsIncomingPassword": True,
        "PreventMove": False,
        "PreventAppSheet": False,
        "SMIMEEnabled": False,
        "allowMailDrop": True,
    }
    if password is not None:  # without one, the device asks for it when installing
        account["IncomingPassword"] = account["OutgoingPassword"] = password
    profile = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{identifier}.postern.{uuid.uuid4()}",
        "PayloadUUID": str(uuid.uuid4()).upper(),
        "PayloadDisplayName": f"{address} ({client.hostname})",
        "PayloadDescription": "Mail account settings",
        "PayloadOrganization": client.hostname,
        "PayloadRemovalDisallowed": False,
        "PayloadContent": [account],
    }
    return plistlib.dumps(profile, fmt=plistlib.FMT_XML)


class ApplicationPasswords:
    def __init__(self, db: Database, settings: Settings, server_key: ServerKey, authlog: AuthLog, *, bus: EventBus | None = None):
        self.db = db
        self.settings = settings
        self.server_key = server_key
        self.authlog = authlog
        self.bus = bus  # told when a password is deleted (remembered logins are forgotten)

    def digest(self, normalised: str) -> str:
        return self.server_key.digest(normalised, purpose=DIGEST_PURPOSE)

    async def create(
        self,
        user_id: str,
        description: str,
        scopes: Iterable[str] | str | None = None,
        *,
        generate_mobileconfig: bool = False,
        meta: AuthMeta = NO_META,
    ) -> CreatedPassword:
        from postern.storage.users import require_user

        description = description.strip()
        if not description:
            raise InvalidInput("description is required", field="description")
        wanted = normalise_scopes(scopes)
        profile: str | None = None
        for _attempt in range(3):
            password = generate_password()
            asp_id = new_id()
            try:
                async with self.db.write() as conn:
                    user = await require_user(conn, user_id, lock=True)
                    if generate_mobileconfig:
                        # Made before the commit: a profile that can not be made leaves no password behind.
                        profile = self._profile(user, password, description)
                    await store.insert_password(
                        conn,
                        {
                            "id": asp_id,
                            "user_id": user_id,
                            "description": description,
                            "scopes": orjson.dumps(wanted).decode(),
                            "password_digest": self.digest(password),
                            "created_ms": now_ms(),
                        },
                    )
                    await self.authlog.record_in(conn, user_id, "create asp", "success", meta, asp=asp_id, scopes=wanted)
            except IntegrityError:
                continue  # the same 75 random bits twice: make another
            break
        else:  # pragma: no cover - astronomically unlikely
            raise RuntimeError("could not make a unique application password")
        return CreatedPassword(asp_id, password, wanted, profile)

    def _profile(self, user: Row, password: str, description: str) -> str:
        address = user.address or (user.username if "@" in user.username else f"{user.username}@{self.settings.domain}")
        return mobileconfig(
            mail_client_settings(self.settings),
            username=user.username,
            address=address,
            display_name=user.name or user.username,
            password=password,
            description=description,
        )

    async def list(self, user_id: str) -> list[Row]:
        from postern.storage.users import require_user

        async with self.db.read() as conn:
            await require_user(conn, user_id)
            return await store.list_for_user(conn, user_id)

    async def delete(self, user_id: str, asp_id: str, meta: AuthMeta = NO_META) -> None:
        from postern.storage.users import require_user

        async with self.db.write() as conn:
            await require_user(conn, user_id, lock=True)
            if not is_id(asp_id) or not await store.delete_password(conn, user_id, asp_id):
                raise NotFound("Application specific password was not found", code="AspNotFound")
            await self.authlog.record_in(conn, user_id, "delete asp", "success", meta, asp=asp_id)
        if self.bus is not None:
            self.bus.publish([CredentialsChanged(user_id, "Application password deleted")])

    async def find(self, conn: Any, user_id: str, password: str) -> Row | None:
        """The user's ASP matching ``password``, inside the caller's transaction."""
        normalised = candidate(password)
        if normalised is None:
            return None
        return await store.get_by_digest(conn, user_id, self.digest(normalised))
