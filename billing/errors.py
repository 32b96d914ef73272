"""Billing errors (AppError → BillingError → ...)."""

from __future__ import annotations

from config.errors import AppError, Conflict


class BillingError(AppError):
    code = "internal"
    http_status = 500
    default_message = "billing error"


class InsufficientCredits(BillingError):
    code = "insufficient_credits"
    http_status = 402
    default_message = "not enough credits"


class OperationInFlight(Conflict):
    """The same idempotency key is being applied right now by another request or node."""

    default_message = "the same operation is already in progress; retry"
