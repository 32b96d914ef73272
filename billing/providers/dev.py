"""The dev provider: completes every purchase locally, no money moves. Refused in production mode."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from billing.providers.base import Checkout, PaymentRequest, TransferRequest, WebhookEvent
from config.errors import NotFound


class DevProvider:
    name = "dev"
    completes_immediately = True

    def __init__(self, default_currency: str = "usd") -> None:
        self.default_currency = default_currency

    async def create_payment(self, request: PaymentRequest) -> Checkout:
        return Checkout(ref=request.purchase_id,
                        client={"note": "dev provider: completed locally, no money moved"})

    def verify_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        raise NotFound("the dev provider has no webhooks")

    def public(self) -> dict[str, Any]:
        return {"id": self.name, "currency": self.default_currency, "label": "Dev (no real payment)"}

    async def close(self) -> None:
        return None


class DevPayoutProvider:
    """Completes payouts locally, no money moves. Only when Stripe is not configured; refused in
    production (it exists only where the dev payment provider does)."""

    name = "dev"
    needs_destination = False

    async def send_transfer(self, request: TransferRequest) -> str:
        return f"dev_tr_{request.payout_id}"

    async def find_transfer(self, payout_id: str) -> str | None:
        return None  # sending is local and deterministic: sending again returns the same id
