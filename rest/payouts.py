"""Creator payouts over REST: `POST|GET /api/payouts` (creators) and `GET /api/admin/payouts`,
`POST /api/admin/payouts/{id}/approve|reject` (admins). Thin: rules live in `billing.payouts`."""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from billing.payouts import STATUSES, Payouts, public
from config.errors import AppError, RateLimited
from config.settings import RateLimit
from rest.admin.roles import AdminAuth, roles_of
from rest.auth import authenticate
from rest.earnings import CREATOR
from rest.openapi import describe, error_responses, json_response, schema
from rest.paging import page
from rest.schema import body as read_body
from server.admin.audit import AuditLog
from server.core import Core

log = structlog.get_logger(__name__)

# Per creator; override with PAIRLY_RATE_LIMITS="payout:create=COUNT/SECONDS".
DEFAULT_PAYOUT_RATE = RateLimit(10, 60.0)


def payout_routes(core: Core, payouts: Payouts, admin: AdminAuth, audit: AuditLog) -> list[web.RouteDef]:
    """`admin`: the admin routes' role check (`rest/admin/roles.py` declares these routes' roles)."""
    rate = core.settings.limits.rate_limits.get("payout:create", DEFAULT_PAYOUT_RATE)

    async def create(request: web.Request) -> web.Response:
        identity = await authenticate(request, core, CREATOR)
        try:
            body = await read_body(request)
            wait = await core.rate_limiter.take(identity.user_id, "payout:create", rate)
            if wait > 0:
                raise RateLimited("too many payout requests", retry_after_s=wait)
            doc, created = await payouts.request(identity.user_id, body.get("amount"), body.get("idempotency_key"),
                                                 body.get("currency"))
        except AppError as exc:
            log.warning("payout_request_rejected", user=identity.user_id, code=exc.code, reason=exc.message)
            raise
        return web.json_response(public(doc), status=201 if created else 200)

    async def mine(request: web.Request) -> web.Response:
        identity = await authenticate(request, core, CREATOR)
        docs = await payouts.list_for(identity.user_id, limit=50)
        return web.json_response({"payouts": [public(d) for d in docs]})

    async def listing(request: web.Request) -> web.Response:
        await admin(request)
        limit, _ = page(request)
        docs = await payouts.listing(request.query.get("status") or None, limit=limit)
        return web.json_response({"payouts": [public(d) for d in docs]})

    async def approve(request: web.Request) -> web.Response:
        actor = await admin(request)
        doc = await payouts.approve(request.match_info["payout_id"], actor.user)
        await audit.append(actor, "payout.approve", doc["_id"], after={"status": doc["status"]},
                           key=f"payout:{doc['_id']}:{doc['status']}")  # approving again appends nothing
        return web.json_response(public(doc))

    async def reject(request: web.Request) -> web.Response:
        actor = await admin(request)
        body: dict[str, Any] = await read_body(request)
        doc = await payouts.reject(request.match_info["payout_id"], actor.user, body.get("reason"))
        await audit.append(actor, "payout.reject", doc["_id"], after={"status": doc["status"]},
                           reason=body.get("reason") if isinstance(body.get("reason"), str) else None,
                           key=f"payout:{doc['_id']}:{doc['status']}")
        return web.json_response(public(doc))

    return [
        web.post("/api/payouts", create),
        web.get("/api/payouts", mine),
        web.get("/api/admin/payouts", listing),
        web.post("/api/admin/payouts/{payout_id}/approve", approve),
        web.post("/api/admin/payouts/{payout_id}/reject", reject),
    ]


# -- OpenAPI ------------------------------------------------------------------------------------
_PAYOUT = schema("Payout", {"type": "object", "properties": {
    "id": {"type": "string"}, "user": {"type": "string"}, "amount": {"type": "integer", "description": "credits"},
    "status": {"enum": list(STATUSES)}, "idempotency_key": {"type": "string"},
    "money": {"type": "object", "properties": {
        "amount_minor": {"type": "integer"}, "currency": {"type": "string"}, "display": {"type": "string"}}},
    "provider": {"type": ["string", "null"]},
    "transfer_ref": {"type": ["string", "null"], "description": "the provider's transfer id once sent"},
    "created_at": {"type": "string", "format": "date-time"},
    "decided_at": {"type": ["string", "null"], "format": "date-time"}, "decided_by": {"type": ["string", "null"]},
    "reason": {"type": "string", "description": "rejected payouts"},
    "error": {"type": "object", "description": "the last provider failure (status failed; approve again)"},
    "approving": {"type": "object", "description": "an approval under way: {by, at}"}}})
_ID = [{"name": "payout_id", "in": "path", "required": True, "schema": {"type": "string"}}]
_LIST = json_response({"type": "object", "properties": {"payouts": {"type": "array", "items": _PAYOUT}}})

describe("POST", "/api/payouts", {
    "summary": "Request a payout of earned credits (idempotent per idempotency_key)", "x-roles": [CREATOR],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["amount", "idempotency_key"], "properties": {
            "amount": {"type": "integer", "description": "credits, at least PAIRLY_PAYOUT_MIN_CREDITS"},
            "idempotency_key": {"type": "string", "minLength": 8, "maxLength": 100},
            "currency": {"type": "string", "description": "default PAIRLY_PAYOUT_CURRENCY"}}}}}},
    "responses": {"201": json_response(_PAYOUT, "created"), "200": json_response(_PAYOUT, "seen before"),
                  **error_responses(400, 401, 402, 403, 409, 429)}})
describe("GET", "/api/payouts", {"summary": "The caller's latest payouts", "x-roles": [CREATOR],
                                 "responses": {"200": _LIST, **error_responses(401, 403)}})
describe("GET", "/api/admin/payouts", {
    "summary": "Payouts, newest first", "x-roles": list(roles_of("GET", "/api/admin/payouts")),
    "parameters": [{"name": "status", "in": "query", "schema": {"enum": list(STATUSES)}},
                   {"name": "limit", "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50}}],
    "responses": {"200": _LIST, **error_responses(400, 401, 403)}})
describe("POST", "/api/admin/payouts/{payout_id}/approve", {
    "summary": "Send the money through the payout provider and settle the ledger (idempotent)",
    "x-roles": list(roles_of("POST", "/api/admin/payouts/{payout_id}/approve")),
    "parameters": _ID,
    "responses": {"200": json_response(_PAYOUT), **error_responses(401, 403, 404, 409, 502, 503)}})
describe("POST", "/api/admin/payouts/{payout_id}/reject", {
    "summary": "Return the credits to the creator's earnings (idempotent)",
    "x-roles": list(roles_of("POST", "/api/admin/payouts/{payout_id}/reject")),
    "parameters": _ID,
    "requestBody": {"required": False, "content": {"application/json": {"schema": {
        "type": "object", "properties": {"reason": {"type": "string", "maxLength": 500}}}}}},
    "responses": {"200": json_response(_PAYOUT), **error_responses(400, 401, 403, 404, 409, 502)}})
