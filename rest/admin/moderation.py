"""Admin routes for moderation: the report queue, resolving reports, deleting a message for everyone.
Thin: the rules live in `server.admin.reports` and the chat service; every change is audited."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from config.errors import InvalidPayload, NotFound
from rest.admin.deps import AdminDeps, choice_param, future_until, int_param, text_param
from rest.admin.roles import roles_of
from rest.openapi import describe, error_responses, json_response
from rest.schema import body
from server.admin.reports import ACTIONS, STATUSES, Resolution
from server.chat.model import public as public_message

Doc = dict[str, Any]
_MAX_LIMIT = 100


def moderation_routes(d: AdminDeps) -> list[web.RouteDef]:
    async def reports(request: web.Request) -> web.Response:
        await d.auth(request)
        limit = int_param(request, "limit") or 50
        if not 1 <= limit <= _MAX_LIMIT:
            raise InvalidPayload(f"limit must be an integer 1..{_MAX_LIMIT}")
        items, nxt = await d.moderation.listing(
            status=choice_param(request, "status", STATUSES), reported=text_param(request, "reported"),
            reporter=text_param(request, "reporter"), before=text_param(request, "before"), limit=limit)
        return web.json_response({"reports": items, "next": nxt})

    async def resolve(request: web.Request) -> web.Response:
        actor = await d.auth(request)
        report_id = request.match_info["report_id"]
        data = await body(request)
        until = future_until(data)
        res = Resolution(data["action"], actor.user, data.get("reason"), data.get("text"), until)
        before, after, changed = await d.moderation.resolve(report_id, res)
        # Keyed by the report: resolving again (a replay) appends nothing.
        await d.audit.append(actor, "report.resolve", report_id, before=before, after=after,
                             reason=data.get("reason"), key=f"report:{report_id}")
        return web.json_response({"report": after, "replayed": not changed})

    async def delete_message(request: web.Request) -> web.Response:
        actor = await d.auth(request)
        message_id = request.match_info["message_id"]
        data = await body(request)
        if len(message_id) > 100:
            raise NotFound("no such message")
        doc = await d.chat.delete_by_moderator(message_id)
        await d.audit.append(actor, "message.delete", message_id, after={"deleted": True, "from": doc["from"],
                                                                          "to": doc["to"]},
                             reason=data["reason"])
        return web.json_response({"message": public_message(doc)})

    return [
        web.get("/api/admin/reports", reports),
        web.post("/api/admin/reports/{report_id}/resolve", resolve),
        web.post("/api/admin/messages/{message_id}/delete", delete_message),
    ]


def _doc(method: str, path: str, op: Doc) -> None:
    describe(method, path, {**op, "x-roles": list(roles_of(method, path))})


_REPORT = {"type": "object", "properties": {
    "id": {"type": "string"}, "message_id": {"type": "string"}, "reporter": {"type": "string"},
    "reported": {"type": "string"}, "reason": {"type": ["string", "null"]}, "status": {"enum": list(STATUSES)},
    "at": {"type": "string", "format": "date-time"},
    "resolution": {"type": "object", "description": "{action, by, at, reason} once resolved"},
    "message": {"type": "object", "description": "the message M as it is now (or as reported, if gone)"},
    "context": {"type": "array", "description": "up to 3 messages before and 3 after, oldest first"}}}
_doc("GET", "/api/admin/reports", {
    "summary": "Message reports, newest first, with the message and a few messages of context",
    "parameters": [{"name": "status", "in": "query", "schema": {"enum": list(STATUSES)}},
                   {"name": "reported", "in": "query", "schema": {"type": "string"}},
                   {"name": "reporter", "in": "query", "schema": {"type": "string"}},
                   {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                   {"name": "before", "in": "query", "schema": {"type": "string"}}],
    "responses": {"200": json_response({"type": "object", "properties": {
        "reports": {"type": "array", "items": _REPORT}, "next": {"type": ["string", "null"]}}}),
        **error_responses(400, 401, 403)}})
_doc("POST", "/api/admin/reports/{report_id}/resolve", {
    "summary": "Resolve a report with an action (idempotent: the same action again changes nothing; "
               "another action on a resolved report is a conflict)",
    "parameters": [{"name": "report_id", "in": "path", "required": True, "schema": {"type": "string"}}],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["action"], "additionalProperties": False, "properties": {
            "action": {"enum": list(ACTIONS)},
            "reason": {"type": "string", "minLength": 1, "maxLength": 500,
                       "description": "required for ban"},
            "text": {"type": "string", "minLength": 1,
                     "description": "warn: the notice (default text otherwise), <= PAIRLY_ADMIN_NOTICE_MAX_CHARS"},
            "until": {"type": "string", "format": "date-time", "description": "ban: when it lifts"}}}}}},
    "responses": {"200": json_response({"type": "object", "properties": {
        "report": _REPORT, "replayed": {"type": "boolean"}}}), **error_responses(400, 401, 403, 404, 409)}})
_doc("POST", "/api/admin/messages/{message_id}/delete", {
    "summary": "Delete a message for everyone (both parties' devices get message:deleted); idempotent",
    "parameters": [{"name": "message_id", "in": "path", "required": True, "schema": {"type": "string"}}],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["reason"], "additionalProperties": False, "properties": {
            "reason": {"type": "string", "minLength": 1, "maxLength": 500}}}}}},
    "responses": {"200": json_response({"type": "object", "properties": {"message": {"type": "object"}}}),
                  **error_responses(400, 401, 403, 404)}})
