"""Opening an authenticated connection to a remote identity's server: the TLS mode
and CA of the settings, the password or an OAuth2 access token (refreshed when it has
expired and kept, encrypted, for its lifetime)."""

from __future__ import annotations

import ipaddress
import ssl
from typing import Any

from postern.accounts.server_key import ServerKey
from postern.config import Settings
from postern.remote.credentials import (
    OAuthProvider,
    providers_from,
    refresh,
    seal,
    unseal,
)
from postern.remote.imap_client import ImapClient
from postern.remote.pop3_client import Pop3Client
from postern.remote.wire import (
    AuthenticationFailed,
    Endpoint,
    RemoteError,
    client_context,
)
from postern.storage import remote_identities as store
from postern.storage.database import Database
from postern.storage.ids import now_ms


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Connector:
    def __init__(self, db: Database, settings: Settings, server_key: ServerKey):
        self.db, self.settings, self.server_key = db, settings, server_key
        self.providers: dict[str, OAuthProvider] = providers_from(settings.remote_oauth2_providers)
        self._context: ssl.SSLContext | None = None

    @property
    def context(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = client_context(self.settings.remote_ca_file)
        return self._context

    def endpoint(self, host: str, port: int, tls: str) -> Endpoint:
        if tls == "plain" and not (self.settings.remote_allow_plain_loopback and is_loopback(host)):
            raise RemoteError("a connection without TLS is not allowed")
        return Endpoint(host, port, tls, self.settings.remote_timeout)

    def max_message(self) -> int:
        return self.settings.max_message_size

    async def access_token(self, row: Any) -> str:
        provider = self.providers.get(row.oauth_provider or "")
        if provider is None:
            raise AuthenticationFailed(f"the OAuth2 provider {row.oauth_provider!r} is not configured")
        if row.access_token and (row.access_expires_ms or 0) > now_ms() + 60_000:
            cached = unseal(self.server_key, row.id, "access_token", row.access_token)
            if cached:
                return cached
        refresh_token = unseal(self.server_key, row.id, "secret", row.secret)
        if not refresh_token:
            raise AuthenticationFailed("no refresh token is stored")
        fresh = await refresh(provider, refresh_token, self.settings.remote_timeout)
        async with self.db.write() as conn:
            await store.update_row(
                conn,
                row.id,
                {
                    "access_token": seal(self.server_key, row.id, "access_token", fresh.token),
                    "access_expires_ms": now_ms() + fresh.expires_in * 1000,
                },
            )
        return fresh.token

    async def forget_access_token(self, row: Any) -> None:
        async with self.db.write() as conn:
            await store.update_row(conn, row.id, {"access_token": None, "access_expires_ms": None})

    async def open(self, row: Any) -> ImapClient | Pop3Client:
        """A connected, authenticated client for the identity's incoming server."""
        endpoint = self.endpoint(row.host, row.port, row.tls)
        context = self.context if row.tls != "plain" else None
        client: ImapClient | Pop3Client
        if row.protocol == "IMAP":
            client = ImapClient(endpoint, context, self.max_message())
        else:
            client = Pop3Client(endpoint, context, self.max_message())
        try:
            await client.connect()
            if row.auth == "oauth2":
                token = await self.access_token(row)
                provider = self.providers[row.oauth_provider]
                try:
                    await client.login_oauth(provider.mechanism, row.login, token, row.host, row.port)
                except AuthenticationFailed:
                    # The token may have been revoked before its time: once more, fresh.
                    await self.forget_access_token(row)
                    raise
            else:
                password = unseal(self.server_key, row.id, "secret", row.secret)
                if password is None:
                    raise AuthenticationFailed("no password is stored")
                await client.login(row.login, password)
        except BaseException:
            if client.conn is not None:
                await client.conn.close()
            raise
        return client
