"""A user's alias settings (the user API's ``/api/setting``): how random aliases are
made and on which domain by default, how senders are shown, whether to mail
notifications."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Row

from postern.accounts.addressing import normalise_domain
from postern.aliases.usable_domains import UsableDomain, usable_domains
from postern.config import Settings
from postern.errors import InvalidInput, NotFound
from postern.storage import alias_settings as store
from postern.storage.database import Database

ALIAS_GENERATORS = ("word", "uuid")
RANDOM_ALIAS_SUFFIXES = ("word", "random_string")
SENDER_FORMATS = ("AT", "A", "NAME_ONLY", "AT_ONLY", "NO_NAME")


@dataclass(frozen=True, slots=True)
class UserSettings:
    notification: bool
    alias_generator: str
    random_alias_default_domain: str | None
    sender_format: str
    random_alias_suffix: str


def default_domain(user: Row, domains: Sequence[UsableDomain]) -> str | None:
    """The domain of new random aliases: the user's choice while it is still usable,
    else the first operator domain (the first usable one when there is none)."""
    chosen = user.random_alias_default_domain
    if chosen and any(d.domain == chosen for d in domains):
        return str(chosen)
    operator = [d for d in domains if not d.is_custom]
    pool = operator or list(domains)
    return pool[0].domain if pool else None


def _choice(value: Any, field: str, allowed: Sequence[str], *, upper: bool = False) -> str:
    if isinstance(value, str):
        text = value.strip().upper() if upper else value.strip().lower()
        if text in allowed:
            return text
    raise InvalidInput(f"{field} must be one of {', '.join(allowed)}", field=field)


class AliasSettings:
    def __init__(self, *, db: Database, settings: Settings):
        self.db = db
        self.settings = settings

    async def _user(self, conn: Any, user_id: str) -> Row:
        user = await store.get(conn, user_id)
        if user is None:
            raise NotFound("This user does not exist")
        return user

    async def domains(self, user_id: str) -> list[UsableDomain]:
        """Where the user may make random aliases."""
        async with self.db.read() as conn:
            return await usable_domains(conn, self.settings, await self._user(conn, user_id))

    async def get(self, user_id: str) -> UserSettings:
        async with self.db.read() as conn:
            user = await self._user(conn, user_id)
            domains = await usable_domains(conn, self.settings, user)
        return self._of(user, domains)

    @staticmethod
    def _of(user: Row, domains: Sequence[UsableDomain]) -> UserSettings:
        return UserSettings(
            notification=bool(user.notification_emails),
            alias_generator=user.alias_generator,
            random_alias_default_domain=default_domain(user, domains),
            sender_format=user.sender_format,
            random_alias_suffix=user.random_alias_suffix,
        )

    async def update(self, user_id: str, changes: dict[str, Any]) -> UserSettings:
        """Change the settings named in ``changes`` (the API's names); every value is
        checked before any is written. ``random_alias_default_domain`` None goes back
        to the default domain."""
        values: dict[str, Any] = {}
        if "notification" in changes:
            if not isinstance(changes["notification"], bool):
                raise InvalidInput("notification must be true or false", field="notification")
            values["notification_emails"] = changes["notification"]
        if "alias_generator" in changes:
            values["alias_generator"] = _choice(changes["alias_generator"], "alias_generator", ALIAS_GENERATORS)
        if "random_alias_suffix" in changes:
            values["random_alias_suffix"] = _choice(changes["random_alias_suffix"], "random_alias_suffix", RANDOM_ALIAS_SUFFIXES)
        if "sender_format" in changes:
            values["sender_format"] = _choice(changes["sender_format"], "sender_format", SENDER_FORMATS, upper=True)
        async with self.db.write() as conn:
            user = await self._user(conn, user_id)
            domains = await usable_domains(conn, self.settings, user)
            if "random_alias_default_domain" in changes:
                values["random_alias_default_domain"] = self._domain(changes["random_alias_default_domain"], domains)
            await store.set_values(conn, user_id, values)
            user = await self._user(conn, user_id)
        return self._of(user, domains)

    @staticmethod
    def _domain(value: Any, domains: Sequence[UsableDomain]) -> str | None:
        field = "random_alias_default_domain"
        if value is None:
            return None
        if isinstance(value, str) and value.strip():
            try:
                ascii_domain, _ = normalise_domain(value, field)
            except InvalidInput:
                ascii_domain = ""
            if any(d.domain == ascii_domain for d in domains):
                return ascii_domain
        raise InvalidInput(f"{field} must be one of the domains of GET /api/v2/setting/domains", field=field)
