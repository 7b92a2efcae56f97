"""The identity service's v2 accounts: a Matrix user proves who they are with an
OpenID token that their homeserver vouches for, and gets an access token of ours;
when the operator publishes terms, they must be accepted before the rest of v2.

Terms come from ``POSTERN_IDENTITY_TERMS_FILE``, a JSON file in the shape that GET
``/_matrix/identity/v2/terms`` answers::

    {"policies": {"privacy_policy": {"version": "1.0",
        "en": {"name": "Privacy Policy", "url": "https://example.org/privacy-1.0.html"}}}}

A policy counts as accepted when one of its languages' URLs was accepted.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from postern.storage import validation_sessions as store
from postern.storage.database import Database
from postern.storage.ids import now_ms
from postern.verification import errors
from postern.verification.errors import MatrixError
from postern.verification.homeserver import (
    HomeserverError,
    Homeservers,
    parse_server_name,
)

MAX_TOKEN = 4096


@dataclass(frozen=True, slots=True)
class IdentityAccount:
    matrix_user_id: str
    accepted_terms: frozenset[str]


def load_terms(path: Path | None) -> dict[str, Any]:
    """The policies of the terms file (empty: no terms). A file that is not in the
    documented shape stops the start with a clear error."""
    if path is None:
        return {}
    try:
        document = json.loads(Path(path).read_text("utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(
            f"POSTERN_IDENTITY_TERMS_FILE cannot be read: {error}"
        ) from None
    policies = document.get("policies") if isinstance(document, dict) else None
    if not isinstance(policies, dict):
        raise ValueError('POSTERN_IDENTITY_TERMS_FILE must hold {"policies": {...}}')  # noqa: TRY004
    for name, policy in policies.items():
        if not isinstance(policy, dict) or not isinstance(policy.get("version"), str):
            raise ValueError(f"the policy {name!r} of the terms needs a version")  # noqa: TRY004
        languages = {k: v for k, v in policy.items() if k != "version"}
        if not languages or not all(
            isinstance(v, dict)
            and isinstance(v.get("url"), str)
            and isinstance(v.get("name"), str)
            for v in languages.values()
        ):
            raise ValueError(
                f"the policy {name!r} of the terms needs a name and url per language"
            )
    return policies


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class IdentityAccounts:
    def __init__(
        self,
        *,
        db: Database,
        homeservers: Homeservers,
        terms_file: Path | None = None,
        clock: Callable[[], int] = now_ms,
    ):
        self.db = db
        self.homeservers = homeservers
        self.policies = load_terms(terms_file)
        self.clock = clock

    async def register(
        self, *, access_token: object, token_type: object, matrix_server_name: object
    ) -> str:
        """Check the OpenID token with its homeserver; a new access token of ours."""
        if (
            not isinstance(access_token, str)
            or not access_token
            or len(access_token) > MAX_TOKEN
        ):
            raise MatrixError(
                errors.INVALID_PARAM, "access_token must be the OpenID token"
            )
        if token_type is not None and token_type != "Bearer":
            raise MatrixError(errors.INVALID_PARAM, "token_type must be Bearer")
        if not isinstance(matrix_server_name, str):
            raise MatrixError(
                errors.INVALID_PARAM, "matrix_server_name must be a server name"
            )
        try:
            parse_server_name(matrix_server_name)
        except ValueError as error:
            raise MatrixError(errors.INVALID_PARAM, str(error)) from None
        try:
            user_id = await self.homeservers.user_of(matrix_server_name, access_token)
        except HomeserverError as error:
            raise MatrixError(
                errors.UNAUTHORIZED,
                f"The OpenID token could not be verified: {error}",
                status=401,
            ) from None
        token = secrets.token_urlsafe(32)
        now = self.clock()
        async with self.db.write() as conn:
            await store.ensure_account(conn, user_id, now)
            await store.insert_token(conn, _digest(token), user_id, now)
        return token

    async def authenticate(self, token: str) -> IdentityAccount | None:
        if not token or len(token) > MAX_TOKEN:
            return None
        async with self.db.read() as conn:
            row = await store.account_of_token(conn, _digest(token))
        if row is None:
            return None
        return IdentityAccount(
            row.matrix_user_id,
            frozenset(u for u in row.accepted_terms.split("\n") if u),
        )

    async def logout(self, token: str) -> None:
        async with self.db.write() as conn:
            await store.delete_token(conn, _digest(token))

    def terms(self) -> dict[str, Any]:
        return {"policies": self.policies}

    def _urls(self) -> set[str]:
        return {
            lang["url"]
            for policy in self.policies.values()
            for key, lang in policy.items()
            if key != "version"
        }

    async def terms_signed(self, matrix_user_id: str) -> bool:
        if not self.policies:
            return True
        async with self.db.read() as conn:
            row = await store.get_account(conn, matrix_user_id)
        accepted = set(row.accepted_terms.split("\n")) if row is not None else set()
        return all(
            any(
                lang["url"] in accepted
                for key, lang in policy.items()
                if key != "version"
            )
            for policy in self.policies.values()
        )

    async def accept_terms(self, matrix_user_id: str, urls: Sequence[object]) -> None:
        known = self._urls()
        chosen = {u for u in urls if isinstance(u, str) and u in known}
        async with self.db.write() as conn:
            row = await store.get_account(conn, matrix_user_id)
            accepted = {
                u
                for u in (row.accepted_terms.split("\n") if row is not None else [])
                if u
            }
            await store.set_accepted_terms(
                conn, matrix_user_id, "\n".join(sorted(accepted | chosen))
            )
