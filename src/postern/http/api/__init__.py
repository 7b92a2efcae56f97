"""The user API (SimpleLogin's), under ``/api``: its own error shape ``{"error": ...}``
and its own key, in the ``Authentication`` header."""

from __future__ import annotations

from fastapi import APIRouter

from postern.http.api import (
    account,
    aliases,
    auth,
    contacts,
    custom_domains,
    export,
    identities,
    mailboxes,
    misc,
    notifications,
    remote_identities,
    settings,
)
from postern.http.api.common import ApiRoute

router = APIRouter(prefix="/api", route_class=ApiRoute)
router.include_router(auth.router)
router.include_router(account.router)
router.include_router(custom_domains.router)
router.include_router(aliases.router)
router.include_router(contacts.router)
router.include_router(mailboxes.router)
router.include_router(settings.router)
router.include_router(notifications.router)
router.include_router(export.router)
router.include_router(remote_identities.router)
router.include_router(misc.router)
router.include_router(identities.router)
