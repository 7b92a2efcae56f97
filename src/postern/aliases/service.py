"""Aliases: making them (custom, with a signed suffix, or random), listing, changing and
deleting them, their activities and contacts (``runtime.aliases``).

A deleted alias's address goes to ``deleted_aliases`` in the transaction that deletes
it, so that nobody can ever make it again (mail to it may still be in flight or be
sent years later by whoever had it)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.accounts.addressing import NormalisedAddress, normalise_address, normalise_domain
from postern.accounts.server_key import ServerKey
from postern.aliases import contacts as contact_rules
from postern.aliases import words
from postern.aliases.address_rules import check_alias_address, is_reserved
from postern.aliases.availability import address_taken
from postern.aliases.suffixes import SuffixSigner
from postern.aliases.usable_domains import UsableDomain, usable_domains
from postern.config import Settings
from postern.errors import Conflict, Forbidden, InvalidInput, NotFound
from postern.mime import header_writing
from postern.storage import aliases as store
from postern.storage import contacts as contact_store
from postern.storage.address_claims import AddressClaimed
from postern.storage.database import Database
from postern.storage.ids import now_ms

PAGE_SIZE = 20
MAX_PREFIX = 40
MAX_NOTE = 10_000
MAX_NAME = 255
MAX_HOSTNAME = 253
MAX_MAILBOXES = 50
MAX_QUERY = 255
# Ids are 32-bit integers in the database; anything else names nothing.
MAX_ID = 2**31 - 1
RANDOM_ATTEMPTS = 20
CANNOT_REVERSE_ALIAS = "Please upgrade to create a reverse-alias"

_PREFIX = re.compile(r"^[0-9a-z_.-]+$")
_SUGGESTION_DROP = re.compile(r"[^0-9a-z_.-]")
# Second-level labels under which a country's registrable names sit (``bbc.co.uk``).
_SECOND_LEVEL = frozenset("co com net org gov edu ac or ne go gob nic mil ltd plc".split())
_HOSTNAME_NOISE = frozenset(("www", "m", "mobile", "web", "app", "login", "accounts", "account", "signup", "auth"))


@dataclass(frozen=True, slots=True)
class SuffixOption:
    suffix: str
    signed_suffix: str
    is_custom: bool
    is_premium: bool


@dataclass(frozen=True, slots=True)
class Options:
    can_create: bool
    prefix_suggestion: str
    suffixes: list[SuffixOption]
    recommendation: tuple[str, str] | None  # (alias, hostname)


@dataclass(frozen=True, slots=True)
class LatestActivity:
    action: str
    ms: int
    contact_email: str
    contact_name: str | None
    reverse_alias: str  # as displayed


@dataclass(frozen=True, slots=True)
class AliasView:
    id: int
    email: str
    name: str | None
    note: str | None
    enabled: bool
    pinned: bool
    disable_pgp: bool
    created_ms: int
    nb_forward: int
    nb_block: int
    nb_reply: int
    mailboxes: list[tuple[int, str]]  # (id, email), the primary first
    latest_activity: LatestActivity | None


@dataclass(frozen=True, slots=True)
class Activity:
    action: str
    from_: str
    to: str
    ms: int
    reverse_alias: str  # as displayed
    reverse_alias_address: str


@dataclass(frozen=True, slots=True)
class ContactView:
    id: int
    email: str
    name: str | None
    created_ms: int
    last_email_sent_ms: int | None
    reverse_alias: str  # as displayed
    reverse_alias_address: str
    block_forward: bool


@dataclass(frozen=True, slots=True)
class Stats:
    nb_alias: int
    nb_forward: int
    nb_reply: int
    nb_block: int


def prefix_suggestion(hostname: str | None) -> str:
    """The website's name from its hostname: ``www.facebook.com`` → ``facebook``,
    ``news.bbc.co.uk`` → ``bbc``; lowercase, only ``[0-9a-z-_.]``."""
    if not hostname:
        return ""
    host = hostname.strip().lower().rstrip(".")[:MAX_HOSTNAME]
    host = host.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    labels = [label for label in host.split(".") if label]
    if not labels:
        return ""
    if len(labels) == 1:
        chosen = labels[0]
    elif len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVEL:
        chosen = labels[-3]
    else:
        chosen = labels[-2]
        if chosen in _HOSTNAME_NOISE and len(labels) == 2:
            chosen = labels[0]
    return _SUGGESTION_DROP.sub("", chosen)[:MAX_PREFIX].strip(".")


def check_prefix(value: str) -> str:
    """An alias prefix: 1-40 of ``[0-9a-z-_.]`` (lowercased), not starting or ending
    with a dot, no two dots in a row."""
    prefix = value.strip().lower()
    if not prefix:
        raise InvalidInput("alias_prefix cannot be empty", field="alias_prefix")
    if len(prefix) > MAX_PREFIX:
        raise InvalidInput(f"alias_prefix must be at most {MAX_PREFIX} characters", field="alias_prefix")
    if not _PREFIX.match(prefix):
        raise InvalidInput("alias_prefix can only contain letters, digits, dots, hyphens and underscores", field="alias_prefix")
    if prefix.startswith(".") or prefix.endswith(".") or ".." in prefix:
        raise InvalidInput("alias_prefix cannot start or end with a dot, nor have two dots in a row", field="alias_prefix")
    return prefix


def check_hostname(value: str | None) -> str | None:
    """The website an alias is for, as kept (lowercase); None when not given."""
    if value is None:
        return None
    host = value.strip().lower()
    if not host:
        return None
    if len(host) > MAX_HOSTNAME or "\x00" in host or not host.isprintable():
        raise InvalidInput(f"hostname must be a host name of at most {MAX_HOSTNAME} characters", field="hostname")
    return host


def _check_text(value: str | None, field: str, limit: int) -> str | None:
    if value is None:
        return None
    if len(value) > limit:
        raise InvalidInput(f"{field} must be at most {limit} characters", field=field)
    if "\x00" in value:
        raise InvalidInput(f"{field} must not contain NUL characters", field=field)
    return value


def _check_name(value: str | None, field: str = "name") -> str | None:
    """A display name that goes into mail headers: no line breaks or other control
    characters (a header injection otherwise), at most MAX_NAME characters."""
    value = _check_text(value, field, MAX_NAME)
    if value is not None and header_writing.has_control(value):
        raise InvalidInput(f"{field} must not contain line breaks or control characters", field=field)
    return value


def _check_id(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_ID:
        raise NotFound(f"{what} not found")
    return value


def _display(email: str, name: str | None, reverse_alias: str) -> str:
    return contact_rules.reverse_alias_display(SimpleNamespace(email=email, name=name, reverse_alias=reverse_alias))  # type: ignore[arg-type]


def _latest(row: Row) -> LatestActivity | None:
    if row.latest_activity_action is None or row.contact_email is None:
        return None
    return LatestActivity(
        action=row.latest_activity_action,
        ms=row.latest_activity_ms,
        contact_email=row.contact_email,
        contact_name=row.contact_name,
        reverse_alias=_display(row.contact_email, row.contact_name, row.contact_reverse_alias),
    )


def _view(row: Row, boxes: list[tuple[int, str]]) -> AliasView:
    primary = [b for b in boxes if b[0] == row.mailbox_id] or [(row.mailbox_id, row.mailbox_email)]
    ordered = primary + [b for b in boxes if b[0] != row.mailbox_id]
    return AliasView(
        id=row.id,
        email=row.email,
        name=row.name,
        note=row.note,
        enabled=bool(row.enabled),
        pinned=bool(row.pinned),
        disable_pgp=bool(row.disable_pgp),
        created_ms=row.created_ms,
        nb_forward=row.nb_forward,
        nb_block=row.nb_block,
        nb_reply=row.nb_reply,
        mailboxes=ordered,
        latest_activity=_latest(row),
    )


def contact_view(row: Row) -> ContactView:
    return ContactView(
        id=row.id,
        email=row.email,
        name=row.name,
        created_ms=row.created_ms,
        last_email_sent_ms=row.last_email_sent_ms,
        reverse_alias=contact_rules.reverse_alias_display(row),
        reverse_alias_address=row.reverse_alias,
        block_forward=bool(row.block_forward),
    )


class Aliases:
    def __init__(self, db: Database, settings: Settings, server_key: ServerKey):
        self.db = db
        self.settings = settings
        self.signer = SuffixSigner(server_key)

    # Creation ---------------------------------------------------------------------------

    async def _count_allows(self, conn: AsyncConnection, user: Row, more: int = 1) -> bool:
        if user.premium:
            return True
        return await store.count_of_user(conn, user.id) + more <= self.settings.max_alias_free_plan

    async def check_can_create(self, conn: AsyncConnection, user: Row) -> None:
        """InvalidInput when a user without premium has the free plan's aliases
        already (in the caller's write transaction)."""
        if not await self._count_allows(conn, user):
            raise InvalidInput(
                f"You have reached the limit of {self.settings.max_alias_free_plan} aliases of the free plan: "
                "upgrade to premium to create more"
            )

    def _suffix_for(self, user: Row, domain: UsableDomain) -> str:
        if domain.is_custom:
            return f"{words.plain_word_suffix() if domain.random_prefix_generation else ''}@{domain.domain}"
        random_part = words.string_suffix() if user.random_alias_suffix == "random_string" else words.word_suffix()
        return f"{random_part}@{domain.domain}"

    async def options(self, user: Row, hostname: str | None, *, premium_offers: bool = True) -> Options:
        """``premium_offers``: list the premium domains to users without premium too
        (flagged ``is_premium``), for clients that can show them as offers."""
        host = check_hostname(hostname)
        async with self.db.read() as conn:
            can_create = await self._count_allows(conn, user)
            domains = await usable_domains(conn, self.settings, user, include_premium_offers=premium_offers)
            found = await store.latest_for_hostname(conn, user.id, host) if host else None
        suffixes = []
        for domain in domains:
            suffix = self._suffix_for(user, domain)
            suffixes.append(SuffixOption(suffix, self.signer.sign(suffix, user.id), domain.is_custom, domain.is_premium))
        return Options(
            can_create=can_create,
            prefix_suggestion=prefix_suggestion(host),
            suffixes=suffixes,
            recommendation=(found.email, found.hostname) if found is not None else None,
        )

    async def _checked_mailboxes(self, conn: AsyncConnection, user_id: str, mailbox_ids: Sequence[int]) -> list[int]:
        ids = list(dict.fromkeys(mailbox_ids))
        if not ids:
            raise InvalidInput("mailbox_ids must name at least one mailbox", field="mailbox_ids")
        if len(ids) > MAX_MAILBOXES:
            raise InvalidInput(f"An alias can have at most {MAX_MAILBOXES} mailboxes", field="mailbox_ids")
        valid = [m for m in ids if isinstance(m, int) and not isinstance(m, bool) and 0 < m <= MAX_ID]
        found = await store.user_mailboxes(conn, user_id, valid)
        for mailbox_id in ids:
            row = found.get(mailbox_id)
            if row is None:
                raise InvalidInput(f"mailbox {mailbox_id} not found", field="mailbox_ids")
            if not row.verified:
                raise InvalidInput(f"mailbox {row.email} is not verified", field="mailbox_ids")
        return ids

    async def _default_mailbox(self, conn: AsyncConnection, user_id: str) -> int:
        boxes = await store.verified_mailboxes(conn, user_id)
        if not boxes:
            raise InvalidInput("You have no verified mailbox to forward to")
        return int(boxes[0].id)

    async def insert_new(
        self,
        conn: AsyncConnection,
        user: Row,
        address: NormalisedAddress,
        domain: UsableDomain,
        mailbox_ids: Sequence[int],
        *,
        note: str | None = None,
        name: str | None = None,
        hostname: str | None = None,
        enabled: bool = True,
    ) -> int:
        """A new alias at ``address`` in the caller's write transaction, once the
        domain and the mailboxes are checked; Conflict when the address is taken
        (an address, alias, reverse alias, or an alias ever deleted)."""
        if await address_taken(conn, address.key):
            raise Conflict(f"{address.display} already exists or was deleted: please choose another one")
        try:
            return await store.insert_alias(
                conn,
                user_id=user.id,
                email=address.display,
                email_key=address.key,
                mailbox_ids=mailbox_ids,
                created_ms=now_ms(),
                custom_domain_id=domain.custom_domain_id,
                name=name,
                note=note,
                hostname=hostname,
                enabled=enabled,
            )
        except (IntegrityError, AddressClaimed):
            raise Conflict(f"{address.display} already exists or was deleted: please choose another one") from None

    async def create_custom(
        self,
        user: Row,
        *,
        prefix: str,
        signed_suffix: str,
        mailbox_ids: Sequence[int] | None,
        note: str | None = None,
        name: str | None = None,
        hostname: str | None = None,
    ) -> AliasView:
        """``mailbox_ids`` None: the user's default mailbox."""
        suffix = self.signer.unsign(signed_suffix, user.id)
        prefix = check_prefix(prefix)
        note = _check_text(note, "note", MAX_NOTE)
        name = _check_name(name)
        host = check_hostname(hostname)
        address = normalise_address(prefix + suffix, "alias")
        domain_ascii = suffix.rpartition("@")[2]
        async with self.db.write() as conn:
            offered = await usable_domains(conn, self.settings, user, include_premium_offers=True)
            domain = next((d for d in offered if d.domain == domain_ascii), None)
            if domain is None:
                raise InvalidInput(f"{domain_ascii} is not a domain you can use for aliases", field="signed_suffix")
            if domain.is_premium and not user.premium:
                raise Forbidden(f"{domain_ascii} is a premium domain: upgrade to premium to use it")
            check_alias_address(address, domain, self.settings, imported=False, field="alias_prefix")
            await self.check_can_create(conn, user)
            boxes = (
                await self._checked_mailboxes(conn, user.id, mailbox_ids)
                if mailbox_ids is not None
                else [await self._default_mailbox(conn, user.id)]
            )
            alias_id = await self.insert_new(conn, user, address, domain, boxes, note=note, name=name, hostname=host)
        return await self.get(user.id, alias_id)

    def _random_domain(self, user: Row, domains: list[UsableDomain]) -> UsableDomain:
        if not domains:
            raise InvalidInput("There is no domain you can make aliases on")
        wanted = user.random_alias_default_domain
        if wanted:
            try:
                wanted_ascii = normalise_domain(wanted)[0]
            except InvalidInput:
                wanted_ascii = None
            for domain in domains:
                if domain.domain == wanted_ascii:
                    return domain
        # The first operator domain, as SimpleLogin does; custom domains only when
        # chosen as the default.
        return next((d for d in domains if not d.is_custom), domains[0])

    async def create_random(self, user: Row, *, hostname: str | None = None, mode: str | None = None, note: str | None = None) -> AliasView:
        mode = mode or user.alias_generator or "word"
        if mode not in ("word", "uuid"):
            raise InvalidInput("mode must be word or uuid", field="mode")
        note = _check_text(note, "note", MAX_NOTE)
        host = check_hostname(hostname)
        make = words.uuid_local if mode == "uuid" else words.word_local
        async with self.db.write() as conn:
            await self.check_can_create(conn, user)
            domain = self._random_domain(user, await usable_domains(conn, self.settings, user))
            mailbox_id = await self._default_mailbox(conn, user.id)
            for _ in range(RANDOM_ATTEMPTS):
                address = normalise_address(f"{make()}@{domain.domain}", "alias")
                if not is_reserved(address.local, self.settings) and not await address_taken(conn, address.key):
                    alias_id = await self.insert_new(conn, user, address, domain, [mailbox_id], note=note, hostname=host)
                    break
            else:
                raise Conflict("No free random address was found: please retry")
        return await self.get(user.id, alias_id)

    # Reading ----------------------------------------------------------------------------

    async def get(self, user_id: str, alias_id: int) -> AliasView:
        _check_id(alias_id, "Alias")
        async with self.db.read() as conn:
            rows = await store.views(conn, [alias_id])
            if not rows or rows[0].user_id != user_id:
                raise NotFound("Alias not found")
            boxes = await store.mailboxes_of(conn, [alias_id])
        return _view(rows[0], boxes[alias_id])

    async def page(
        self, user_id: str, page_id: int, *, pinned: bool = False, enabled: bool | None = None, query: str | None = None
    ) -> list[AliasView]:
        """One page (PAGE_SIZE) of the user's aliases: pinned first, then by latest
        activity. Two queries whatever the page: the page's rows (ids picked from the
        covering index) with primary mailbox and latest contact, then their mailboxes."""
        query = _check_text(query, "query", MAX_QUERY)
        query = query.strip() if query else None
        async with self.db.read() as conn:
            rows = await store.page_views(
                conn, user_id, offset=page_id * PAGE_SIZE, limit=PAGE_SIZE, pinned=pinned, enabled=enabled, query=query
            )
            boxes = await store.mailboxes_of(conn, [r.id for r in rows])
        return [_view(row, boxes[row.id]) for row in rows]

    async def stats(self, user_id: str) -> Stats:
        async with self.db.read() as conn:
            row = await store.stats(conn, user_id)
        return Stats(int(row.nb_alias), int(row.nb_forward), int(row.nb_reply), int(row.nb_block))

    async def activities(self, user_id: str, alias_id: int, page_id: int) -> list[Activity]:
        _check_id(alias_id, "Alias")
        async with self.db.read() as conn:
            alias = await store.get(conn, user_id, alias_id)
            if alias is None:
                raise NotFound("Alias not found")
            rows = await store.activities_page(conn, alias_id, page_id * PAGE_SIZE, PAGE_SIZE)
        found = []
        for row in rows:
            outward = row.action == "reply"
            found.append(
                Activity(
                    action=row.action,
                    from_=alias.email if outward else row.contact_email,
                    to=row.contact_email if outward else alias.email,
                    ms=row.created_ms,
                    reverse_alias=_display(row.contact_email, row.contact_name, row.contact_reverse_alias),
                    reverse_alias_address=row.contact_reverse_alias,
                )
            )
        return found

    # Changing ---------------------------------------------------------------------------

    async def toggle(self, user_id: str, alias_id: int) -> bool:
        _check_id(alias_id, "Alias")
        async with self.db.write() as conn:
            alias = await store.get(conn, user_id, alias_id)
            if alias is None:
                raise NotFound("Alias not found")
            enabled = not alias.enabled
            await store.update_alias(conn, user_id, alias_id, {"enabled": enabled})
        return enabled

    async def update(self, user_id: str, alias_id: int, changes: dict[str, Any]) -> None:
        """``changes``: any of note, name (None clears them), mailbox_id, mailbox_ids,
        disable_pgp, pinned."""
        _check_id(alias_id, "Alias")
        values: dict[str, Any] = {}
        if "note" in changes:
            values["note"] = _check_text(changes["note"], "note", MAX_NOTE)
        if "name" in changes:
            values["name"] = _check_name(changes["name"])
        for flag in ("disable_pgp", "pinned"):
            if changes.get(flag) is not None:
                values[flag] = bool(changes[flag])
        boxes: list[int] | None = None
        if changes.get("mailbox_ids") is not None:
            boxes = list(changes["mailbox_ids"])
        elif changes.get("mailbox_id") is not None:
            boxes = [changes["mailbox_id"]]
        async with self.db.write() as conn:
            alias = await store.get(conn, user_id, alias_id)
            if alias is None:
                raise NotFound("Alias not found")
            if boxes is not None:
                await store.set_mailboxes(conn, user_id, alias_id, await self._checked_mailboxes(conn, user_id, boxes))
            if values:
                await store.update_alias(conn, user_id, alias_id, values)

    async def delete(self, user_id: str, alias_id: int) -> None:
        _check_id(alias_id, "Alias")
        async with self.db.write() as conn:
            alias = await store.get(conn, user_id, alias_id)
            if alias is None:
                raise NotFound("Alias not found")
            await store.delete_to_trash(conn, alias, now_ms())

    # Contacts ---------------------------------------------------------------------------

    async def contacts(self, user_id: str, alias_id: int, page_id: int) -> list[ContactView]:
        _check_id(alias_id, "Alias")
        async with self.db.read() as conn:
            if await store.get(conn, user_id, alias_id) is None:
                raise NotFound("Alias not found")
            rows = await contact_store.page_of_alias(conn, alias_id, page_id * PAGE_SIZE, PAGE_SIZE)
        return [contact_view(r) for r in rows]

    def can_create_reverse_alias(self, user: Row) -> bool:
        return bool(user.premium) or self.settings.free_reverse_alias

    async def create_contact(self, user: Row, alias_id: int, contact: str) -> tuple[ContactView, bool]:
        """(contact, created): an existing contact of the alias is returned as is."""
        _check_id(alias_id, "Alias")
        if not self.can_create_reverse_alias(user):
            raise Forbidden(CANNOT_REVERSE_ALIAS)
        if len(contact) > 512 or "\x00" in contact:
            raise InvalidInput("contact must be an email address", field="contact")
        email, name = contact_rules.parse_contact(contact)
        address = normalise_address(email, "contact")
        reverse_domain = self.settings.resolved_reverse_alias_domain
        async with self.db.write() as conn:
            alias = await store.get(conn, user.id, alias_id)
            if alias is None:
                raise NotFound("Alias not found")
            if address.key == alias.email_key:
                raise InvalidInput("An alias cannot be its own contact", field="contact")
            if contact_rules.is_reverse_alias_local(address.local) or await contact_store.by_reverse_alias(conn, address.key):
                raise InvalidInput("A reverse alias cannot be a contact", field="contact")
            row, created = await contact_rules.find_or_create(
                conn, user_id=user.id, alias_id=alias_id, email=email, name=name, reverse_alias_domain=reverse_domain
            )
        return contact_view(row), created

    async def delete_contact(self, user_id: str, contact_id: int) -> None:
        _check_id(contact_id, "Contact")
        async with self.db.write() as conn:
            if not await contact_store.remove(conn, user_id, contact_id):
                raise NotFound("Contact not found")

    async def toggle_contact(self, user_id: str, contact_id: int) -> bool:
        """Block or unblock forwarding from a contact: the new ``block_forward``."""
        _check_id(contact_id, "Contact")
        async with self.db.write() as conn:
            row = await contact_store.get(conn, user_id, contact_id)
            if row is None:
                raise NotFound("Contact not found")
            blocked = not row.block_forward
            await contact_store.set_fields(conn, contact_id, block_forward=blocked)
        return blocked
