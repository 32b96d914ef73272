"""A local server speaking the slice of Stripe's HTTP API the server uses, and Stripe-signed events.

The official SDK is pointed at it with PAIRLY_STRIPE_API_BASE. It checks the secret key, honours
`Idempotency-Key` like Stripe (same key → same PaymentIntent / Transfer; same key with other
parameters → `idempotency_error`), serves Connect transfers (`POST /v1/transfers`, and
`GET /v1/transfers?transfer_group=`), and builds webhook events signed the way Stripe signs them:
`Stripe-Signature: t=<unix>,v1=HMAC-SHA256(secret, "<t>.<raw body>")`.
"""

from __future__ import annotations

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


def stripe_signature(payload: str, secret: str, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def _form(data: Any) -> Doc:
    """Undo Stripe's form encoding of nested params: `metadata[purchase_id]=x` → {"metadata": {...}}."""
    out: Doc = {}
    for key, value in data.items():
        parts = key.replace("]", "").split("[")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


class FakeStripe:
    def __init__(self, secret_key: str = "sk_test_fake_0123456789", webhook_secret: str = "whsec_fake_0123456789"):
        self.secret_key = secret_key
        self.webhook_secret = webhook_secret
        self.intents: dict[str, Doc] = {}
        self.requests: list[tuple[str, str, Doc]] = []
        self.fail_with: int | None = None
        self.transfers: dict[str, Doc] = {}
        self.transfer_error: tuple[int, str, str | None] | None = None
        """(HTTP status, error type, code) every transfer create answers, e.g. (500, "api_error", None)."""
        self.lose_transfer_answers = False
        """Create the transfer, then answer 500 (a timeout after Stripe acted)."""
        self._transfer_keys: dict[str, tuple[str, Doc]] = {}
        self._by_idempotency: dict[str, str] = {}
        self._runner: web.AppRunner | None = None
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {"PAIRLY_STRIPE_SECRET_KEY": self.secret_key, "PAIRLY_STRIPE_WEBHOOK_SECRET": self.webhook_secret,
                "PAIRLY_STRIPE_PUBLISHABLE_KEY": "pk_test_fake", "PAIRLY_STRIPE_API_BASE": self.url}

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/payment_intents", self._create_intent)
        app.router.add_get("/v1/payment_intents/{id}", self._get_intent)
        app.router.add_post("/v1/transfers", self._create_transfer)
        app.router.add_get("/v1/transfers", self._list_transfers)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- the API ----------------------------------------------------------------------------------
    def _error(self, status: int, message: str, kind: str = "invalid_request_error") -> web.Response:
        return web.json_response({"error": {"type": kind, "message": message}}, status=status)

    async def _create_intent(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.secret_key}":
            return self._error(401, "Invalid API Key provided")
        params = _form(await request.post())
        self.requests.append(("POST", "/v1/payment_intents", params))
        if self.fail_with is not None:
            return self._error(self.fail_with, "simulated failure", "api_error")
        key = request.headers.get("Idempotency-Key")
        if key and key in self._by_idempotency:
            return web.json_response(self.intents[self._by_idempotency[key]])
        pid = "pi_" + secrets.token_hex(12)
        intent = {
            "id": pid, "object": "payment_intent", "amount": int(params["amount"]), "amount_received": 0,
            "currency": params["currency"], "client_secret": f"{pid}_secret_{secrets.token_hex(8)}",
            "status": "requires_payment_method", "metadata": params.get("metadata", {}),
            "description": params.get("description"), "livemode": False, "created": int(time.time()),
        }
        self.intents[pid] = intent
        if key:
            self._by_idempotency[key] = pid
        return web.json_response(intent)

    async def _get_intent(self, request: web.Request) -> web.Response:
        intent = self.intents.get(request.match_info["id"])
        if intent is None:
            return self._error(404, "No such payment_intent")
        return web.json_response(intent)

    async def _create_transfer(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.secret_key}":
            return self._error(401, "Invalid API Key provided")
        params = _form(await request.post())
        self.requests.append(("POST", "/v1/transfers", params))
        key = request.headers.get("Idempotency-Key")
        if not key:
            return self._error(400, "this fake requires an Idempotency-Key on transfers")
        if self.transfer_error is not None:
            status, kind, code = self.transfer_error
            body: Doc = {"type": kind, "message": "simulated transfer failure"}
            if code:
                body["code"] = code
            return web.json_response({"error": body}, status=status)
        if key in self._transfer_keys:
            tid, first = self._transfer_keys[key]
            if first != params:
                return self._error(400, "Keys for idempotent requests can only be used with the same parameters",
                                   "idempotency_error")
            return self._transfer_answer(self.transfers[tid])
        try:
            amount = int(params["amount"])
        except (KeyError, ValueError):
            return self._error(400, "Missing or invalid required param: amount")
        if amount <= 0:
            return self._error(400, "Invalid positive integer")
        currency, destination = params.get("currency"), params.get("destination")
        if not isinstance(currency, str) or len(currency) != 3 or currency != currency.lower():
            return self._error(400, "Invalid currency")
        if not isinstance(destination, str) or not destination.startswith("acct_"):
            return self._error(400, f"No such destination: '{destination}'")
        tid = "tr_" + secrets.token_hex(12)
        transfer = {
            "id": tid, "object": "transfer", "amount": amount, "amount_reversed": 0, "currency": currency,
            "destination": destination, "transfer_group": params.get("transfer_group"),
            "description": params.get("description"), "metadata": params.get("metadata", {}),
            "reversed": False, "livemode": False, "created": int(time.time()),
        }
        self.transfers[tid] = transfer
        self._transfer_keys[key] = (tid, params)
        return self._transfer_answer(transfer)

    def _transfer_answer(self, transfer: Doc) -> web.Response:
        if self.lose_transfer_answers:
            return self._error(500, "simulated failure after the transfer was made", "api_error")
        return web.json_response(transfer)

    async def _list_transfers(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.secret_key}":
            return self._error(401, "Invalid API Key provided")
        self.requests.append(("GET", "/v1/transfers", dict(request.query)))
        group = request.query.get("transfer_group")
        found = [t for t in reversed(self.transfers.values()) if group is None or t["transfer_group"] == group]
        limit = int(request.query.get("limit", "10"))
        return web.json_response({"object": "list", "url": "/v1/transfers", "has_more": len(found) > limit,
                                  "data": found[:limit]})

    # -- events -----------------------------------------------------------------------------------
    def event(self, kind: str, obj: Doc) -> Doc:
        return {"id": "evt_" + secrets.token_hex(12), "object": "event", "api_version": "2025-01-27.acacia",
                "created": int(time.time()), "type": kind, "livemode": False, "pending_webhooks": 1,
                "data": {"object": obj}}

    def succeeded(self, pid: str, *, amount: int | None = None, currency: str | None = None) -> Doc:
        intent = self.intents[pid]
        intent.update(status="succeeded", amount_received=amount if amount is not None else intent["amount"])
        obj = dict(intent)
        if currency is not None:
            obj["currency"] = currency
        return self.event("payment_intent.succeeded", obj)

    def failed(self, pid: str, message: str = "Your card was declined.") -> Doc:
        intent = dict(self.intents[pid], status="requires_payment_method",
                      last_payment_error={"code": "card_declined", "message": message})
        return self.event("payment_intent.payment_failed", intent)

    def refund(self, pid: str, amount: int | None = None, *, status: str = "succeeded", refund_id: str | None = None,
               kind: str = "refund.created") -> Doc:
        intent = self.intents[pid]
        obj = {"id": refund_id or "re_" + secrets.token_hex(12), "object": "refund",
               "amount": amount if amount is not None else intent["amount"], "currency": intent["currency"],
               "payment_intent": pid, "charge": "ch_" + pid[3:], "status": status}
        return self.event(kind, obj)

    def charge_refunded(self, pid: str, amount_refunded: int) -> Doc:
        intent = self.intents[pid]
        charge = {"id": "ch_" + pid[3:], "object": "charge", "amount": intent["amount"],
                  "amount_refunded": amount_refunded, "currency": intent["currency"], "payment_intent": pid,
                  "refunded": amount_refunded >= intent["amount"], "status": "succeeded"}
        return self.event("charge.refunded", charge)

    def dispute(self, pid: str, status: str = "needs_response", *, dispute_id: str | None = None,
                kind: str = "charge.dispute.created") -> Doc:
        intent = self.intents[pid]
        obj = {"id": dispute_id or "dp_" + secrets.token_hex(12), "object": "dispute", "amount": intent["amount"],
               "currency": intent["currency"], "payment_intent": pid, "charge": "ch_" + pid[3:],
               "status": status, "reason": "fraudulent"}
        return self.event(kind, obj)

    def signed(self, event: Doc, *, timestamp: int | None = None, secret: str | None = None) -> tuple[bytes, str]:
        body = json.dumps(event)
        return body.encode(), stripe_signature(body, secret or self.webhook_secret, timestamp)

    async def deliver(self, app_url: str, event: Doc, *, timestamp: int | None = None, secret: str | None = None,
                      body: bytes | None = None, header: str | None = None) -> tuple[int, Doc]:
        """POST a signed event to the app's webhook endpoint, as Stripe does."""
        signed_body, signature = self.signed(event, timestamp=timestamp, secret=secret)
        headers = {"Content-Type": "application/json"}
        if header != "":
            headers["Stripe-Signature"] = header or signature
        async with aiohttp.ClientSession() as http, http.post(
                app_url + "/api/webhooks/stripe", data=body if body is not None else signed_body,
                headers=headers) as resp:
            return resp.status, await resp.json()
