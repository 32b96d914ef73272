"""The one place where errors become wire payloads: Socket.IO acks and REST responses.

Domain errors carry a protocol code and a client-safe message. Anything else is logged with its
traceback and answered as `internal` without details.
"""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web
from pymongo.errors import ConnectionFailure
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from config.errors import AppError, RateLimited, Unavailable

log = structlog.get_logger(__name__)


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    body.update(extra)
    return body


def _extra(exc: AppError) -> dict[str, Any]:
    if isinstance(exc, RateLimited):
        return {"retry_after_ms": int(exc.retry_after_s * 1000) + 1}
    return {}


# A store or Redis that cannot be reached is the client's `unavailable` (retry later), never `internal`.
OUTAGES = (ConnectionFailure, RedisConnectionError, RedisTimeoutError)


def as_app_error(exc: BaseException) -> BaseException:
    if isinstance(exc, OUTAGES):
        log.warning("backend_unavailable", error=type(exc).__name__, detail=str(exc)[:200])
        return Unavailable("a backing service is unavailable; retry shortly")
    return exc


def ack_error(exc: BaseException) -> dict[str, Any]:
    """`{"ok": false, "error": {...}}` for an exception raised by a socket handler."""
    exc = as_app_error(exc)
    if isinstance(exc, AppError):
        return {"ok": False, "error": error_body(exc.code, exc.message, **_extra(exc))}
    log.error("handler_failed", exc_info=exc)
    return {"ok": False, "error": error_body("internal", "internal error")}


def http_error(exc: BaseException) -> web.Response:
    """`{"error": {...}}` with the matching HTTP status."""
    exc = as_app_error(exc)
    if isinstance(exc, AppError):
        headers = {}
        if isinstance(exc, RateLimited):
            headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
        return web.json_response(
            {"error": error_body(exc.code, exc.message, **_extra(exc))}, status=exc.http_status, headers=headers
        )
    log.error("request_failed", exc_info=exc)
    return web.json_response({"error": error_body("internal", "internal error")}, status=500)


def http_status_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": error_body(code, message)}, status=status)


def refusal_data(code: str, message: str) -> dict[str, str]:
    """The `connect_error` data PROTOCOL.md defines."""
    return {"code": code, "message": message}
