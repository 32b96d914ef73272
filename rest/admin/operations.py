"""Admin routes for live operations and configuration: stats across nodes, active calls, ending a
call, notices, runtime pricing, and reading the audit log. Thin over their services; audited."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from config.errors import Conflict, InvalidPayload, NotFound
from rest.admin.deps import AdminDeps, int_param, text_param, time_param
from rest.admin.roles import roles_of
from rest.openapi import describe, error_responses, json_response
from rest.paging import page
from rest.schema import body
from server.admin.notices import LEVELS
from signaling.model import iso

Doc = dict[str, Any]


def _call_view(doc: Doc) -> Doc:
    return {"call_id": doc["_id"], "caller": doc["caller"], "callee": doc["callee"], "media": doc["media"],
            "state": doc["state"], "invited_at": iso(doc.get("invited_at")),
            "accepted_at": iso(doc.get("accepted_at")), "rate_per_minute": doc["rates"][doc["media"]],
            "owner": doc.get("owner")}


def operation_routes(d: AdminDeps) -> list[web.RouteDef]:
    async def stats(request: web.Request) -> web.Response:
        await d.auth(request)
        return web.json_response(await d.stats.aggregate())

    async def active_calls(request: web.Request) -> web.Response:
        await d.auth(request)
        limit, _ = page(request)
        docs = await d.calls.store.active(limit=limit)
        return web.json_response({"calls": [_call_view(c) for c in docs]})

    async def call_quality(request: web.Request) -> web.Response:
        await d.auth(request)
        until = time_param(request, "until") or dt.datetime.now(dt.UTC)
        since = time_param(request, "since") or until - dt.timedelta(days=1)
        if since >= until:
            raise InvalidPayload("since must be before until")
        worst = int_param(request, "worst")
        worst = 10 if worst is None else worst
        if not 0 <= worst <= 100:
            raise InvalidPayload("worst must be 0..100")
        return web.json_response(await d.quality.window(since, until, worst=worst, scan_max=d.quality_scan_max))

    async def end_call(request: web.Request) -> web.Response:
        actor = await d.auth(request)
        call_id = request.match_info["call_id"]
        data = await body(request)
        doc = await d.calls.store.get(call_id) if len(call_id) <= 100 else None
        if doc is None:
            raise NotFound("no such call")
        ended = await d.calls.end_by_admin(call_id)
        if ended is None:
            raise Conflict(f"the call is not active (state {doc['state']})")
        await d.audit.append(actor, "call.end", call_id, before={"state": doc["state"]}, after=ended,
                             reason=data.get("reason"))
        return web.json_response({"call": ended})

    async def notice(request: web.Request) -> web.Response:
        actor = await d.auth(request)
        data = await body(request)
        user = data.get("user")
        if user is not None:
            await d.users.profile(user)  # 404 for a user never seen
        sent = await d.notices.send(data["text"], data.get("level", "info"), user)
        await d.audit.append(actor, "notice.send", user or "*", after=sent)
        return web.json_response({"notice": sent, "to": user or "*"})

    async def get_pricing(request: web.Request) -> web.Response:
        await d.auth(request)
        await d.pricing.refresh()
        return web.json_response(d.pricing.current())

    async def put_pricing(request: web.Request) -> web.Response:
        actor = await d.auth(request)
        data = await body(request)
        before, after = await d.pricing.update({k: v for k, v in data.items() if k != "reason"}, actor=actor.user)
        await d.audit.append(actor, "pricing.update", "pricing", before=before, after=after,
                             reason=data.get("reason"))
        return web.json_response(after)

    async def audit(request: web.Request) -> web.Response:
        await d.auth(request)
        limit, before = page(request)
        entries, nxt = await d.audit.find(
            actor=text_param(request, "actor"), target=text_param(request, "target"),
            action=text_param(request, "action"), since=time_param(request, "since"),
            until=time_param(request, "until"), before=before, limit=limit)
        return web.json_response({"entries": entries, "next": nxt})

    return [
        web.get("/api/admin/stats", stats),
        web.get("/api/admin/calls/active", active_calls),
        web.get("/api/admin/calls/quality", call_quality),
        web.post("/api/admin/calls/{call_id}/end", end_call),
        web.post("/api/admin/notice", notice),
        web.get("/api/admin/pricing", get_pricing),
        web.put("/api/admin/pricing", put_pricing),
        web.get("/api/admin/audit", audit),
    ]


def _doc(method: str, path: str, op: Doc) -> None:
    describe(method, path, {**op, "x-roles": list(roles_of(method, path))})


_PRICE = {"type": "integer", "minimum": 0, "maximum": 1_000_000}
_PRICING = {"type": "object", "properties": {
    "message": _PRICE, "audio_per_minute": _PRICE, "video_per_minute": _PRICE, "signup_bonus": _PRICE,
    "packages": {"type": "array", "items": {"type": "object"}}, "version": {"type": "integer"}}}
_CALL = {"type": "object", "properties": {
    "call_id": {"type": "string"}, "caller": {"type": "string"}, "callee": {"type": "string"},
    "media": {"enum": ["audio", "video"]}, "state": {"enum": ["ringing", "accepted"]},
    "invited_at": {"type": ["string", "null"]}, "accepted_at": {"type": ["string", "null"]},
    "rate_per_minute": {"type": "integer"}, "owner": {"type": ["string", "null"], "description": "ticking node"}}}
_REASON_BODY = {"required": False, "content": {"application/json": {"schema": {
    "type": "object", "additionalProperties": False, "properties": {
        "reason": {"type": "string", "minLength": 1, "maxLength": 500}}}}}}

_doc("GET", "/api/admin/stats", {
    "summary": "Live figures across nodes: connections per namespace and node, messages/min, credits "
               "spent/min, active calls, purchases today, nodes alive",
    "responses": {"200": json_response({"type": "object", "properties": {
        "nodes_alive": {"type": "integer"}, "connections": {"type": "object"},
        "messages_per_min": {"type": "integer"}, "credits_spent_per_min": {"type": "integer"},
        "active_calls": {"type": "integer"},
        "purchases_today": {"type": "object", "properties": {"count": {"type": "integer"},
                                                             "credits": {"type": "integer"}}},
        "nodes": {"type": "array", "items": {"type": "object"}}}}), **error_responses(401, 403)}})
_doc("GET", "/api/admin/calls/active", {
    "summary": "Calls ringing or accepted, newest first",
    "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}}],
    "responses": {"200": json_response({"type": "object", "properties": {
        "calls": {"type": "array", "items": _CALL}}}), **error_responses(400, 401, 403)}})
_GRADES = {"type": "object", "additionalProperties": {"type": "integer"}}
_doc("GET", "/api/admin/calls/quality", {
    "summary": "Call quality over a window: grade distribution of calls (from their call:stats) and of "
               "probes, and the worst calls with their per-minute stats",
    "parameters": [
        {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"},
         "description": "calls placed at or after (default: 24 h before until)"},
        {"name": "until", "in": "query", "schema": {"type": "string", "format": "date-time"},
         "description": "calls placed before (default: now)"},
        {"name": "worst", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 100},
         "description": "how many of the worst calls to list (default 10)"}],
    "responses": {"200": json_response({"type": "object", "properties": {
        "since": {"type": "string"}, "until": {"type": "string"},
        "calls": {"type": "integer", "description": "accepted calls ended in the window, read"},
        "truncated": {"type": "boolean", "description": "more than PAIRLY_ADMIN_QUALITY_SCAN_MAX calls"},
        "grades": _GRADES, "probes": _GRADES,
        "worst": {"type": "array", "items": {"type": "object"}}}}), **error_responses(400, 401, 403)}})
_doc("POST", "/api/admin/calls/{call_id}/end", {
    "summary": "End a call (reason ended_by_admin); billing settles as for any end",
    "parameters": [{"name": "call_id", "in": "path", "required": True, "schema": {"type": "string"}}],
    "requestBody": _REASON_BODY,
    "responses": {"200": json_response({"type": "object", "properties": {"call": {
        "type": "object", "description": "E: {call_id, reason, duration_s, billed_minutes, credits}"}}}),
        **error_responses(400, 401, 403, 404, 409)}})
_doc("POST", "/api/admin/notice", {
    "summary": "Send system:notice to one user's devices, or to everyone connected, on every namespace",
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["text"], "additionalProperties": False, "properties": {
            "text": {"type": "string", "minLength": 1, "description": "at most PAIRLY_ADMIN_NOTICE_MAX_CHARS (2000)"},
            "level": {"enum": list(LEVELS)},
            "user": {"type": "string", "minLength": 1, "maxLength": 128, "description": "omit: everyone"}}}}}},
    "responses": {"200": json_response({"type": "object", "properties": {
        "notice": {"type": "object"}, "to": {"type": "string"}}}), **error_responses(400, 401, 403, 404)}})
_doc("GET", "/api/admin/pricing", {
    "summary": "The prices in force: message, per-minute rates, signup bonus, packages, version",
    "responses": {"200": json_response(_PRICING), **error_responses(401, 403)}})
_doc("PUT", "/api/admin/pricing", {
    "summary": "Change prices (a partial update); every node applies them to the next message, call "
               "invite and new wallet within PAIRLY_PRICING_POLL_S; GET /api/credits/packages shows them",
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "additionalProperties": False, "properties": {
            "message": _PRICE, "audio_per_minute": _PRICE, "video_per_minute": _PRICE, "signup_bonus": _PRICE,
            "packages": {"type": "array", "minItems": 1, "maxItems": 50, "items": {
                "type": "object", "required": ["id", "credits", "prices"], "additionalProperties": False,
                "properties": {"id": {"type": "string"}, "name": {"type": "string"},
                               "credits": {"type": "integer", "minimum": 1},
                               "prices": {"type": "object", "description": "{currency: minor units}"}}}},
            "reason": {"type": "string", "maxLength": 500}}}}}},
    "responses": {"200": json_response(_PRICING), **error_responses(400, 401, 403, 409)}})
_doc("GET", "/api/admin/audit", {
    "summary": "The audit log, newest first (append-only: no route changes or deletes entries)",
    "parameters": [{"name": n, "in": "query", "schema": {"type": "string"}} for n in ("actor", "target", "action")]
    + [{"name": n, "in": "query", "schema": {"type": "string", "format": "date-time"}} for n in ("since", "until")]
    + [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
       {"name": "before", "in": "query", "schema": {"type": "string"}}],
    "responses": {"200": json_response({"type": "object", "properties": {
        "entries": {"type": "array", "items": {"type": "object", "properties": {
            "id": {"type": "string"}, "actor": {"type": "string"}, "role": {"type": "string"},
            "action": {"type": "string"}, "target": {"type": "string"}, "before": {}, "after": {},
            "reason": {"type": ["string", "null"]}, "request_id": {"type": ["string", "null"]},
            "at": {"type": "string", "format": "date-time"}}}},
        "next": {"type": ["string", "null"]}}}), **error_responses(400, 401, 403)}})
