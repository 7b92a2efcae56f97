"""Remote identities: third-party mail accounts a user connects (the Caliopen RFC).

The service validates and stores them (secrets sealed with the server key, bound to
the row), tries the connection when one is created, and reports their state; the
fetching itself is ``fetcher.py`` under ``scheduler.py``."""

from __future__ import annotations

import ipaddress
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Row

from postern.accounts.addressing import normalise_address
from postern.accounts.server_key import ServerKey
from postern.config import Settings
from postern.errors import InvalidInput, NotFound
from postern.remote.connect import Connector, is_loopback
from postern.remote.credentials import seal
from postern.remote.wire import RemoteError
from postern.storage import remote_identities as store
from postern.storage.database import Database
from postern.storage.ids import now_ms
from postern.verification.ownership import address_is_proven

PROTOCOLS = ("IMAP", "POP3")
TLS_MODES = ("ssl", "starttls", "plain")
FETCH_METHODS = ("from_now", "all")
DEFAULT_PORTS = {
    ("IMAP", "ssl"): 993,
    ("IMAP", "starttls"): 143,
    ("IMAP", "plain"): 143,
    ("POP3", "ssl"): 995,
    ("POP3", "starttls"): 110,
    ("POP3", "plain"): 110,
}
SMTP_PORTS = {"ssl": 465, "starttls": 587, "plain": 25}
_HOST = re.compile(r"^(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?$")
MAX_PER_USER = 50
NOT_FOUND = "Remote identity not found"


