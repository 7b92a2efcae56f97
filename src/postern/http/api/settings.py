"""/api/setting and the domains of random aliases (/api/v2/setting/domains, and the
older /api/setting/domains)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from postern.aliases.settings import UserSettings
from postern.http.api.common import ApiRoute, KeyHolderDep, responses, runtime_of

router = APIRouter(tags=["User API: settings"], route_class=ApiRoute)


class SettingAnswer(BaseModel):
    notification: bool = Field(description="Whether notifications are also mailed")
    alias_generator: str = Field(description="word or uuid")
    random_alias_default_domain: str | None = Field(description="The domain of new random aliases")
    sender_format: str = Field(description="AT, A, NAME_ONLY, AT_ONLY or NO_NAME")
    random_alias_suffix: str = Field(description="word or random_string")


class SettingPatch(BaseModel):
    """Every field is optional; values are checked by the service (any invalid value
    changes nothing)."""

    model_config = ConfigDict(extra="ignore")

    notification: Any = Field(default=None, json_schema_extra={"type": "boolean"})
    alias_generator: Any = Field(default=None, json_schema_extra={"type": "string", "enum": ["word", "uuid"]})
    random_alias_default_domain: Any = Field(
        default=None, json_schema_extra={"type": ["string", "null"], "description": "One of GET /api/v2/setting/domains; null: the default"}
    )
    sender_format: Any = Field(default=None, json_schema_extra={"type": "string", "enum": ["AT", "A", "NAME_ONLY", "AT_ONLY", "NO_NAME"]})
    random_alias_suffix: Any = Field(default=None, json_schema_extra={"type": "string", "enum": ["word", "random_string"]})


class DomainAnswer(BaseModel):
    domain: str
    is_custom: bool


# One [is_public, domain] pair. Described without "prefixItems" (JSON Schema 2020-12)
# and without an array under "items" (draft 4's tuple form, invalid in OpenAPI 3.1):
# an array of exactly two items, each a boolean or a string, is valid in both.
DOMAIN_PAIR: dict[str, Any] = {
    "type": "array",
    "items": {"anyOf": [{"type": "boolean"}, {"type": "string"}]},
    "minItems": 2,
    "maxItems": 2,
}


def setting_answer(value: UserSettings) -> dict[str, Any]:
    return {
        "notification": value.notification,
        "alias_generator": value.alias_generator,
        "random_alias_default_domain": value.random_alias_default_domain,
        "sender_format": value.sender_format,
        "random_alias_suffix": value.random_alias_suffix,
    }


@router.get("/setting", summary="The user's settings", response_model=SettingAnswer, responses=responses(401))
async def get_setting(holder: KeyHolderDep, request: Request) -> dict[str, Any]:
    return setting_answer(await runtime_of(request).alias_settings.get(holder.user.id))


@router.patch("/setting", summary="Change some settings", response_model=SettingAnswer, responses=responses(401))
async def patch_setting(body: SettingPatch, holder: KeyHolderDep, request: Request) -> dict[str, Any]:
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    return setting_answer(await runtime_of(request).alias_settings.update(holder.user.id, changes))


@router.get("/v2/setting/domains", summary="Domains for random aliases", response_model=list[DomainAnswer], responses=responses(401))
async def setting_domains(holder: KeyHolderDep, request: Request) -> list[dict[str, Any]]:
    domains = await runtime_of(request).alias_settings.domains(holder.user.id)
    return [{"domain": d.domain, "is_custom": d.is_custom} for d in domains]


@router.get(
    "/setting/domains",
    summary="Domains for random aliases (older clients): [is_public, domain] pairs",
    response_model=None,
    responses={
        200: {
            "description": "[is_public, domain] pairs",
            "content": {"application/json": {"schema": {"type": "array", "items": DOMAIN_PAIR}}},
        },
        **responses(401),
    },
)
async def setting_domains_v1(holder: KeyHolderDep, request: Request) -> list[tuple[bool, str]]:
    """As SimpleLogin's first version: ``true`` for the server's own domains, ``false``
    for the user's custom domains; the server's domains first."""
    domains = await runtime_of(request).alias_settings.domains(holder.user.id)
    ordered = [d for d in domains if not d.is_custom] + [d for d in domains if d.is_custom]
    return [(not d.is_custom, d.domain) for d in ordered]
