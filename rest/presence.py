"""`GET /api/presence?users=a,b,c`: the same view a `presence:subscribe` snapshot gives (bearer auth)."""

from __future__ import annotations

from aiohttp import web

from rest.auth import authenticate
from server.core import Core
from server.presence import PresenceService
from server.presence.requests import users_query


def presence_routes(core: Core, presence: PresenceService) -> list[web.RouteDef]:
    async def get_presence(request: web.Request) -> web.Response:
        identity = await authenticate(request, core)
        users = users_query(request.query.get("users"), limit=presence.config.max_subscribe)
        return web.json_response({"presence": await presence.lookup(identity.user_id, users)})

    return [web.get("/api/presence", get_presence)]
