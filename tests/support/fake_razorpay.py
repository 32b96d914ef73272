"""A local server speaking the slice of Razorpay's HTTP API the server uses, and Razorpay signatures.

The official SDK is pointed at it with PAIRLY_RAZORPAY_API_BASE. Orders need HTTP basic auth with the
key id and secret. Checkout signatures are HMAC-SHA256(key secret, "<order_id>|<payment_id>");
webhooks carry `X-Razorpay-Signature: HMAC-SHA256(webhook secret, raw body)` and
`X-Razorpay-Event-Id`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import aiohttp
from aiohttp import web

from server.store import free_port

Doc = dict[str, Any]


def hmac_hex(secret: str, message: str | bytes) -> str:
    data = message.encode() if isinstance(message, str) else message
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


class FakeRazorpay:
    def __init__(self, key_id: str = "rzp_test_fake0123", key_secret: str = "fake-key-secret-0123",
                 webhook_secret: str = "fake-webhook-secret-0123") -> None:
        self.key_id = key_id
        self.key_secret = key_secret
        self.webhook_secret = webhook_secret
        self.orders: dict[str, Doc] = {}
        self.fail_with: int | None = None
        self._runner: web.AppRunner | None = None
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {"PAIRLY_RAZORPAY_KEY_ID": self.key_id, "PAIRLY_RAZORPAY_KEY_SECRET": self.key_secret,
                "PAIRLY_RAZORPAY_WEBHOOK_SECRET": self.webhook_secret, "PAIRLY_RAZORPAY_API_BASE": self.url}

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/orders", self._create_order)
        app.router.add_get("/v1/orders/{id}", self._get_order)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- the API ----------------------------------------------------------------------------------
    def _error(self, status: int, code: str, description: str) -> web.Response:
        return web.json_response({"error": {"code": code, "description": description}}, status=status)

    def _authorised(self, request: web.Request) -> bool:
        expected = base64.b64encode(f"{self.key_id}:{self.key_secret}".encode()).decode()
        return request.headers.get("Authorization") == f"Basic {expected}"

    async def _create_order(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._error(401, "BAD_REQUEST_ERROR", "Authentication failed")
        if self.fail_with is not None:
            return self._error(self.fail_with, "SERVER_ERROR", "simulated failure")
        body = await request.json()
        if not isinstance(body.get("amount"), int) or body["amount"] < 100:
            return self._error(400, "BAD_REQUEST_ERROR", "The amount must be atleast INR 1.00")
        oid = "order_" + secrets.token_hex(7)
        order = {"id": oid, "entity": "order", "amount": body["amount"], "amount_paid": 0,
                 "amount_due": body["amount"], "currency": body["currency"], "receipt": body.get("receipt"),
                 "status": "created", "attempts": 0, "notes": body.get("notes", {}), "created_at": int(time.time())}
        self.orders[oid] = order
        return web.json_response(order)

    async def _get_order(self, request: web.Request) -> web.Response:
        order = self.orders.get(request.match_info["id"])
        if order is None:
            return self._error(400, "BAD_REQUEST_ERROR", "The id provided does not exist")
        return web.json_response(order)

    # -- a customer paying, and the events that follow ---------------------------------------------
    def pay(self, order_id: str, *, amount: int | None = None, currency: str | None = None) -> Doc:
        """A captured payment on the order (what checkout produces with auto-capture)."""
        order = self.orders[order_id]
        order.update(status="paid", amount_paid=order["amount"], amount_due=0, attempts=order["attempts"] + 1)
        return {"id": "pay_" + secrets.token_hex(7), "entity": "payment",
                "amount": amount if amount is not None else order["amount"],
                "currency": currency or order["currency"], "status": "captured", "order_id": order_id,
                "method": "upi", "captured": True, "created_at": int(time.time())}

    def checkout_signature(self, order_id: str, payment_id: str, secret: str | None = None) -> str:
        return hmac_hex(secret or self.key_secret, f"{order_id}|{payment_id}")

    def event(self, name: str, **entities: Doc) -> Doc:
        return {"entity": "event", "account_id": "acc_fake", "event": name, "contains": list(entities),
                "payload": {k: {"entity": v} for k, v in entities.items()}, "created_at": int(time.time())}

    def refund(self, payment: Doc, amount: int | None = None, status: str = "processed",
               refund_id: str | None = None) -> Doc:
        return {"id": refund_id or "rfnd_" + secrets.token_hex(7), "entity": "refund",
                "amount": amount if amount is not None else payment["amount"], "currency": payment["currency"],
                "payment_id": payment["id"], "status": status, "created_at": int(time.time())}

    def dispute(self, payment: Doc, status: str = "open", dispute_id: str | None = None) -> Doc:
        return {"id": dispute_id or "disp_" + secrets.token_hex(7), "entity": "dispute",
                "payment_id": payment["id"], "amount": payment["amount"], "currency": payment["currency"],
                "status": status, "phase": "chargeback", "reason_code": "fraud"}

    async def deliver(self, app_url: str, event: Doc, *, event_id: str | None = None, secret: str | None = None,
                      signature: str | None = None, body: bytes | None = None) -> tuple[int, Doc]:
        raw = json.dumps(event).encode()
        headers = {"Content-Type": "application/json",
                   "X-Razorpay-Event-Id": event_id or "evt_" + secrets.token_hex(7),
                   "X-Razorpay-Signature": signature if signature is not None
                   else hmac_hex(secret or self.webhook_secret, raw)}
        async with aiohttp.ClientSession() as http, http.post(
                app_url + "/api/webhooks/razorpay", data=body if body is not None else raw, headers=headers) as resp:
            return resp.status, await resp.json()
