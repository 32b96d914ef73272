"""Stripe through the official SDK: PaymentIntents created with the async client, webhooks verified
with `stripe.WebhookSignature` on the raw body (5-minute tolerance, applied both ways: the SDK only
refuses old timestamps, so a signature dated in the future is refused here), and creator payouts as Connect
transfers to the creator's connected account (`send_transfer`).

The SDK's aiohttp client runs on our event loop (no thread, no blocking); `base_addresses["api"]`
comes from PAIRLY_STRIPE_API_BASE so tests point it at a local server speaking Stripe's HTTP API.
Every SDK error becomes `ProviderError` (or `SignatureInvalid`) here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import stripe
import structlog

from billing.errors import ProviderError, SignatureInvalid
from billing.providers.base import Checkout, PaymentRequest, TransferRequest, WebhookEvent, decode_body

log = structlog.get_logger(__name__)

DEFAULT_API_BASE = "https://api.stripe.com"
WEBHOOK_TOLERANCE_S = 300


class StripeProvider:
    name = "stripe"
    completes_immediately = False
    needs_destination = True
    """As a payout provider: creators need a connected account (`acct_...`)."""

    def __init__(
        self,
        secret_key: str,
        webhook_secret: str,
        *,
        publishable_key: str | None = None,
        api_base: str = DEFAULT_API_BASE,
        currency: str = "usd",
        timeout_s: float = 10.0,
        tolerance_s: int = WEBHOOK_TOLERANCE_S,
    ) -> None:
        self.default_currency = currency
        self._webhook_secret = webhook_secret
        self._publishable_key = publishable_key
        self._tolerance_s = tolerance_s
        self._http = stripe.AIOHTTPClient(timeout=timeout_s)
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base.rstrip("/")},
            http_client=self._http,
            max_network_retries=1,
        )

    async def create_payment(self, request: PaymentRequest) -> Checkout:
        try:
            intent = await self._client.v1.payment_intents.create_async(
                params={
                    "amount": request.amount,
                    "currency": request.currency,
                    "automatic_payment_methods": {"enabled": True},
                    "description": f"Pairly credits: {request.credits} ({request.package_id})",
                    "metadata": {"purchase_id": request.purchase_id, "user": request.user,
                                 "package_id": request.package_id, "credits": str(request.credits)},
                },
                # Retried creates (ours or the SDK's) return the same PaymentIntent.
                options={"idempotency_key": f"pairly-purchase-{request.purchase_id}"},
            )
        except stripe.StripeError as exc:
            log.warning("stripe_error", op="payment_intents.create", purchase=request.purchase_id,
                        error=type(exc).__name__, status=exc.http_status, message=str(exc.user_message or exc))
            raise ProviderError(f"stripe request failed ({type(exc).__name__}); try again") from None
        if not isinstance(intent.id, str) or not isinstance(intent.client_secret, str):
            raise ProviderError("stripe: PaymentIntent without id or client_secret")
        client: dict[str, Any] = {"payment_intent_id": intent.id, "client_secret": intent.client_secret}
        if self._publishable_key:
            client["publishable_key"] = self._publishable_key
        return Checkout(ref=intent.id, client=client)

    async def send_transfer(self, request: TransferRequest) -> str:
        """A Connect transfer from the platform balance to the creator's connected account.

        Stripe's idempotency key `pairly-payout-<payout id>` makes a retried create return the same
        transfer for 24 hours; `transfer_group` = the payout id lets `find_transfer` find it later.
        """
        if not request.destination:
            raise ProviderError("stripe: the creator has no connected account")
        try:
            transfer = await self._client.v1.transfers.create_async(
                params={
                    "amount": request.amount,
                    "currency": request.currency,
                    "destination": request.destination,
                    "transfer_group": request.payout_id,
                    "description": f"Pairly creator payout {request.payout_id}: {request.credits} credits",
                    "metadata": {"payout_id": request.payout_id, "user": request.user,
                                 "credits": str(request.credits)},
                },
                options={"idempotency_key": f"pairly-payout-{request.payout_id}"},
            )
        except stripe.StripeError as exc:
            raise _payout_error(exc, "transfers.create", request.payout_id) from None
        if not isinstance(transfer.id, str):
            raise ProviderError("stripe: Transfer without id")
        return transfer.id

    async def find_transfer(self, payout_id: str) -> str | None:
        try:
            found = await self._client.v1.transfers.list_async(params={"transfer_group": payout_id, "limit": 1})
        except stripe.StripeError as exc:
            raise _payout_error(exc, "transfers.list", payout_id) from None
        for transfer in found.data:
            if isinstance(transfer.id, str):
                return transfer.id
        return None

    def verify_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        text = decode_body(body)
        header = headers.get("Stripe-Signature")
        if not header:
            raise SignatureInvalid("missing Stripe-Signature header")
        try:
            stripe.WebhookSignature.verify_header(text, header, self._webhook_secret, self._tolerance_s)
        except stripe.SignatureVerificationError as exc:
            raise SignatureInvalid(f"Stripe-Signature: {exc.user_message or exc}") from None
        signed_at = _signed_at(header)
        if signed_at is None or signed_at > time.time() + self._tolerance_s:
            raise SignatureInvalid("Stripe-Signature: timestamp outside the tolerance zone (in the future)")
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            raise SignatureInvalid("signed body is not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not isinstance(data.get("type"), str):
            raise SignatureInvalid("signed body is not a Stripe event")
        return WebhookEvent(self.name, data["id"], data["type"], text, data)

    def public(self) -> dict[str, Any]:
        info: dict[str, Any] = {"id": self.name, "currency": self.default_currency, "label": "Card (Stripe)"}
        if self._publishable_key:
            info["publishable_key"] = self._publishable_key
        return info

    async def close(self) -> None:
        try:
            await self._http.close_async()  # type: ignore[no-untyped-call]
        except Exception:  # closing a never-used client must not fail shutdown
            log.debug("stripe_close_failed", exc_info=True)


def _signed_at(header: str) -> int | None:
    """The `t=` timestamp of a Stripe-Signature header (already checked by the SDK)."""
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _payout_error(exc: stripe.StripeError, op: str, payout_id: str) -> ProviderError:
    message = str(exc.user_message or exc)
    log.warning("stripe_error", op=op, payout=payout_id, error=type(exc).__name__, status=exc.http_status,
                code=exc.code, message=message)
    return ProviderError(f"stripe request failed ({type(exc).__name__}); try again",
                         provider_error=type(exc).__name__, provider_code=exc.code,
                         provider_message=message[:300], provider_status=exc.http_status)
