"""Admin routes on users: search, detail, ban/unban, revoke sessions, credit adjustments. Thin: the
rules live in `server.sessions`, `server.admin.users` and the ledger; every change is audited."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from config.errors import InvalidPayload
from rest.admin.deps import AdminDeps, bool_param, future_until, int_param, text_param, time_param
from rest.admin.roles import roles_of
from rest.openapi import describe, error_responses, json_response
from rest.paging import page
from rest.schema import body
from server.admin.audit import Actor
from server.admin.users import UserFilter

Doc = dict[str, Any]
ADJUSTMENT_KIND = "admin_adjustment"
MAX_DELTA = 1_000_000_000


def user_routes(d: AdminDeps) -> list[web.RouteDef]:
    async def ban_state(user: str) -> Doc:
        """The user's ban state; 404 for a user the server has never seen (then nothing is changed)."""
        profile = await d.users.profile(user)
        return {k: profile.get(k) for k in ("banned", "ban_reason", "banned_until", "tokens_valid_after")}

    async def search(request: web.Request) -> web.Response:
        await d.auth(request)
        limit, _ = page(request)
        f = UserFilter(
            id_prefix=text_param(request, "id_prefix"), name=text_param(request, "name"),
            banned=bool_param(request, "banned"), balance_min=int_param(request, "balance_min"),
            balance_max=int_param(request, "balance_max"), seen_after=time_param(request, "seen_after"),
            seen_before=time_param(request, "seen_before"))
        found, nxt = await d.users.search(f, after=text_param(request, "after"), limit=limit)
        return web.json_response({"users": found, "next": nxt})

    async def detail(request: web.Request) -> web.Response:
        await d.auth(request)
        return web.json_response(await d.users.detail(request.match_info["user_id"]))

    async def change(request: web.Request, actor: Actor, action: str,
                     apply: Callable[[str, Doc], Awaitable[object]], reason: str | None) -> web.Response:
        """A ban-state change, audited with the state before and after."""
        user = request.match_info["user_id"]
        before = await ban_state(user)
        await apply(user, before)
        after = await ban_state(user)
        await d.audit.append(actor, action, user, before=before, after=after, reason=reason)
        return web.json_response({"user": user, **after})

    async def ban(request: web.Request) -> web.Response:
        actor = await d.auth(request)
        data = await body(request)
        until = future_until(data)
        return await change(request, actor, "user.ban", lambda user, _: d.sessions.ban(user, data["reason"], until),
                            data["reason"])

    async def unban(request: web.Request) -> web.Response:
        actor = await d.auth(request)
        data = await body(request)
        return await change(request, actor, "user.unban", lambda user, _: d.sessions.unban(user), data.get("reason"))

    async def revoke(request: web.Request) -> web.Response:
        actor = await d.auth(request)
        data = await body(request)
        return await change(request, actor, "user.revoke_sessions",
                            lambda user, _: d.sessions.revoke_user(user, "sessions revoked"), data.get("reason"))

    async def credits(request: web.Request) -> web.Response:
        actor = await d.auth(request)
        user = request.match_info["user_id"]
        data = await body(request)
        if data["delta"] == 0:
            raise InvalidPayload("body.delta must not be 0")
        await ban_state(user)
        before = await d.ledger.peek_wallet(user)
        key = f"admin:{data['idempotency_key']}"
        entry = await d.ledger.adjust(user, data["delta"], key, ADJUSTMENT_KIND, ref=actor.user,
                                      meta={"by": actor.user, "reason": data["reason"]})
        wallet = await d.ledger.wallet(user)
        view = entry.view(f"wallet:{user}")
        # Keyed like the ledger entry: a replay (even on another node) appends nothing, and a request
        # that died between the ledger and the audit gets its entry written by the retry.
        await d.audit.append(actor, "user.credits", user, reason=data["reason"], key=key,
                             before={"balance": None if before is None or entry.replayed else before.balance},
                             after={"balance": view.get("balance_after"), "delta": data["delta"], "entry": entry.key})
        return web.json_response({"user": user, "entry": view, "replayed": entry.replayed,
                                  "balance": wallet.balance, "held": wallet.held, "available": wallet.available},
                                 status=200 if entry.replayed else 201)

    return [
        web.get("/api/admin/users", search),
        web.get("/api/admin/users/{user_id}", detail),
        web.post("/api/admin/users/{user_id}/ban", ban),
        web.post("/api/admin/users/{user_id}/unban", unban),
        web.post("/api/admin/users/{user_id}/revoke-sessions", revoke),
        web.post("/api/admin/users/{user_id}/credits", credits),
    ]


# -- OpenAPI (and the request schemas `body()` validates against) ----------------------------------
_USER_ID = [{"name": "user_id", "in": "path", "required": True, "schema": {"type": "string"}}]
_BAN_STATE = {"type": "object", "properties": {
    "user": {"type": "string"}, "banned": {"type": "boolean"}, "ban_reason": {"type": ["string", "null"]},
    "banned_until": {"type": ["string", "null"], "format": "date-time"},
    "tokens_valid_after": {"type": ["string", "null"], "format": "date-time"}}}
