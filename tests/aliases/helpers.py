"""Helpers the alias mail flow tests share (forward, bounce, reply): users with
mailboxes and aliases made directly through storage, messages sent over real sockets,
and small waits."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from postern.accounts.addressing import normalise_address, normalise_domain
from postern.accounts.service import NewUser
from postern.serve.runtime import Runtime
from postern.storage import aliases as alias_store
from postern.storage import mailboxes as mailbox_store
from postern.storage.ids import now_ms
from postern.storage.schema import alias_activities, aliases, contacts, custom_domain_mailboxes, custom_domains, deleted_aliases, users

WAIT = 15.0


@dataclass
class AliasUser:
    user_id: str
    address: str | None  # the hosted address, if any
    mailbox_ids: list[int]  # in the order given (the first is the default)
    mailboxes: list[str]


async def make_user(
    runtime: Runtime,
    username: str,
    *,
    mailboxes: Sequence[str] = (),
    address: str | None = None,
    sender_format: str = "AT",
    name: str | None = None,
) -> AliasUser:
    """A user (with a hosted address when ``address`` is given, else none) and verified
    mailboxes; the first mailbox is the default."""
    user_id = await runtime.accounts.create_user(
        NewUser(username=username, password="correct horse battery", address=address, empty_address=address is None, name=name)
    )
    ids = []
    async with runtime.db.write() as conn:
        await conn.execute(update(users).where(users.c.id == user_id).values(sender_format=sender_format))
        for index, email in enumerate(mailboxes):
            key = normalise_address(email)
            ids.append(
                await mailbox_store.insert(
                    conn,
                    {"user_id": user_id, "email": key.display, "email_key": key.key, "verified": True, "is_default": index == 0, "created_ms": now_ms()},
                )
            )
    return AliasUser(user_id, address, ids, list(mailboxes))


async def make_alias(runtime: Runtime, user: AliasUser, email: str, *, mailbox_ids: Sequence[int] | None = None, enabled: bool = True, custom_domain_id: int | None = None) -> int:
    """An alias of ``user`` forwarding to ``mailbox_ids`` (default: all the user's mailboxes)."""
    address = normalise_address(email)
    async with runtime.db.write() as conn:
        return await alias_store.insert_alias(
            conn,
            user_id=user.user_id,
            email=address.display,
            email_key=address.key,
            mailbox_ids=list(mailbox_ids or user.mailbox_ids),
            created_ms=now_ms(),
            enabled=enabled,
            custom_domain_id=custom_domain_id,
        )


async def make_custom_domain(
    runtime: Runtime, user: AliasUser, domain: str, *, catch_all: bool = True, verified: bool = True, mailbox_ids: Sequence[int] = ()
) -> int:
    async with runtime.db.write() as conn:
        result = await conn.execute(
            custom_domains.insert()
            .values(user_id=user.user_id, domain=normalise_domain(domain)[0], ownership_token="t", verified=verified, catch_all=catch_all, created_ms=now_ms())
            .returning(custom_domains.c.id)
        )
        domain_id = int(result.scalar_one())
        if mailbox_ids:
            await conn.execute(
                custom_domain_mailboxes.insert(), [{"domain_id": domain_id, "mailbox_id": m, "user_id": user.user_id} for m in mailbox_ids]
            )
    return domain_id


async def delete_address_forever(runtime: Runtime, email: str, user: AliasUser | None = None, custom_domain_id: int | None = None) -> None:
    address = normalise_address(email)
    async with runtime.db.write() as conn:
        await conn.execute(
            deleted_aliases.insert().values(
                email_key=address.key, email=address.display, user_id=user.user_id if user else None, custom_domain_id=custom_domain_id, deleted_ms=now_ms()
            )
        )


async def alias_row(runtime: Runtime, alias_id: int) -> Any:
    async with runtime.db.read() as conn:
        return (await conn.execute(select(aliases).where(aliases.c.id == alias_id))).first()


async def alias_by_email(runtime: Runtime, email: str) -> Any:
    async with runtime.db.read() as conn:
        return (await conn.execute(select(aliases).where(aliases.c.email_key == normalise_address(email).key))).first()


async def activities(runtime: Runtime, alias_id: int) -> list[Any]:
    async with runtime.db.read() as conn:
        return list(await conn.execute(select(alias_activities).where(alias_activities.c.alias_id == alias_id).order_by(alias_activities.c.id)))


async def contacts_of(runtime: Runtime, alias_id: int) -> list[Any]:
    async with runtime.db.read() as conn:
        return list(await conn.execute(select(contacts).where(contacts.c.alias_id == alias_id).order_by(contacts.c.id)))


async def set_contact_blocked(runtime: Runtime, contact_id: int, blocked: bool = True) -> None:
    async with runtime.db.write() as conn:
        await conn.execute(update(contacts).where(contacts.c.id == contact_id).values(block_forward=blocked))


def _send(port: int, mail_from: str, rcpts: Sequence[str], data: bytes) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo("client.example.org")
        return smtp.sendmail(mail_from, list(rcpts), data)


async def send(port: int, mail_from: str, rcpts: Sequence[str], data: bytes) -> dict[str, tuple[int, bytes]]:
    """Send over a real socket (smtplib in a thread); smtplib's refusals raise."""
    return await asyncio.to_thread(_send, port, mail_from, rcpts, data)


def _converse(port: int, mail_from: str, rcpt: str, data: bytes | None) -> tuple[tuple[int, bytes], tuple[int, bytes] | None]:
    """MAIL, one RCPT and (when the RCPT got 250 and ``data`` is given) DATA; the
    RCPT's and DATA's replies, nothing raised."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo("client.example.org")
        smtp.mail(mail_from)
        rcpt_reply = smtp.rcpt(rcpt)
        if data is None or rcpt_reply[0] != 250:
            return rcpt_reply, None
        return rcpt_reply, smtp.data(data)


async def converse(port: int, mail_from: str, rcpt: str, data: bytes | None = None) -> tuple[tuple[int, bytes], tuple[int, bytes] | None]:
    return await asyncio.to_thread(_converse, port, mail_from, rcpt, data)


async def until(condition: Any, timeout: float = WAIT) -> Any:
    """Wait for ``await condition()`` to be truthy; returns it."""

    async def poll() -> Any:
        while not (value := await condition()):
            await asyncio.sleep(0.02)
        return value

    return await asyncio.wait_for(poll(), timeout)
