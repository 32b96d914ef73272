"""`GET /api/openapi.json`: an OpenAPI 3.1 document of the HTTP routes this node serves.

Paths come from the router, so every route registered in `server/app.py` appears; modules add
detail for theirs with `describe(method, path, operation)` (summary, parameters, request body,
responses, `x-roles` for role-restricted routes). The billing routes are described here.
"""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

Doc = dict[str, Any]

_OPERATIONS: dict[tuple[str, str], Doc] = {}
_PUBLIC = {"/healthz", "/readyz", "/metrics", "/api/openapi.json", "/api/webhooks/stripe", "/api/webhooks/razorpay"}


def describe(method: str, path: str, operation: Doc) -> None:
    """Document one route (call at import time of the module that defines it)."""
    _OPERATIONS[(method.upper(), path)] = operation


def request_schema(method: str, path: str) -> Doc | None:
    """The JSON schema of a described route's request body (routes validate bodies against it)."""
    op = _OPERATIONS.get((method.upper(), path))
    if op is None or "requestBody" not in op:
        return None
    schema: Doc = op["requestBody"]["content"]["application/json"]["schema"]
    return schema


def _ref(name: str) -> Doc:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Doc, description: str = "OK") -> Doc:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> Doc:
    text = {400: "invalid input", 401: "missing or invalid token", 402: "not enough credits", 403: "forbidden",
            404: "not found", 409: "conflict", 429: "rate limited", 502: "payment provider unavailable",
            503: "temporarily unavailable or not configured"}
    return {str(s): _json(_ref("Error"), text[s]) for s in statuses}


_SCHEMAS: Doc = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
    "Wallet": {"type": "object", "properties": {"balance": {"type": "integer"}, "held": {"type": "integer"},
                                                "available": {"type": "integer"}}},
    "LedgerEntry": {"type": "object", "properties": {
        "id": {"type": "string", "description": "the idempotency key"}, "delta": {"type": "integer"},
        "held_delta": {"type": "integer"}, "balance_after": {"type": "integer"}, "held_after": {"type": "integer"},
        "kind": {"type": "string"}, "ref": {"type": ["string", "null"]},
        "created_at": {"type": "string", "format": "date-time"}}},
    "Package": {"type": "object", "properties": {
        "id": {"type": "string"}, "name": {"type": "string"}, "credits": {"type": "integer"},
        "prices": {"type": "array", "items": {"type": "object", "properties": {
            "currency": {"type": "string"}, "amount": {"type": "integer", "description": "minor units"},
            "display": {"type": "string"}}}}}},
    "Purchase": {"type": "object", "properties": {
        "id": {"type": "string"}, "provider": {"enum": ["stripe", "razorpay", "dev"]},
        "package_id": {"type": "string"}, "credits": {"type": "integer"},
        "amount": {"type": "integer", "description": "minor units"}, "currency": {"type": "string"},
        "status": {"enum": ["created", "pending", "failed", "canceled", "succeeded", "partially_refunded",
                            "refunded", "disputed"]},
        "history": {"type": "array", "items": {"type": "object"}},
        "client_secret": {"type": "string", "description": "Stripe, while payable"},
        "payment_intent_id": {"type": "string"}, "publishable_key": {"type": "string"},
        "order_id": {"type": "string", "description": "Razorpay, while payable"}, "key_id": {"type": "string"},
        "balance": {"type": "integer", "description": "in POST answers once succeeded"}}},
    "WebhookAnswer": {"type": "object", "properties": {
        "received": {"type": "boolean"}, "outcome": {"type": "string"}, "duplicate": {"type": "boolean"},
        "queued": {"type": "boolean"}}},
}



def schema(name: str, body: Doc) -> Doc:
    """Add a component schema (for modules describing their routes); returns a `$ref` to it."""
    _SCHEMAS[name] = body
    return _ref(name)


# For modules describing their routes: `json_response(schema)`, `error_responses(400, 401)`, `ref(name)`.
json_response = _json
error_responses = _errors
ref = _ref

describe("GET", "/api/credits/packages", {
    "summary": "Credit packages, the payment providers offered, and prices in credits (no token needed)",
    "security": [],
    "responses": {"200": _json({"type": "object", "properties": {
        "packages": {"type": "array", "items": _ref("Package")}, "providers": {"type": "array"},
        "pricing": {"type": "object"}}})}})
describe("GET", "/api/wallet", {"summary": "The caller's wallet",
                                "responses": {"200": _json(_ref("Wallet")), **_errors(401)}})
