"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio

from aiohttp import web
from pymongo import AsyncMongoClient

from server.core import Core
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

    async def metrics(_: web.Request) -> web.Response:
        body = core.metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    return [web.get("/healthz", healthz), web.get("/readyz", readyz), web.get("/metrics", metrics)]
