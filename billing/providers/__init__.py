"""Payment provider adapters (Stripe, Razorpay, dev) and their configuration from the environment.

A provider is offered when its keys are set; `dev` is offered in dev mode unless
PAIRLY_DEV_PAYMENTS=false, and refused in production mode. Every problem raises ConfigError naming
the variable, at start-up.
"""

from __future__ import annotations

import re

from billing.packages import Catalogue
from billing.providers.base import (
    Checkout,
    PaymentProvider,
    PaymentRequest,
    PayoutProvider,
    TransferRequest,
    WebhookEvent,
)
from billing.providers.dev import DevPayoutProvider, DevProvider
from billing.providers.razorpay import RazorpayProvider
from billing.providers.stripe import StripeProvider
from config.settings import ConfigError, Env

__all__ = ["Checkout", "DevPayoutProvider", "DevProvider", "PaymentProvider", "PaymentRequest", "PayoutProvider",
           "RazorpayProvider", "StripeProvider", "TransferRequest", "WebhookEvent", "providers_from_env"]

_CURRENCY_RE = re.compile(r"^[A-Za-z]{3}$")


def providers_from_env(env: Env, *, production: bool, catalogue: Catalogue) -> dict[str, PaymentProvider]:
    timeout_s = env.number("PAIRLY_PAYMENT_TIMEOUT_S", 10.0, min_value=0.5)
    providers: dict[str, PaymentProvider] = {}

    stripe_key = env.text("PAIRLY_STRIPE_SECRET_KEY")
    if stripe_key is not None:
        if not stripe_key.startswith(("sk_", "rk_")):
            raise ConfigError("PAIRLY_STRIPE_SECRET_KEY", "must be a Stripe secret key (sk_... or rk_...)")
        webhook_secret = env.text("PAIRLY_STRIPE_WEBHOOK_SECRET")
        if webhook_secret is None:
            raise ConfigError("PAIRLY_STRIPE_WEBHOOK_SECRET",
                              "is required with PAIRLY_STRIPE_SECRET_KEY (credits are granted by webhooks)")
        if not webhook_secret.startswith("whsec_"):
            raise ConfigError("PAIRLY_STRIPE_WEBHOOK_SECRET", "must be a webhook signing secret (whsec_...)")
        publishable = env.text("PAIRLY_STRIPE_PUBLISHABLE_KEY")
        if publishable is not None and not publishable.startswith("pk_"):
            raise ConfigError("PAIRLY_STRIPE_PUBLISHABLE_KEY", "must be a publishable key (pk_...)")
        providers["stripe"] = StripeProvider(
            stripe_key,
            webhook_secret,
            publishable_key=publishable,
            api_base=_api_base(env, "PAIRLY_STRIPE_API_BASE", "https://api.stripe.com", production),
            currency=_currency(env, "PAIRLY_STRIPE_CURRENCY", "usd", catalogue),
            timeout_s=timeout_s,
        )
    else:
        _unused(env, "PAIRLY_STRIPE_SECRET_KEY", "PAIRLY_STRIPE_WEBHOOK_SECRET", "PAIRLY_STRIPE_PUBLISHABLE_KEY")

    key_id, key_secret = env.text("PAIRLY_RAZORPAY_KEY_ID"), env.text("PAIRLY_RAZORPAY_KEY_SECRET")
    if key_id is not None or key_secret is not None:
        if key_id is None:
            raise ConfigError("PAIRLY_RAZORPAY_KEY_ID", "is required with PAIRLY_RAZORPAY_KEY_SECRET")
        if key_secret is None:
            raise ConfigError("PAIRLY_RAZORPAY_KEY_SECRET", "is required with PAIRLY_RAZORPAY_KEY_ID")
        if not key_id.startswith("rzp_"):
            raise ConfigError("PAIRLY_RAZORPAY_KEY_ID", "must be a Razorpay key id (rzp_test_... or rzp_live_...)")
        webhook_secret = env.text("PAIRLY_RAZORPAY_WEBHOOK_SECRET")
        if webhook_secret is None:
            raise ConfigError("PAIRLY_RAZORPAY_WEBHOOK_SECRET",
                              "is required with PAIRLY_RAZORPAY_KEY_ID (refunds and late payments arrive by webhook)")
        providers["razorpay"] = RazorpayProvider(
            key_id,
            key_secret,
            webhook_secret,
            api_base=_api_base(env, "PAIRLY_RAZORPAY_API_BASE", "https://api.razorpay.com", production),
            currency=_currency(env, "PAIRLY_RAZORPAY_CURRENCY", "inr", catalogue),
            timeout_s=timeout_s,
        )
    else:
        _unused(env, "PAIRLY_RAZORPAY_KEY_ID", "PAIRLY_RAZORPAY_WEBHOOK_SECRET")

    dev = env.flag("PAIRLY_DEV_PAYMENTS", not production)
    if dev and production:
        raise ConfigError("PAIRLY_DEV_PAYMENTS", "the dev payment provider is refused in production mode")
    if dev:
        first = next(iter(catalogue)).prices[0].currency
        providers["dev"] = DevProvider(default_currency="usd" if _priced(catalogue, "usd") else first)
    return providers


def _api_base(env: Env, var: str, default: str, production: bool) -> str:
    value = env.text(var, default) or default
    if not value.startswith(("https://", "http://")):
        raise ConfigError(var, f"must be an http(s) URL, got {value!r}")
    if production and not value.startswith("https://"):
        raise ConfigError(var, "must be https in production")
    return value.rstrip("/")


def _currency(env: Env, var: str, default: str, catalogue: Catalogue) -> str:
    value = (env.text(var, default) or default).lower()
    if not _CURRENCY_RE.match(value):
        raise ConfigError(var, f"must be an ISO 4217 currency code, got {value!r}")
    if not _priced(catalogue, value):
        raise ConfigError(var, f"every credit package needs a price in {value} (see PAIRLY_CREDIT_PACKAGES)")
    return value


def _priced(catalogue: Catalogue, currency: str) -> bool:
    return all(p.price(currency) is not None for p in catalogue)


def _unused(env: Env, owner: str, *dependents: str) -> None:
    for var in dependents:
        if var != owner and env.text(var) is not None:
            raise ConfigError(var, f"is set but {owner} is not")