_REASON = {"type": "string", "minLength": 1, "maxLength": 500}
_OPTIONAL_REASON: Doc = {"required": False, "content": {"application/json": {"schema": {
    "type": "object", "additionalProperties": False, "properties": {"reason": _REASON}}}}}
_USER = {"type": "object", "properties": {
    "id": {"type": "string"}, "name": {"type": ["string", "null"]}, "roles": {"type": ["array", "null"]},
    "first_seen": {"type": ["string", "null"]}, "last_seen": {"type": ["string", "null"]},
    "banned": {"type": "boolean"}, "ban_reason": {"type": ["string", "null"]},
    "banned_until": {"type": ["string", "null"]}, "balance": {"type": ["integer", "null"]}}}


def _doc(method: str, path: str, op: Doc) -> None:
    describe(method, path, {**op, "x-roles": list(roles_of(method, path))})


_doc("GET", "/api/admin/users", {
    "summary": "Search users (id prefix, name, banned, balance range, last seen range), in id order",
    "parameters": [
        {"name": "id_prefix", "in": "query", "schema": {"type": "string"}},
        {"name": "name", "in": "query", "schema": {"type": "string"}, "description": "case-insensitive substring"},
        {"name": "banned", "in": "query", "schema": {"type": "boolean"}},
        {"name": "balance_min", "in": "query", "schema": {"type": "integer"}},
        {"name": "balance_max", "in": "query", "schema": {"type": "integer"}},
        {"name": "seen_after", "in": "query", "schema": {"type": "string", "format": "date-time"}},
        {"name": "seen_before", "in": "query", "schema": {"type": "string", "format": "date-time"}},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50}},
        {"name": "after", "in": "query", "schema": {"type": "string"}, "description": "`next` of the previous page"}],
    "responses": {"200": json_response({"type": "object", "properties": {
        "users": {"type": "array", "items": _USER}, "next": {"type": ["string", "null"]}}}),
        **error_responses(400, 401, 403)}})
_doc("GET", "/api/admin/users/{user_id}", {
    "summary": "One user: profile, wallet, recent ledger, calls, reports by and against, live connections "
               "(node, namespace), presence",
    "parameters": _USER_ID,
    "responses": {"200": json_response({"type": "object", "properties": {
        "profile": _USER, "wallet": {"type": ["object", "null"]}, "ledger": {"type": "array"},
        "calls": {"type": "array"}, "reports_by": {"type": "array"}, "reports_against": {"type": "array"},
        "connections": {"type": "array", "items": {"type": "object", "properties": {
            "namespace": {"type": "string"}, "sid": {"type": "string"}, "node": {"type": "string"}}}},
        "presence": {"type": "object"}}}), **error_responses(401, 403, 404)}})
_doc("POST", "/api/admin/users/{user_id}/ban", {
    "summary": "Ban: every socket gets session:revoked and is closed on every node within a second, the "
               "user's call ends (ended_by_admin), connects are refused `banned`, REST answers 403; "
               "`until` lifts it by itself",
    "parameters": _USER_ID,
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["reason"], "additionalProperties": False, "properties": {
            "reason": _REASON, "until": {"type": "string", "format": "date-time"}}}}}},
    "responses": {"200": json_response(_BAN_STATE), **error_responses(400, 401, 403, 404)}})
_doc("POST", "/api/admin/users/{user_id}/unban", {
    "summary": "Lift a ban", "parameters": _USER_ID, "requestBody": _OPTIONAL_REASON,
    "responses": {"200": json_response(_BAN_STATE), **error_responses(400, 401, 403, 404)}})
_doc("POST", "/api/admin/users/{user_id}/revoke-sessions", {
    "summary": "Log the user out everywhere (tokens issued before now stop working; open sockets are "
               "closed after session:revoked) without banning",
    "parameters": _USER_ID, "requestBody": _OPTIONAL_REASON,
    "responses": {"200": json_response(_BAN_STATE), **error_responses(400, 401, 403, 404)}})
_doc("POST", "/api/admin/users/{user_id}/credits", {
    "summary": "Credit or debit the user's wallet through the ledger (idempotent per idempotency_key; a "
               "debit may take the wallet below zero); the user gets wallet:updated",
    "parameters": _USER_ID,
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["delta", "reason", "idempotency_key"], "additionalProperties": False,
        "properties": {
            "delta": {"type": "integer", "minimum": -MAX_DELTA, "maximum": MAX_DELTA,
                      "description": "credits, non-zero; negative debits"},
            "reason": _REASON,
            "idempotency_key": {"type": "string", "minLength": 8, "maxLength": 100}}}}}},
    "responses": {
        "201": json_response({"type": "object", "properties": {
            "user": {"type": "string"}, "entry": {"$ref": "#/components/schemas/LedgerEntry"},
            "replayed": {"type": "boolean"}, "balance": {"type": "integer"}, "held": {"type": "integer"},
            "available": {"type": "integer"}}}, "applied"),
        "200": json_response({"type": "object"}, "the key was applied before: nothing changed"),
        **error_responses(400, 401, 403, 404, 409)}})

