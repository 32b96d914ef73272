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


class ProviderError(BillingError):
    """A payment provider failed or refused our request (network, 5xx, bad credentials, ...).

    Raised by the provider adapters in place of SDK exceptions; details go to the logs, not clients.
    """

    code = "unavailable"
    http_status = 502
    default_message = "the payment provider is unavailable; try again"


class SignatureInvalid(BillingError):
    """A webhook or payment signature is missing, forged or outside its time tolerance."""

    code = "invalid_payload"
    http_status = 400
    default_message = "signature verification failed"


class PaymentMismatch(BillingError):
    """A provider reports a payment whose amount or currency differs from the purchase's."""

    code = "invalid_payload"
    http_status = 400
    default_message = "the payment's amount or currency does not match the purchase"
