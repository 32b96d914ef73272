"""`GET /api/calls/history`: the caller's own calls, newest first, cursor-paginated. Thin: the
records and their public shape live in `signaling`."""

from __future__ import annotations

from aiohttp import web

from rest.auth import authenticate
from rest.openapi import describe, error_responses, json_response, schema
from rest.paging import page
from server.core import Core
from signaling.service import CallService


def call_routes(core: Core, calls: CallService) -> list[web.RouteDef]:
    async def history(request: web.Request) -> web.Response:
        user = (await authenticate(request, core)).user_id
        limit, before = page(request)
        items, cursor = await calls.history(user, before, limit)
        return web.json_response({"calls": items, "next": cursor})

    return [web.get("/api/calls/history", history)]


_CALL = schema("Call", {"type": "object", "properties": {
    "call_id": {"type": "string"}, "caller": {"type": "string"}, "callee": {"type": "string"},
    "direction": {"enum": ["outgoing", "incoming"]}, "media": {"enum": ["audio", "video"]},
    "state": {"enum": ["ringing", "accepted", "ended"]},
    "reason": {"type": ["string", "null"], "description": "end reason (PROTOCOL.md `E`)"},
    "invited_at": {"type": "string", "format": "date-time"},
    "accepted_at": {"type": ["string", "null"], "format": "date-time"},
    "ended_at": {"type": ["string", "null"], "format": "date-time"},
    "duration_s": {"type": "integer", "description": "from accept to end"},
    "billed_minutes": {"type": "integer"}, "credits": {"type": "integer", "description": "paid by the caller"},
    "rate_per_minute": {"type": "integer"},
    "media_changes": {"type": "array", "items": {"type": "object", "properties": {
        "at": {"type": "string"}, "media": {"type": "string"},
        "minute": {"type": "integer", "description": "first minute billed at this media's rate"}}}},
    "quality": {"type": "object", "description": "call quality figures, when measured"}}})

describe("GET", "/api/calls/history", {
    "summary": "The caller's calls (made and received), newest first",
    "parameters": [
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50}},
        {"name": "before", "in": "query", "schema": {"type": "string"}, "description": "`next` of the previous page"}],
    "responses": {"200": json_response({"type": "object", "properties": {
        "calls": {"type": "array", "items": _CALL}, "next": {"type": ["string", "null"]}}}),
        **error_responses(400, 401)}})
