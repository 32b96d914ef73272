"""The root of every domain error. Each carries a protocol `code` (PROTOCOL.md) and a message.

Packages subclass these (`billing.errors.InsufficientCredits(AppError)` etc.). They are translated
to Socket.IO ack payloads and HTTP responses in exactly one place: `server/errormap.py`. This lives in
`config/` because `config` is the one package every other imports and that imports none of them.
"""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    code = "internal"
    http_status = 500
    default_message = "internal error"

    def __init__(self, message: str | None = None, **details: Any) -> None:
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        self.details = details


class InvalidPayload(AppError):
    code = "invalid_payload"
    http_status = 400
    default_message = "invalid payload"


class TooLarge(AppError):
    code = "too_large"
    http_status = 413
    default_message = "payload too large"


class RateLimited(AppError):
    code = "rate_limited"
    http_status = 429
    default_message = "too many requests"

    def __init__(self, message: str | None = None, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message, retry_after_s=retry_after_s)
        self.retry_after_s = retry_after_s


class Blocked(AppError):
    code = "blocked"
    http_status = 403
    default_message = "blocked"


class NotFound(AppError):
    code = "not_found"
    http_status = 404
    default_message = "not found"


class Forbidden(AppError):
    code = "forbidden"
    http_status = 403
    default_message = "forbidden"


class Unauthorized(AppError):
    code = "auth_invalid"
    http_status = 401
    default_message = "authentication required"


class Conflict(AppError):
    code = "conflict"
    http_status = 409
    default_message = "conflict"


class Busy(AppError):
    code = "busy"
    http_status = 409
    default_message = "busy"


class Unavailable(AppError):
    code = "unavailable"
    http_status = 503
    default_message = "temporarily unavailable"
