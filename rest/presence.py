"""`GET /api/presence?users=a,b,c`: the same view a `presence:subscribe` snapshot gives (bearer auth)."""

from __future__ import annotations

from aiohttp import web

from rest.auth import authenticate
from rest.openapi import Doc, describe
from server.core import Core
from server.presence import PresenceService
from server.presence.requests import users_query


def _answer(schema: Doc, description: str) -> Doc:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR: Doc = {"$ref": "#/components/schemas/Error"}
_P: Doc = {"type": "object", "required": ["user", "status", "last_seen"], "properties": {
    "user": {"type": "string"}, "status": {"enum": ["online", "away", "offline"]},
    "last_seen": {"type": ["string", "null"], "format": "date-time"}}}
describe("GET", "/api/presence", {
    "summary": "Presence of up to 500 users, as the caller may see it (users who blocked the caller look offline)",
    "parameters": [{"name": "users", "in": "query", "required": True, "schema": {"type": "string"},
                    "description": "comma-separated user ids"}],
    "responses": {
        "200": _answer({"type": "object", "properties": {"presence": {"type": "array", "items": _P}}}, "OK"),
        "400": _answer(_ERROR, "no users, or a malformed id"),
        "401": _answer(_ERROR, "missing or invalid token"),
        "413": _answer(_ERROR, "more users than PAIRLY_PRESENCE_MAX_SUBSCRIBE"),
    }})


def presence_routes(core: Core, presence: PresenceService) -> list[web.RouteDef]:
    async def get_presence(request: web.Request) -> web.Response:
        identity = await authenticate(request, core)
        users = users_query(request.query.get("users"), limit=presence.config.max_subscribe)
        return web.json_response({"presence": await presence.lookup(identity.user_id, users)})

    return [web.get("/api/presence", get_presence)]