describe("GET", "/api/wallet/ledger", {
    "summary": "The caller's ledger entries, newest first",
    "parameters": [
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50}},
        {"name": "before", "in": "query", "schema": {"type": "string"}, "description": "`next` of the previous page"}],
    "responses": {"200": _json({"type": "object", "properties": {
        "entries": {"type": "array", "items": _ref("LedgerEntry")}, "next": {"type": ["string", "null"]}}}),
        **_errors(400, 401)}})
describe("POST", "/api/purchases", {
    "summary": "Buy a credit package (idempotent per idempotency_key)",
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["package_id", "provider", "idempotency_key"], "properties": {
            "package_id": {"type": "string"}, "provider": {"enum": ["stripe", "razorpay", "dev"]},
            "idempotency_key": {"type": "string", "minLength": 8, "maxLength": 100},
            "currency": {"type": "string"}}}}}},
    "responses": {"201": _json(_ref("Purchase"), "created"), "200": _json(_ref("Purchase"), "seen before"),
                  **_errors(400, 401, 409, 429, 502)}})
describe("GET", "/api/purchases", {"summary": "The caller's latest purchases", "responses": {
    "200": _json({"type": "object", "properties": {"purchases": {"type": "array", "items": _ref("Purchase")}}}),
    **_errors(401)}})
describe("GET", "/api/purchases/{purchase_id}", {
    "summary": "One of the caller's purchases",
    "parameters": [{"name": "purchase_id", "in": "path", "required": True, "schema": {"type": "string"}}],
    "responses": {"200": _json(_ref("Purchase")), **_errors(401, 404)}})
describe("POST", "/api/purchases/razorpay/verify", {
    "summary": "Razorpay checkout success: verify the signature and grant the credits",
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["razorpay_order_id", "razorpay_payment_id", "razorpay_signature"],
        "properties": {"razorpay_order_id": {"type": "string"}, "razorpay_payment_id": {"type": "string"},
                       "razorpay_signature": {"type": "string"}}}}}},
    "responses": {"200": _json(_ref("Purchase")), **_errors(400, 401, 404)}})
for _provider, _header in (("stripe", "Stripe-Signature"), ("razorpay", "X-Razorpay-Signature")):
    describe("POST", f"/api/webhooks/{_provider}", {
        "summary": f"{_provider.title()} webhook (authenticated by the {_header} signature on the raw body)",
        "security": [],
        "parameters": [{"name": _header, "in": "header", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": _json(_ref("WebhookAnswer")), **_errors(400, 404)}})


describe("GET", "/healthz", {"summary": "Alive (no store checks)", "security": [],
                             "responses": {"200": _json({"type": "object"})}})
describe("GET", "/readyz", {"summary": "MongoDB and Redis reachable; 503 with the reasons otherwise", "security": [],
                            "responses": {"200": _json({"type": "object"}), **_errors(503)}})
describe("GET", "/metrics", {
    "summary": "Prometheus metrics (text format); `Authorization: Bearer <PAIRLY_METRICS_TOKEN>` when that is set",
    "security": [], "responses": {"200": {"description": "Prometheus text", "content": {"text/plain": {}}},
                                  **_errors(401)}})
describe("GET", "/api/openapi.json", {"summary": "This document", "security": [],
                                      "responses": {"200": _json({"type": "object"})}})


def described() -> set[tuple[str, str]]:
    """(method, path) of every described route (a test checks this equals the router's routes)."""
    return set(_OPERATIONS)


def build_document(app: web.Application) -> Doc:
    paths: dict[str, Doc] = {}
    for route in app.router.routes():
        resource = route.resource
        if resource is None or route.method in ("HEAD", "OPTIONS", "*"):
            continue
        path = resource.canonical
        if path.startswith("/socket.io"):
            continue
        operation = copy.deepcopy(_OPERATIONS.get((route.method, path), {"summary": f"{route.method} {path}",
                                                                          "responses": {"200": {"description": "OK"}}}))
        if path in _PUBLIC:
            operation.setdefault("security", [])
        paths.setdefault(path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Pairly realtime REST API", "version": "0.1.0",
                 "description": "REST sidecar of the realtime server; the Socket.IO contract is PROTOCOL.md."},
        "security": [{"bearer": []}],
        "paths": dict(sorted(paths.items())),
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
                       "schemas": _SCHEMAS},
    }


def openapi_routes() -> list[web.RouteDef]:
    async def document(request: web.Request) -> web.Response:
        return web.json_response(build_document(request.app))

    return [web.get("/api/openapi.json", document)]
