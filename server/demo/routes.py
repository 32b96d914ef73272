"""`/demo/`: the static demo client (no build step), and `POST /api/dev/token`, which mints a dev token
for a chosen user name so the page can sign in without an identity service.

Both exist only with `PAIRLY_DEMO` on — the default in dev mode; production refuses to start with it
(anyone could mint a token for anyone). The tokens are minted exactly as `python -m server token` does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from config.errors import Forbidden, InvalidPayload, NotFound
from config.settings import ConfigError, Settings
from rest.openapi import Doc, describe, schema
from rest.schema import body as read_body
from server.auth import mint_dev_token

STATIC = (Path(__file__).parent / "static").resolve()
USER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MAX_NAME = 64
# The page is a reference client that changes with the server: never let a browser keep a stale copy.
NO_CACHE = {"Cache-Control": "no-cache"}


_ERROR = {"$ref": "#/components/schemas/Error"}


def _answer(body: Doc, description: str) -> Doc:
    return {"description": description, "content": {"application/json": {"schema": body}}}


def _static(summary: str) -> Doc:
    return {"summary": summary, "security": [], "x-only-when": "PAIRLY_DEMO (dev mode)",
            "responses": {"200": {"description": "the file"}, "404": _answer(_ERROR, "no such file")}}


describe("POST", "/api/dev/token", {
    "summary": "Mint a dev token for any user name (the demo's sign-in); only with PAIRLY_DEMO, never in production",
    "security": [], "x-only-when": "PAIRLY_DEMO (dev mode)",
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["user"], "properties": {
            "user": {"type": "string", "pattern": USER_RE.pattern, "maxLength": 64},
            "name": {"type": "string", "maxLength": MAX_NAME}}}}}},
    "responses": {
        "200": _answer(schema("DevToken", {"type": "object", "properties": {
            "token": {"type": "string"}, "user": {"type": "string"}, "expires_in": {"type": "integer"}}}), "OK"),
        "400": _answer(_ERROR, "bad user name or display name"),
        "403": _answer(_ERROR, "no HS secret to sign with (RS256 public key configured): paste a token instead"),
    }})
describe("GET", "/demo", {"summary": "Redirect to /demo/", "security": [], "x-only-when": "PAIRLY_DEMO (dev mode)",
                          "responses": {"302": {"description": "to /demo/"}}})
describe("GET", "/demo/", _static("The browser demo client (docs/demo.md)"))
describe("GET", "/demo/{path}", _static("The demo's scripts, styles and vendored Socket.IO bundles"))


@dataclass(frozen=True)
class DemoConfig:
    enabled: bool
    token_ttl_s: int

    @classmethod
    def from_settings(cls, settings: Settings) -> DemoConfig:
        env = settings.env()
        enabled = env.flag("PAIRLY_DEMO", not settings.is_production)
        if enabled and settings.is_production:
            raise ConfigError("PAIRLY_DEMO", "the demo page and its dev token route are refused in production")
        # 12 hours, or less when tokens may not live that long.
        ttl = env.integer("PAIRLY_DEMO_TOKEN_TTL_S", int(min(12 * 3600, settings.jwt.max_ttl_s)), min_value=60)
        if ttl > settings.jwt.max_ttl_s:
            raise ConfigError("PAIRLY_DEMO_TOKEN_TTL_S", "must not exceed PAIRLY_JWT_MAX_TTL_S")
        return cls(enabled=enabled, token_ttl_s=ttl)


def demo_routes(settings: Settings, config: DemoConfig) -> list[web.RouteDef]:
    async def to_index(_: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/demo/"})

    async def index(_: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html", headers=NO_CACHE)

    async def asset(request: web.Request) -> web.FileResponse:
        target = (STATIC / request.match_info["path"]).resolve()
        if not target.is_relative_to(STATIC) or not target.is_file():
            raise NotFound("no such file in the demo client")
        return web.FileResponse(target, headers=NO_CACHE)

    async def dev_token(request: web.Request) -> web.Response:
        body = await read_body(request)
        user, name = body.get("user"), body.get("name")
        if not isinstance(user, str) or not USER_RE.fullmatch(user):
            raise InvalidPayload("user must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")
        if name is not None and (not isinstance(name, str) or len(name) > MAX_NAME):
            raise InvalidPayload(f"name must be a string of at most {MAX_NAME} characters")
        try:
            token = mint_dev_token(settings.jwt, user, name=(name or "").strip() or None, ttl_s=config.token_ttl_s)
        except ValueError as exc:
            raise Forbidden(f"{exc}; paste a token instead") from None
        return web.json_response({"token": token, "user": user, "expires_in": config.token_ttl_s})

    return [
        web.get("/demo", to_index),
        web.get("/demo/", index),
        web.get("/demo/{path:.+}", asset),
        web.post("/api/dev/token", dev_token),
    ]
