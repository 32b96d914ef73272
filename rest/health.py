"""Liveness, readiness and metrics (behind `PAIRLY_METRICS_TOKEN` when set)."""

from __future__ import annotations

import asyncio
import hmac

from aiohttp import web
from pymongo import AsyncMongoClient

from server.auth import token_from
from server.core import Core
from server.errormap import error_body
from server.metrics import CONTENT_TYPE
from server.store import ping


def health_routes(core: Core, mongo: AsyncMongoClient[dict[str, object]]) -> list[web.RouteDef]:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "node": core.settings.node_id})

    async def readyz(_: web.Request) -> web.Response:
        problems: list[str] = []
        mongo_problem = await ping(mongo)
        if mongo_problem:
            problems.append(mongo_problem)
        if core.redis is not None:
            try:
                await asyncio.wait_for(core.redis.ping(), timeout=1.0)
            except Exception as exc:
                problems.append(f"redis: {type(exc).__name__}")
        if problems:
            return web.json_response({"status": "unavailable", "problems": problems}, status=503)
        return web.json_response({"status": "ready"})

    metrics_token = core.settings.metrics_token

    async def metrics(request: web.Request) -> web.Response:
        if metrics_token is not None:
            given = token_from(None, request.headers)
            if given is None or not hmac.compare_digest(given.encode(), metrics_token.encode()):
                code = "auth_missing" if given is None else "auth_invalid"
                return web.json_response(
                    {"error": error_body(code, "send Authorization: Bearer <PAIRLY_METRICS_TOKEN>")},
                    status=401,
                    headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
                )
        body = core.metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    return [web.get("/healthz", healthz), web.get("/readyz", readyz), web.get("/metrics", metrics)]
