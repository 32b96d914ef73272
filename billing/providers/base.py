"""What every payment provider adapter offers. SDK types and errors never cross this boundary."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from billing.errors import SignatureInvalid


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    """Ask the provider to take `amount` (minor units of `currency`) for one purchase."""

    purchase_id: str
    user: str
    package_id: str
    credits: int
    amount: int
    currency: str


@dataclass(frozen=True, slots=True)
class Checkout:
    """The provider's payment object for a purchase, and what the app needs to complete it."""

    ref: str
    """The provider's id for the payment attempt: PaymentIntent id, order id, or the purchase id (dev)."""
    client: dict[str, Any] = field(default_factory=dict)
    """Returned to the app: client secret / order id and key id / nothing for dev."""


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A webhook whose signature has been verified."""

    provider: str
    id: str
    type: str
    body: str
    """The raw body, as signed (stored for replays and audits)."""
    data: dict[str, Any]


class PaymentProvider(Protocol):
    name: str
    default_currency: str
    completes_immediately: bool
    """True for the dev provider: the purchase is paid as soon as it is created."""

    async def create_payment(self, request: PaymentRequest) -> Checkout: ...

    def verify_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent: ...

    def public(self) -> dict[str, Any]:
        """Non-secret facts the apps need (publishable key, key id, currency)."""
        ...

    async def close(self) -> None: ...


def decode_body(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise SignatureInvalid("body is not UTF-8") from None


@dataclass(frozen=True, slots=True)
class TransferRequest:
    """Send `amount` (minor units of `currency`) to a creator for one approved payout."""

    payout_id: str
    user: str
    credits: int
    amount: int
    currency: str
    destination: str | None
    """The creator's account at the provider (Stripe: a connected account `acct_...`); None for dev."""


class PayoutProvider(Protocol):
    name: str
    needs_destination: bool
    """True when creators must register an account at the provider before requesting a payout."""

    async def send_transfer(self, request: TransferRequest) -> str:
        """Move the money; returns the provider's transfer id. Idempotent per payout id."""
        ...

    async def find_transfer(self, payout_id: str) -> str | None:
        """The provider's transfer for a payout, if one was made (an earlier attempt may have sent
        the money and failed to answer)."""
        ...
