"""Credit packages and purchases: `GET /api/credits/packages`, `POST /api/purchases`,
`GET /api/purchases/{id}`, `POST /api/purchases/razorpay/verify`. Thin: validation and rules live in
`billing`; errors become responses in `server.errormap` (via the middleware)."""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from billing.ledger import Ledger
from billing.payments import Payments
from billing.pricing import Pricing
from billing.purchases import public
from config.errors import AppError, RateLimited
from config.settings import RateLimit
from rest.auth import authenticate
from rest.schema import body as read_body
from server.core import Core

log = structlog.get_logger(__name__)

# Per user; override with PAIRLY_RATE_LIMITS="purchase:create=COUNT/SECONDS".
DEFAULT_PURCHASE_RATE = RateLimit(20, 60.0)


def purchase_routes(core: Core, ledger: Ledger, pricing: Pricing, payments: Payments) -> list[web.RouteDef]:
    rate = core.settings.limits.rate_limits.get("purchase:create", DEFAULT_PURCHASE_RATE)

    async def packages(_: web.Request) -> web.Response:
        # Public: apps show what credits cost before anyone signs in.
        return web.json_response({
            "packages": pricing.packages.public(),
            "providers": payments.offered(),
            "pricing": pricing.public(),
        })

    async def create(request: web.Request) -> web.Response:
        identity = await authenticate(request, core)
        try:
            body = await read_body(request)
            wait = await core.rate_limiter.take(identity.user_id, "purchase:create", rate)
            if wait > 0:
                raise RateLimited("too many purchases", retry_after_s=wait)
            doc, created = await payments.purchases.create(
                identity.user_id, body.get("package_id"), body.get("provider"), body.get("idempotency_key"),
                body.get("currency"))
        except AppError as exc:
            log.warning("purchase_rejected", user=identity.user_id, code=exc.code, reason=exc.message)
            raise
        view = public(doc, checkout=True)
        response: dict[str, Any] = {"purchase_id": doc["_id"], **view}
        if doc["status"] in ("succeeded", "partially_refunded"):
            response["balance"] = (await ledger.wallet(identity.user_id)).balance
        return web.json_response(response, status=201 if created else 200)

    async def get(request: web.Request) -> web.Response:
        identity = await authenticate(request, core)
        doc = await payments.purchases.get_for(identity.user_id, request.match_info["purchase_id"])
        return web.json_response(public(doc, checkout=True))

    async def listing(request: web.Request) -> web.Response:
        identity = await authenticate(request, core)
        docs = await payments.purchases.list_for(identity.user_id, limit=50)
        return web.json_response({"purchases": [public(d) for d in docs]})

    async def razorpay_verify(request: web.Request) -> web.Response:
        identity = await authenticate(request, core)
        try:
            body = await read_body(request)
            doc = await payments.verify_razorpay(
                identity.user_id,
                body.get("razorpay_order_id", body.get("order_id")),
                body.get("razorpay_payment_id", body.get("payment_id")),
                body.get("razorpay_signature", body.get("signature")),
            )
        except AppError as exc:
            log.warning("razorpay_verify_failed", user=identity.user_id, code=exc.code, reason=exc.message)
            raise
        balance = (await ledger.wallet(identity.user_id)).balance
        return web.json_response({"purchase_id": doc["_id"], **public(doc), "balance": balance})

    return [
        web.get("/api/credits/packages", packages),
        web.post("/api/purchases", create),
        web.get("/api/purchases", listing),
        web.post("/api/purchases/razorpay/verify", razorpay_verify),
        web.get("/api/purchases/{purchase_id}", get),
    ]
