"""The caller's wallet: `GET /api/wallet` and `GET /api/wallet/ledger` (newest first, cursor-paginated)."""

from __future__ import annotations

from aiohttp import web

from billing import accounts
from billing.ledger import Ledger
from rest.auth import authenticate
from rest.paging import page
from server.core import Core


def wallet_routes(core: Core, ledger: Ledger) -> list[web.RouteDef]:
    async def wallet(request: web.Request) -> web.Response:
        identity = await authenticate(request, core)
        w = await ledger.wallet(identity.user_id)
        return web.json_response({"balance": w.balance, "held": w.held, "available": w.available})

    async def entries(request: web.Request) -> web.Response:
        identity = await authenticate(request, core)
        limit, before = page(request)
        await ledger.wallet(identity.user_id)  # opens the wallet (signup bonus) on first sight
        account = accounts.wallet(identity.user_id)
        found, cursor = await ledger.account_entries(account, before=before, limit=limit)
        return web.json_response({"entries": [e.view(account) for e in found], "next": cursor})

    return [web.get("/api/wallet", wallet), web.get("/api/wallet/ledger", entries)]
