"""Request id, access log and error mapping for every HTTP request."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from server.errormap import http_error, http_status_error
from server.metrics import Metrics

log = structlog.get_logger("access")
REQUEST_ID = web.RequestKey("request_id", str)


def make_middleware(metrics: Metrics) -> web.middleware:  # type: ignore[valid-type]
    @web.middleware
    def middleware(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
        if request.path.startswith("/socket.io"):
            # Socket.IO has its own logging and error handling. Handed on, not awaited here: a WebSocket
            # lives inside this call for hours and an awaiting middleware's frame with it (docs/memory.md).
            return handler(request)
        return logged(request, handler)

    async def logged(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
        request[REQUEST_ID] = request_id  # the admin audit log records it
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status >= 400 and exc.content_type != "application/json":
                response = http_status_error(exc.status, _code_for(exc.status), exc.reason)
            else:
                response = exc
        except Exception as exc:
            response = http_error(exc)
        response.headers["X-Request-Id"] = request_id
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
        metrics.http_requests.labels(request.method, route, str(response.status)).inc()
        log.info(
            "http",
            method=request.method,
            path=request.path,
            status=response.status,
            ms=round((time.perf_counter() - started) * 1000, 2),
        )
        structlog.contextvars.unbind_contextvars("request_id")
        return response

    return middleware


def _code_for(status: int) -> str:
    return {
        400: "invalid_payload",
        401: "auth_invalid",
        403: "forbidden",
        404: "not_found",
        405: "invalid_payload",
        409: "conflict",
        413: "too_large",
        429: "rate_limited",
        503: "unavailable",
    }.get(status, "internal")
