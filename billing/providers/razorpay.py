"""Razorpay through the official SDK: orders, checkout signatures and webhook signatures.

The SDK is synchronous (`requests`), so every API call runs in a worker thread with a timeout;
signature checks are local HMAC-SHA256 and run inline. `base_url` comes from
PAIRLY_RAZORPAY_API_BASE so tests point the SDK at a local server speaking Razorpay's HTTP API.
SDK errors become `ProviderError` / `SignatureInvalid` here.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import razorpay
import requests
import structlog
from razorpay.errors import BadRequestError, GatewayError, ServerError, SignatureVerificationError

from billing.errors import ProviderError, SignatureInvalid
from billing.providers.base import Checkout, PaymentRequest, WebhookEvent, decode_body

log = structlog.get_logger(__name__)

DEFAULT_API_BASE = "https://api.razorpay.com"
_SDK_ERRORS = (BadRequestError, GatewayError, ServerError, requests.RequestException, ValueError, KeyError)


class RazorpayProvider:
    name = "razorpay"
    completes_immediately = False

    def __init__(
        self,
        key_id: str,
        key_secret: str,
        webhook_secret: str,
        *,
        api_base: str = DEFAULT_API_BASE,
        currency: str = "inr",
        timeout_s: float = 10.0,
    ) -> None:
        self.default_currency = currency
        self.key_id = key_id
        self._webhook_secret = webhook_secret
        self._timeout_s = timeout_s
        self._client = razorpay.Client(auth=(key_id, key_secret), base_url=api_base.rstrip("/"))
        self._client.set_app_details({"title": "pairly-realtime", "version": "0.1"})

    async def create_payment(self, request: PaymentRequest) -> Checkout:
        data = {
            "amount": request.amount,
            "currency": request.currency.upper(),
            "receipt": request.purchase_id,
            "notes": {"purchase_id": request.purchase_id, "user": request.user,
                      "package_id": request.package_id, "credits": str(request.credits)},
        }
        try:
            order = await asyncio.to_thread(self._client.order.create, data, timeout=self._timeout_s)
        except _SDK_ERRORS as exc:
            log.warning("razorpay_error", op="orders.create", purchase=request.purchase_id,
                        error=type(exc).__name__, message=str(exc))
            raise ProviderError(f"razorpay request failed ({type(exc).__name__}); try again") from None
        order_id = order.get("id") if isinstance(order, dict) else None
        if not isinstance(order_id, str):
            raise ProviderError("razorpay: order without id")
        # Checkout takes the amount and currency from the order.
        return Checkout(ref=order_id, client={"order_id": order_id, "key_id": self.key_id})

    def verify_payment(self, order_id: str, payment_id: str, signature: str) -> None:
        """The checkout's `razorpay_signature`: HMAC-SHA256(order_id|payment_id, key secret)."""
        try:
            self._client.utility.verify_payment_signature({
                "razorpay_order_id": order_id,
                "razorpay_payment_id": payment_id,
                "razorpay_signature": signature,
            })
        except (SignatureVerificationError, TypeError):
            raise SignatureInvalid("razorpay_signature does not match order_id|payment_id") from None

    def verify_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        text = decode_body(body)
        signature = headers.get("X-Razorpay-Signature")
        if not signature:
            raise SignatureInvalid("missing X-Razorpay-Signature header")
        try:
            self._client.utility.verify_webhook_signature(text, signature, self._webhook_secret)
        except (SignatureVerificationError, TypeError):
            raise SignatureInvalid("X-Razorpay-Signature does not match the body") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            raise SignatureInvalid("signed body is not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("event"), str):
            raise SignatureInvalid("signed body is not a Razorpay event")
        # Razorpay names each event in a header; retries of one event carry the same id.
        event_id = headers.get("X-Razorpay-Event-Id") or "sha256:" + hashlib.sha256(body).hexdigest()
        return WebhookEvent(self.name, event_id, data["event"], text, data)

    def public(self) -> dict[str, Any]:
        return {"id": self.name, "currency": self.default_currency, "key_id": self.key_id,
                "label": "UPI / cards / netbanking (Razorpay)"}

    async def close(self) -> None:
        await asyncio.to_thread(self._client.session.close)
