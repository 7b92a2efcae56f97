"""The domains a user may make aliases on: the operator's alias domains (premium ones
for premium users only) and the user's own verified custom domains."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from postern.config import Settings
from postern.storage.schema import custom_domains


@dataclass(frozen=True, slots=True)
class UsableDomain:
    domain: str  # ASCII form
    is_custom: bool
    is_premium: bool
    custom_domain_id: int | None = None
    random_prefix_generation: bool = False


async def usable_domains(
    conn: AsyncConnection, settings: Settings, user: Row, *, include_premium_offers: bool = False
) -> list[UsableDomain]:
    """The user's verified custom domains first, then the operator's domains. Premium
    domains are listed for premium users, or as offers (``is_premium``) when
    ``include_premium_offers`` is set."""
    stmt = (
        select(custom_domains.c.id, custom_domains.c.domain, custom_domains.c.random_prefix_generation)
        .where(custom_domains.c.user_id == user.id, custom_domains.c.verified)
        .order_by(custom_domains.c.domain)
    )
    found = [UsableDomain(r.domain, True, False, r.id, r.random_prefix_generation) for r in (await conn.execute(stmt)).all()]
    premium = set(settings.premium_alias_domains)
    for domain in settings.resolved_alias_domains:
        is_premium = domain in premium
        if not is_premium or user.premium or include_premium_offers:
            found.append(UsableDomain(domain, False, is_premium))
    return found
