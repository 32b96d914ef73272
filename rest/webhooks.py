"""Provider webhooks: `POST /api/webhooks/stripe` and `POST /api/webhooks/razorpay`.

No bearer auth: the provider's signature on the raw body is the authentication (`billing.webhooks`).
"""

from __future__ import annotations

from aiohttp import web

from billing.webhooks import Webhooks
from config.errors import InvalidPayload

MAX_BODY_BYTES = 512 * 1024


def webhook_routes(webhooks: Webhooks) -> list[web.RouteDef]:
    def handler(provider: str) -> web.RouteDef:
        async def receive(request: web.Request) -> web.Response:
            if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
                raise InvalidPayload("body too large")
            body = await request.read()  # the raw bytes: signatures are over them, byte for byte
            result = await webhooks.receive(provider, body, request.headers)
            return web.json_response(result)

        return web.post(f"/api/webhooks/{provider}", receive)

    return [handler("stripe"), handler("razorpay")]
