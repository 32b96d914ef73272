"""The caller's wallet: `GET /api/wallet` and `GET /api/wallet/ledger` (newest first, cursor-paginated)."""

from __future__ import annotations

from aiohttp import web

from billing import accounts
from billing.ledger import Ledger
from config.errors import InvalidPayload
from rest.auth import authenticate
from server.core import Core

MAX_LIMIT = 100


def wallet_routes(core: Core, ledger: Ledger) -> list[web.RouteDef]:
    async def wallet(request: web.Request) -> web.Response:
        identity = await authenticate(request, core)
        w = await ledger.wallet(identity.user_id)
        return web.json_response({"balance": w.balance, "held": w.held, "available": w.available})

    async def entries(request: web.Request) -> web.Response:
        identity = await authenticate(request, core)
        limit = _limit(request.query.get("limit"))
        before = request.query.get("before") or None
        if before is not None and len(before) > 40:
            raise InvalidPayload("bad cursor")
        await ledger.wallet(identity.user_id)  # opens the wallet (signup bonus) on first sight
        account = accounts.wallet(identity.user_id)
        found, cursor = await ledger.account_entries(account, before=before, limit=limit)
        return web.json_response({"entries": [e.view(account) for e in found], "next": cursor})

    return [web.get("/api/wallet", wallet), web.get("/api/wallet/ledger", entries)]


def _limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return 50
    try:
        value = int(raw)
    except ValueError:
        raise InvalidPayload("limit must be an integer 1..100") from None
    if not 1 <= value <= MAX_LIMIT:
        raise InvalidPayload("limit must be an integer 1..100")
    return value