def _host(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{field} must be a host name", field=field)
    text = value.strip()
    if _HOST.match(text) or is_loopback(text):
        return text.lower().rstrip(".")
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        raise InvalidInput(f"{field} must be a host name", field=field) from None


def _port(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidInput(f"{field} must be a port number", field=field)
    text = str(value).strip()
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise InvalidInput(f"{field} must be a port number", field=field)
    return int(text)


def _text(value: Any, field: str, limit: int = 320) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise InvalidInput(
            f"{field} must be a non-empty string of at most {limit} characters",
            field=field,
        )
    if any(c in value for c in "\r\n\x00"):
        raise InvalidInput(f"{field} must not contain line breaks or NUL", field=field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{field} must be valid Unicode text", field=field) from None
    return value


def _choice(value: Any, field: str, choices: tuple[str, ...], upper: bool = False) -> str:
    text = value.upper() if upper and isinstance(value, str) else value
    if text not in choices:
        raise InvalidInput(f"{field} must be one of {', '.join(choices)}", field=field)
    return str(text)


def _folders(value: Any) -> list[str]:
    if value == "all" or value == ["*"]:
        return ["*"]
    if not isinstance(value, list) or not value or len(value) > 100:
        raise InvalidInput(
            'params.folders must be "all" or a list of 1 to 100 folder names',
            field="folders",
        )
    names = []
    for item in value:
        names.append(_text(item, "params.folders", 512))
    return list(dict.fromkeys(names))


@dataclass(frozen=True, slots=True)
class Tried:
    connected: bool
    error: str | None


class RemoteIdentities:
    def __init__(self, db: Database, settings: Settings, server_key: ServerKey):
        self.db, self.settings, self.server_key = db, settings, server_key
        self.connector = Connector(db, settings, server_key)
        # Set by the scheduler when this process runs one: woken on changes.
        self.on_change: Any = None

    # Reading ---------------------------------------------------------------------------

    async def list(self, user_id: str) -> list[Row]:
        async with self.db.read() as conn:
            return await store.list_for_user(conn, user_id)

    async def get(self, user_id: str, identity_id: str) -> Row:
        if not _is_uuid(identity_id):
            raise NotFound(NOT_FOUND)
        async with self.db.read() as conn:
            row = await store.get(conn, identity_id, user_id)
        if row is None:
            raise NotFound(NOT_FOUND)
        return row

    # Writing ---------------------------------------------------------------------------

    async def create(self, user_id: str, body: dict[str, Any]) -> tuple[Row, Tried]:
        identity_type = body.get("identity_type", "email")
        if identity_type in ("im", "social_identity", "social_identitiy"):
            raise InvalidInput(
                f"identity_type {identity_type} is not supported yet: only email",
                field="identity_type",
            )
        if identity_type != "email":
            raise InvalidInput("identity_type must be email", field="identity_type")
        address = await self._owned_address(user_id, body.get("identity_id"))
        params = body.get("params")
        if not isinstance(params, dict):
            raise InvalidInput("params is required", field="params")
        identity_id = str(uuid.uuid4())
        values = self._params(identity_id, params, current=None)
        now = now_ms()
        values.update(
            id=identity_id,
            user_id=user_id,
            identity_type="email",
            address=address.display,
            address_key=address.key,
            connection_required=_bool(body.get("connection_required", True), "connection_required"),
            cancel_fetch_required=False,
            next_fetch_ms=now,
            created_ms=now,
            updated_ms=now,
        )
        async with self.db.write() as conn:
            if await store.count_for_user(conn, user_id) >= MAX_PER_USER:
                raise InvalidInput(f"A user may have at most {MAX_PER_USER} remote identities")
            await store.insert(conn, values)
        row = await self.get(user_id, identity_id)
        tried = await self.try_connection(row)
        self._changed(identity_id)
        return await self.get(user_id, identity_id), tried

    async def update(self, user_id: str, identity_id: str, body: dict[str, Any]) -> Row:
        row = await self.get(user_id, identity_id)
        values: dict[str, Any] = {}
        if "identity_type" in body and body["identity_type"] != "email":
            raise InvalidInput(
                "identity_type cannot be changed (only email is supported)",
                field="identity_type",
            )
        if "identity_id" in body and body["identity_id"] not in (None, row.address):
            address = await self._owned_address(user_id, body["identity_id"])
            values.update(address=address.display, address_key=address.key)
        if "connection_required" in body:
            values["connection_required"] = _bool(body["connection_required"], "connection_required")
            if values["connection_required"] and not row.connection_required:
                values.update(
                    stopped=False,
                    failures=0,
                    failing_since_ms=None,
                    next_fetch_ms=now_ms(),
                )
        if "cancel_fetch_required" in body:
            values["cancel_fetch_required"] = _bool(body["cancel_fetch_required"], "cancel_fetch_required")
        params = body.get("params")
        if params is not None:
            if not isinstance(params, dict):
                raise InvalidInput("params must be an object", field="params")
            changed = self._params(row.id, params, current=row)
            connection_keys = (
                "protocol",
                "host",
                "port",
                "tls",
                "login",
                "secret",
                "auth",
                "oauth_provider",
            )
            if any(k in changed and changed[k] != getattr(row, k) for k in connection_keys):
                changed.update(
                    connected=False,
                    stopped=False,
                    failures=0,
                    failing_since_ms=None,
                    next_fetch_ms=now_ms(),
                    last_error=None,
                )
                changed.update(access_token=None, access_expires_ms=None)
            values.update(changed)
        if values:
            values["updated_ms"] = now_ms()
            async with self.db.write() as conn:
                await store.update_row(conn, row.id, values)
            self._changed(row.id)
        return await self.get(user_id, identity_id)

    async def delete(self, user_id: str, identity_id: str) -> None:
        if not _is_uuid(identity_id):
            raise NotFound(NOT_FOUND)
        async with self.db.write() as conn:
            if not await store.delete_row(conn, user_id, identity_id):
                raise NotFound(NOT_FOUND)
        self._changed(identity_id)

    def _changed(self, identity_id: str) -> None:
        if self.on_change is not None:
            self.on_change(identity_id)

    async def _owned_address(self, user_id: str, value: Any) -> Any:
        if not isinstance(value, str) or not value.strip():
            raise InvalidInput("identity_id must be the identity's email address", field="identity_id")
        address = normalise_address(_text(value, "identity_id"), "identity_id")
        if not await address_is_proven(user_id, address.key, db=self.db):
            raise InvalidInput(
                "identity_id must be an address of yours: a hosted address, a verified mailbox, or an address proven by email validation",
                field="identity_id",
            )
        return address

    def _params(self, identity_id: str, params: dict[str, Any], current: Row | None) -> dict[str, Any]:
        """The columns for ``params`` (all of them when creating, the ones given when
        updating). A password left out (or null) keeps the stored one."""
        known = {
            "login", "password", "mail_protocol", "incomming_mail_server", "mail_port", "fetch_method", "tls", "auth",
            "oauth_provider", "refresh_token", "folders", "keep_on_server", "poll_interval", "outgoing_mail_server",
            "smtp_port", "smtp_tls", "smtp_login", "smtp_password",
        }  # fmt: skip
        unknown = sorted(set(params) - known)
        if unknown:
            raise InvalidInput(f"params.{unknown[0]} is not a known parameter", field=unknown[0])
        creating = current is None
        values: dict[str, Any] = {}

        def given(key: str) -> bool:
            return key in params and params[key] is not None

        if creating or given("mail_protocol"):
            values["protocol"] = _choice(
                params.get("mail_protocol"),
                "params.mail_protocol",
                PROTOCOLS,
                upper=True,
            )
        if creating or given("incomming_mail_server"):
            values["host"] = _host(params.get("incomming_mail_server"), "params.incomming_mail_server")
        if creating or given("tls"):
            values["tls"] = _choice(params.get("tls", "ssl"), "params.tls", TLS_MODES)
        protocol = values.get("protocol", current.protocol if current else "IMAP")
        tls = values.get("tls", current.tls if current else "ssl")
        host = values.get("host", current.host if current else "")
        if tls == "plain" and not (self.settings.remote_allow_plain_loopback and is_loopback(host)):
            raise InvalidInput(
                "params.tls must be ssl or starttls: connections without TLS are not allowed",
                field="tls",
            )
        if given("mail_port"):
            values["port"] = _port(params["mail_port"], "params.mail_port")
        elif creating or (("protocol" in values or "tls" in values) and _default_port(current)):
            values["port"] = DEFAULT_PORTS[(protocol, tls)]
        if creating or given("login"):
            values["login"] = _text(params.get("login"), "params.login")
        if creating or given("auth"):
            values["auth"] = _choice(params.get("auth", "password"), "params.auth", ("password", "oauth2"))
        auth = values.get("auth", current.auth if current else "password")
        if auth == "oauth2":
            provider = params.get("oauth_provider", current.oauth_provider if current else None)
            if provider not in self.connector.providers:
                raise InvalidInput(
                    "params.oauth_provider must name an OAuth2 provider the operator configured",
                    field="oauth_provider",
                )
            values["oauth_provider"] = provider
            if given("refresh_token"):
                values["secret"] = seal(
                    self.server_key,
                    identity_id,
                    "secret",
                    _text(params["refresh_token"], "params.refresh_token", 4096),
                )
            elif creating or (current is not None and current.auth != "oauth2"):
                raise InvalidInput("params.refresh_token is required for OAuth2", field="refresh_token")
        else:
            values["oauth_provider"] = None
            if given("password"):
                values["secret"] = seal(
                    self.server_key,
                    identity_id,
                    "secret",
                    _text(params["password"], "params.password", 1024),
                )
            elif creating or (current is not None and current.auth != "password"):
                raise InvalidInput("params.password is required", field="password")
        if creating or given("fetch_method"):
            values["fetch_method"] = _choice(
                params.get("fetch_method", "from_now"),
                "params.fetch_method",
                FETCH_METHODS,
            )
        if creating or given("folders"):
            values["folders"] = json.dumps(_folders(params.get("folders", ["INBOX"])))
        if creating or given("keep_on_server"):
            values["keep_on_server"] = _bool(params.get("keep_on_server", True), "params.keep_on_server")
        if protocol == "POP3" and (values.get("folders") or (current.folders if current else '["INBOX"]')) != '["INBOX"]':
            raise InvalidInput("params.folders: POP3 has only the INBOX", field="folders")
        if creating or given("poll_interval"):
            interval = params.get("poll_interval", self.settings.remote_poll_interval)
            if (
                isinstance(interval, bool)
                or not isinstance(interval, int)
                or not self.settings.remote_min_poll_interval <= interval <= 86400
            ):
                raise InvalidInput(
                    f"params.poll_interval must be seconds from {self.settings.remote_min_poll_interval} to 86400",
                    field="poll_interval",
                )
            values["poll_interval_s"] = interval
        if given("outgoing_mail_server"):
            values["smtp_host"] = _host(params["outgoing_mail_server"], "params.outgoing_mail_server")
        if creating or given("smtp_tls"):
            values["smtp_tls"] = _choice(params.get("smtp_tls", "starttls"), "params.smtp_tls", TLS_MODES)
        smtp_tls = values.get("smtp_tls", current.smtp_tls if current else "starttls")
        smtp_host = values.get("smtp_host", current.smtp_host if current else None)
        if smtp_tls == "plain" and not (smtp_host and self.settings.remote_allow_plain_loopback and is_loopback(smtp_host)):
            raise InvalidInput("params.smtp_tls must be ssl or starttls", field="smtp_tls")
        if given("smtp_port"):
            values["smtp_port"] = _port(params["smtp_port"], "params.smtp_port")
        elif creating or "smtp_tls" in values:
            values["smtp_port"] = SMTP_PORTS[smtp_tls]
        if given("smtp_login"):
            values["smtp_login"] = _text(params["smtp_login"], "params.smtp_login")
        if given("smtp_password"):
            values["smtp_secret"] = seal(
                self.server_key,
                identity_id,
                "smtp_secret",
                _text(params["smtp_password"], "params.smtp_password", 1024),
            )
        return values

    # The connection -----------------------------------------------------------------------

    async def try_connection(self, row: Row) -> Tried:
        """Connect and log in now; the identity's state records the outcome."""
        error: str | None = None
        try:
            client = await self.connector.open(row)
            await client.close()
        except RemoteError as failure:
            error = str(failure)
        now = now_ms()
        async with self.db.write() as conn:
            await store.update_row(
                conn,
                row.id,
                {
                    "connected": error is None,
                    "last_connection_ms": now,
                    "last_error": error,
                },
            )
        return Tried(error is None, error)


def _default_port(row: Row | None) -> bool:
    return row is None or DEFAULT_PORTS.get((row.protocol, row.tls)) == row.port


def _bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(f"{field} must be true or false", field=field)
    return value


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower() and len(value) == 36
    except ValueError:
        return False
