"""`GET /api/openapi.json` lists every HTTP route the node serves, with the billing routes described."""

from __future__ import annotations

import aiohttp

from tests.support.apps import RunningApp


async def test_openapi_document_lists_the_routes(app_server: RunningApp) -> None:
    async with aiohttp.ClientSession() as http, http.get(app_server.url + "/api/openapi.json") as resp:
        assert resp.status == 200
        doc = await resp.json()
    assert doc["openapi"].startswith("3.1")
    paths = doc["paths"]
    for path, method in [("/api/credits/packages", "get"), ("/api/wallet", "get"), ("/api/wallet/ledger", "get"),
                         ("/api/purchases", "post"), ("/api/purchases/{purchase_id}", "get"),
                         ("/api/purchases/razorpay/verify", "post"), ("/api/webhooks/stripe", "post"),
                         ("/api/webhooks/razorpay", "post"), ("/healthz", "get")]:
        assert method in paths[path], path
    assert paths["/api/webhooks/stripe"]["post"]["security"] == []
    assert paths["/api/credits/packages"]["get"]["security"] == []
    assert "402" not in paths["/api/purchases"]["post"]["responses"]
    assert "/socket.io/" not in paths
    assert set(doc["components"]["schemas"]) >= {"Error", "Wallet", "Purchase"}
