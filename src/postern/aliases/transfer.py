"""Aliases in and out as CSV: ``alias,note,enabled,mailboxes`` (mailboxes space
separated, the alias's primary mailbox first), the format SimpleLogin exports and
imports.

An import makes each row's alias when its domain is one the user may make aliases on,
its address is one the user could make by hand (``aliases.address_rules``: on a shared
domain a prefix and a random suffix, never a reserved name) and it is free (held by
nothing in the one namespace of addresses, never deleted); each row is its own transaction,
so a row is made whole or not at all. Its mailboxes are matched by email among the
user's verified mailboxes; a row naming none of them gets the default mailbox."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from sqlalchemy.engine import Row

from postern.accounts.addressing import normalise_address
from postern.aliases.address_rules import check_alias_address
from postern.aliases.service import MAX_NOTE, Aliases
from postern.aliases.usable_domains import usable_domains
from postern.errors import Conflict, DomainError, InvalidInput, TooLarge
from postern.storage import aliases as store

HEADER = ["alias", "note", "enabled", "mailboxes"]
MAX_CSV_BYTES = 2 * 1024 * 1024
MAX_ROWS = 10_000
_TRUE = {"", "true", "1", "yes", "y", "t", "on", "enabled"}
_FALSE = {"false", "0", "no", "n", "f", "off", "disabled"}


@dataclass
class ImportResult:
    imported: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (alias, reason)


async def export_csv(aliases: Aliases, user_id: str) -> str:
    async with aliases.db.read() as conn:
        rows = await store.all_of_user(conn, user_id)
        boxes = await store.mailboxes_of_user(conn, user_id)
        pairs = await store.alias_mailbox_pairs(conn, user_id)
    by_alias: dict[int, list[int]] = {}
    for pair in pairs:
        by_alias.setdefault(pair.alias_id, []).append(pair.mailbox_id)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER)
    for row in rows:
        ids = [row.mailbox_id] + sorted(m for m in by_alias.get(row.id, []) if m != row.mailbox_id)
        writer.writerow([row.email, row.note or "", "True" if row.enabled else "False", " ".join(boxes[m] for m in ids if m in boxes)])
    return out.getvalue()


def _rows(text: str) -> list[dict[str, str]]:
    if len(text.encode("utf-8", "surrogatepass")) > MAX_CSV_BYTES:
        raise TooLarge(f"The CSV must be at most {MAX_CSV_BYTES // (1024 * 1024)} MB")
    if "\x00" in text:
        raise InvalidInput("The CSV must not contain NUL characters")
    try:
        reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
        if reader.fieldnames is None:
            raise InvalidInput("The CSV is empty: its first line must be alias,note,enabled,mailboxes")
        names = [(n or "").strip().lower() for n in reader.fieldnames]
        if "alias" not in names:
            raise InvalidInput("The CSV's first line must be alias,note,enabled,mailboxes")
        reader.fieldnames = names
        rows = []
        for row in reader:
            rows.append({k: (v if isinstance(v, str) else "") for k, v in row.items() if k})
            if len(rows) > MAX_ROWS:
                raise InvalidInput(f"The CSV may have at most {MAX_ROWS} aliases")
        return rows
    except csv.Error as error:
        raise InvalidInput(f"The CSV cannot be read: {error}") from None


def _enabled(value: str) -> bool | None:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


async def import_csv(aliases: Aliases, user: Row, text: str) -> ImportResult:
    rows = _rows(text)
    result = ImportResult()
    for row in rows:
        shown = (row.get("alias") or "").strip()
        try:
            await _import_row(aliases, user, row)
        except (DomainError, ValueError) as error:
            result.skipped.append((shown[:320], getattr(error, "message", None) or str(error)))
        else:
            result.imported += 1
    return result


async def _import_row(aliases: Aliases, user: Row, row: dict[str, str]) -> None:
    raw = (row.get("alias") or "").strip()
    if not raw:
        raise InvalidInput("the alias is empty")
    address = normalise_address(raw, "alias")
    domain_ascii = address.key.rpartition("@")[2]
    note = (row.get("note") or "").strip() or None
    if note is not None and len(note) > MAX_NOTE:
        raise InvalidInput(f"the note must be at most {MAX_NOTE} characters")
    enabled = _enabled(row.get("enabled") or "")
    if enabled is None:
        raise InvalidInput("enabled must be True or False")
    wanted = [m.strip() for m in (row.get("mailboxes") or "").split() if m.strip()]
    async with aliases.db.write() as conn:
        domain = next((d for d in await usable_domains(conn, aliases.settings, user) if d.domain == domain_ascii), None)
        if domain is None:
            raise InvalidInput(f"{address.domain} is not a domain you can use for aliases")
        # Exactly the rules of making an alias by hand (aliases.address_rules).
        check_alias_address(address, domain, aliases.settings, imported=True)
        await aliases.check_can_create(conn, user)
        verified = await store.verified_mailboxes(conn, user.id)
        if not verified:
            raise InvalidInput("You have no verified mailbox to forward to")
        by_key = {m.email_key: m.id for m in verified}
        chosen: list[int] = []
        for email in wanted:
            try:
                key = normalise_address(email, "mailbox").key
            except InvalidInput:
                continue
            if key in by_key:
                chosen.append(by_key[key])
        if not chosen:
            chosen = [verified[0].id]
        try:
            await aliases.insert_new(conn, user, address, domain, chosen, note=note, enabled=enabled)
        except Conflict:
            raise Conflict("the address is taken (it exists or was deleted)") from None
