"""A creator's earnings and settings: `GET /api/earnings`, `GET /api/earnings/ledger`,
`GET|PUT /api/creator/rates`, `PUT /api/creator/payout-account`. Every route needs the `creator`
role (403 otherwise). Thin: rules live in `billing.creators` / `billing.payouts`."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from billing import accounts
from billing.creators import Creators
from billing.ledger import Entry, Ledger
from billing.payouts import Payouts
from rest.auth import authenticate
from rest.openapi import Doc, describe, error_responses, json_response, schema
from rest.paging import page
from rest.schema import body as read_body
from server.core import Core

CREATOR = "creator"


def earnings_routes(core: Core, ledger: Ledger, creators: Creators, payouts: Payouts) -> list[web.RouteDef]:
    async def summary(request: web.Request) -> web.Response:
        user = (await authenticate(request, core, CREATOR)).user_id
        earned, payout = accounts.earnings(user), accounts.payout(user)
        balances = await ledger.balances([earned, payout])
        paid_out = await payouts.paid_out(user)
        balance, pending = balances[earned], balances[payout]
        return web.json_response({
            "balance": balance,
            "pending_payout": pending,
            "paid_out": paid_out,
            "lifetime": balance + pending + paid_out,
            "share_pct": creators.policy.share_pct,
            "payout": {**payouts.policy.public(balance),
                       "provider": payouts.provider.name if payouts.provider else None,
                       "stripe_account": await payouts.account(user)},
        })

    async def entries(request: web.Request) -> web.Response:
        user = (await authenticate(request, core, CREATOR)).user_id
        limit, before = page(request)
        account = accounts.earnings(user)
        found, cursor = await ledger.account_entries(account, before=before, limit=limit)
        return web.json_response({"entries": [earning_view(e, account) for e in found], "next": cursor})

    async def get_rates(request: web.Request) -> web.Response:
        identity = await authenticate(request, core, CREATOR)
        return web.json_response(_rates_body(creators, (await creators.rates(identity.user_id)).public()))

    async def put_rates(request: web.Request) -> web.Response:
        identity = await authenticate(request, core, CREATOR)
        body = await read_body(request)
        await creators.mark(identity.user_id, identity.roles)  # fans' nodes now see a creator
        rates = await creators.set_rates(identity.user_id, body)
        return web.json_response(_rates_body(creators, rates.public()))

    async def put_payout_account(request: web.Request) -> web.Response:
        identity = await authenticate(request, core, CREATOR)
        body = await read_body(request)
        await creators.mark(identity.user_id, identity.roles)
        return web.json_response(await payouts.set_account(identity.user_id, body))

    return [
        web.get("/api/earnings", summary),
        web.get("/api/earnings/ledger", entries),
        web.get("/api/creator/rates", get_rates),
        web.put("/api/creator/rates", put_rates),
        web.put("/api/creator/payout-account", put_payout_account),
    ]


def _rates_body(creators: Creators, rates: Doc) -> Doc:
    rates.pop("creator", None)
    return {"rates": rates, "bounds": creators.policy.bounds(), "share_pct": creators.policy.share_pct}


def earning_view(entry: Entry, account: str) -> Doc:
    """One entry as its creator lists it: the change of their earnings (summed over the shards it
    touched), what the payer paid in total (`gross`) and what it pays for (`link`)."""
    delta = sum(p.delta for p in entry.postings if p.account == account)
    out: Doc = {"id": entry.key, "delta": delta, "kind": entry.kind, "ref": entry.ref,
                "created_at": entry.created_at.isoformat(), "link": _link(entry)}
    paid = [p for p in entry.postings if p.account.startswith("wallet:")]
    if paid and entry.kind not in ("payout_request", "payout_paid", "payout_rejected"):
        out["gross"] = -sum(p.delta + p.held for p in paid)
    return out


def _link(entry: Entry) -> Doc | None:
    """What an earning pays for: the message (ref = message id), the call minute (key
    `call:<call id>:<minute>`), or the payout (ref = payout id)."""
    if entry.kind == "message":
        return {"type": "message", "message_id": entry.ref}
    if entry.kind.startswith("payout"):
        return {"type": "payout", "payout_id": entry.ref}
    if entry.key.startswith("call:") or entry.kind in ("call_minute", "capture"):
        parts = entry.key.split(":")
        link: dict[str, Any] = {"type": "call_minute", "call_id": entry.ref or (parts[1] if len(parts) > 1 else None)}
        if parts[-1].isdigit():
            link["minute"] = int(parts[-1])
        return link
    return None


# -- OpenAPI ------------------------------------------------------------------------------------
_CREATOR_ONLY = {"x-roles": [CREATOR]}
_EARNING = schema("EarningsEntry", {"type": "object", "properties": {
    "id": {"type": "string", "description": "the ledger key"},
    "delta": {"type": "integer", "description": "change of the creator's earnings"},
    "gross": {"type": "integer", "description": "what the payer paid (messages, call minutes)"},
    "kind": {"type": "string", "description": "message, call_minute, payout_request, payout_rejected, ..."},
    "ref": {"type": ["string", "null"]},
    "link": {"type": ["object", "null"], "description": "{type: message, message_id} | "
             "{type: call_minute, call_id, minute} | {type: payout, payout_id}"},
    "created_at": {"type": "string", "format": "date-time"}}})
_RATES = schema("CreatorRates", {"type": "object", "properties": {
    "rates": {"type": "object", "properties": {"message": {"type": "integer"},
                                               "audio_per_minute": {"type": "integer"},
                                               "video_per_minute": {"type": "integer"}}},
    "bounds": {"type": "object", "description": "{field: {min, max}} per rate"},
    "share_pct": {"type": "integer", "description": "the creator's share of what fans pay"}}})

describe("GET", "/api/earnings", {
    "summary": "The caller's earnings: balance, credits in payouts not yet decided, lifetime, payout terms",
    **_CREATOR_ONLY,
    "responses": {"200": json_response({"type": "object", "properties": {
        "balance": {"type": "integer"}, "pending_payout": {"type": "integer"},
        "paid_out": {"type": "integer"},
        "lifetime": {"type": "integer", "description": "balance + pending_payout + paid_out"},
        "share_pct": {"type": "integer"},
        "payout": {"type": "object", "properties": {
            "currency": {"type": "string"}, "rates": {"type": "object", "description": "major units per credit"},
            "min_credits": {"type": "integer"}, "balance_value": {"type": "object"},
            "provider": {"type": ["string", "null"]}, "stripe_account": {"type": ["string", "null"]}}}}}),
        **error_responses(401, 403)}})
describe("GET", "/api/earnings/ledger", {
    "summary": "The caller's earnings entries, newest first", **_CREATOR_ONLY,
    "parameters": [
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50}},
        {"name": "before", "in": "query", "schema": {"type": "string"}, "description": "`next` of the previous page"}],
    "responses": {"200": json_response({"type": "object", "properties": {
        "entries": {"type": "array", "items": _EARNING}, "next": {"type": ["string", "null"]}}}),
        **error_responses(400, 401, 403)}})
describe("GET", "/api/creator/rates", {
    "summary": "The caller's rates in force and the operator's bounds", **_CREATOR_ONLY,
    "responses": {"200": json_response(_RATES), **error_responses(401, 403)}})
describe("PUT", "/api/creator/rates", {
    "summary": "Set some of the caller's rates (from the next message / call)", **_CREATOR_ONLY,
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "minProperties": 1, "additionalProperties": False, "properties": {
            "message": {"type": "integer"}, "audio_per_minute": {"type": "integer"},
            "video_per_minute": {"type": "integer"}}}}}},
    "responses": {"200": json_response(_RATES), **error_responses(400, 401, 403)}})
describe("PUT", "/api/creator/payout-account", {
    "summary": "The Stripe connected account payouts are sent to", **_CREATOR_ONLY,
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["stripe_account"], "properties": {
            "stripe_account": {"type": "string", "pattern": "^acct_[A-Za-z0-9]{6,64}$"}}}}}},
    "responses": {"200": json_response({"type": "object", "properties": {"stripe_account": {"type": "string"}}}),
                  **error_responses(400, 401, 403)}})
