"""/api/health, and the endpoints of services this server does not offer unless
configured: in-app purchases (/api/apple/process_payment) and phone numbers
(/api/phone/...). They answer a clear error rather than pretend."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from postern import __version__
from postern.http.api.common import ApiError, ApiRoute, KeyHolderDep, Text, responses, runtime_of

router = APIRouter(tags=["User API: misc"], route_class=ApiRoute)


class HealthAnswer(BaseModel):
    status: str = Field(description='"ok"')
    version: str


class PaymentBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    receipt_data: Annotated[Text, Field(max_length=1024 * 1024, description="The StoreKit receipt, base64")] | None = None
    is_macapp: bool | None = Field(default=None, description="Sent by the Mac app (Safari extension)")


@router.get("/health", summary="Whether the server answers (no API key)", response_model=HealthAnswer)
async def health() -> dict[str, Any]:
    return {"status": "ok", "version": __version__}


@router.post(
    "/apple/process_payment",
    summary="Process an App Store receipt (not available)",
    responses=responses(401, 501, _400="In-app purchases are not enabled on this server"),
)
async def apple_process_payment(body: PaymentBody, holder: KeyHolderDep, request: Request) -> dict[str, Any]:
    """400 unless the operator set ``POSTERN_APPLE_SHARED_SECRET``; even then 501:
    checking a receipt needs Apple's servers, which this server does not call. Premium
    is granted by the operator (the admin API's ``premium``)."""
    if runtime_of(request).settings.apple_shared_secret is None:
        raise ApiError(400, "In-app purchases are not enabled on this server")
    raise ApiError(501, "Receipt validation is not available on this server: ask its operator for premium")


@router.get(
    "/phone/reservations/{reservation_id}",
    summary="Messages received by a phone reservation (not available)",
    responses=responses(401, 404, 501, _400="Phone numbers are not enabled on this server"),
)
async def phone_reservation(
    reservation_id: Annotated[int, Path(description="The reservation's id")], holder: KeyHolderDep, request: Request
) -> dict[str, Any]:
    """400 unless the operator set ``POSTERN_SMS_PROVIDER_URL``; even then no
    reservation exists on this server (404)."""
    if not runtime_of(request).settings.sms_provider_url:
        raise ApiError(400, "Phone numbers are not enabled on this server")
    raise ApiError(404, "Reservation not found")
