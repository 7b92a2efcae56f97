"""The user API (SimpleLogin's), under ``/api``: its own error shape ``{"error": ...}``
and its own key, in the ``Authentication`` header."""

from __future__ import annotations

from fastapi import APIRouter

from postern.http.api import account, auth
from postern.http.api.common import ApiRoute

router = APIRouter(prefix="/api", route_class=ApiRoute)
router.include_router(auth.router)
router.include_router(account.router)
