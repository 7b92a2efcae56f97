"""Sending as a remote identity: mail a user submits From the identity's address is
queued like any other (retries, DSNs, the Sent copy) with the route
``remote-identity:<id>``, and the queue hands it here: one SMTP transaction with the
identity's own server, TLS verified (implicit or STARTTLS, never without unless the
operator allows it for loopback), authenticated with the identity's credentials."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiosmtplib

from postern.accounts.server_key import ServerKey
from postern.delivery.outbound import Attempt
from postern.remote.connect import Connector
from postern.remote.credentials import unseal
from postern.remote.wire import RemoteError
from postern.storage import remote_identities as store
from postern.storage.database import Database
from postern.verification.ownership import address_is_proven

SCHEME = "remote-identity"


class RemoteSender:
    def __init__(self, db: Database, server_key: ServerKey, connector: Connector, hostname: str):
        self.db, self.server_key, self.connector, self.hostname = db, server_key, connector, hostname

    async def route_for(self, user_id: str, keys: Sequence[str | None]) -> str | None:
        """The route for mail whose sender addresses are ``keys``: one remote identity
        of the user's with an outgoing server, its address still proven the user's."""
        wanted = {k for k in keys}
        if not wanted or None in wanted or len(wanted) != 1:
            return None
        [key] = wanted
        if key is None:  # (not so: None is not among them; for the type checker)
            return None
        async with self.db.read() as conn:
            rows = await store.list_for_user(conn, user_id)
        for row in rows:
            if row.address_key == key and row.smtp_host and await address_is_proven(user_id, key, db=self.db):
                return f"{SCHEME}:{row.id}"
        return None

    async def send(self, target: str, mail_from: str, recipients: list[str], message: bytes) -> dict[str, Attempt]:
        identity_id = target.partition(":")[2]
        async with self.db.read() as conn:
            row = await store.get(conn, identity_id)
        if row is None or not row.smtp_host:
            return {r: Attempt(550, "550 5.7.1 The remote identity to send through no longer exists", None) for r in recipients}
        host = row.smtp_host
        try:
            endpoint = self.connector.endpoint(host, int(row.smtp_port or 587), row.smtp_tls or "starttls")
            password = await self._password(row)
        except RemoteError as error:
            return {r: Attempt(451, f"451 4.7.0 {error}", host) for r in recipients}
        client = aiosmtplib.SMTP(
            hostname=host,
            port=endpoint.port,
            local_hostname=self.hostname,
            timeout=endpoint.timeout,
            use_tls=endpoint.tls == "ssl",
            start_tls=False,
            validate_certs=endpoint.tls != "plain",
            tls_context=self.connector.context if endpoint.tls != "plain" else None,
        )
        try:
            await client.connect()
            await client.ehlo()
            if endpoint.tls == "starttls":
                if not client.supports_extension("starttls"):
                    return {r: Attempt(451, f"451 4.7.0 {host} does not offer STARTTLS", host) for r in recipients}
                await client.starttls(tls_context=self.connector.context)
            await client.login(row.smtp_login or row.login, password)
            errors, response = await client.sendmail(mail_from, recipients, message)
            results = {r: Attempt(250, response, host) for r in recipients}
            for rcpt, (code, text) in errors.items():
                results[rcpt] = Attempt(code, f"{code} {text}", host)
            return results
        except aiosmtplib.SMTPAuthenticationError as error:
            return {r: Attempt(451, f"451 4.7.8 {host} refused the identity's login ({error.code})", host) for r in recipients}
        except aiosmtplib.SMTPRecipientsRefused as error:
            refused = {x.recipient: Attempt(x.code, f"{x.code} {x.message}", host) for x in error.recipients}
            return refused | {r: Attempt(550, "550 5.1.1 Refused", host) for r in recipients if r not in refused}
        except aiosmtplib.SMTPResponseException as error:
            return {r: Attempt(error.code, f"{error.code} {error.message}", host) for r in recipients}
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            return {r: Attempt(451, f"451 4.4.1 Connection to {host} failed: {type(error).__name__}", host) for r in recipients}
        finally:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                client.close()

    async def _password(self, row: Any) -> str:
        if row.smtp_secret:
            return unseal(self.server_key, row.id, "smtp_secret", row.smtp_secret) or ""
        if row.auth == "oauth2":
            raise RemoteError("sending through an OAuth2 identity needs an SMTP password (smtp_password)")
        return unseal(self.server_key, row.id, "secret", row.secret) or ""
