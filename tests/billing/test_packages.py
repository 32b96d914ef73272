"""The credit catalogue and payment configuration: defaults, parsing, start-up validation."""

from __future__ import annotations

import json

import pytest

from billing.packages import Catalogue, Price, parse_packages
from billing.pricing import Pricing
from billing.providers import providers_from_env
from config.errors import InvalidPayload
from config.settings import ConfigError, Env
from server.app import create_app
from tests.support.apps import make_settings


def test_default_catalogue_is_the_products() -> None:
    catalogue = Pricing.from_env(Env({})).packages
    table = [(p.id, p.name, p.credits, p.price("inr"), p.price("usd")) for p in catalogue]
    assert table == [
        ("small", "Small", 50, Price("inr", 5000), Price("usd", 60)),
        ("medium", "Medium", 120, Price("inr", 10000), Price("usd", 120)),
        ("large", "Large", 300, Price("inr", 20000), Price("usd", 240)),
        ("xlarge", "X-Large", 600, Price("inr", 35000), Price("usd", 420)),
    ]
    assert [Price("inr", 35000).display(), Price("usd", 420).display(), Price("jpy", 500).display(),
            Price("chf", 1234).display()] == ["₹350.00", "$4.20", "JPY 500", "CHF 12.34"]
    with pytest.raises(InvalidPayload):
        catalogue.get("nope")


def test_custom_catalogue() -> None:
    raw = json.dumps([{"id": "a", "credits": 5, "prices": {"USD": 99}}, {"id": "b", "name": "B", "credits": 9,
                                                                         "prices": {"inr": 900}}])
    packages = parse_packages(raw)
    assert [(p.id, p.name, p.credits, p.prices) for p in packages] == [
        ("a", "a", 5, (Price("usd", 99),)), ("b", "B", 9, (Price("inr", 900),))]


@pytest.mark.parametrize("raw", [
    "not json", "[]", "{}", '[{"id": "a", "credits": 5}]', '[{"id": "A B", "credits": 5, "prices": {"usd": 1}}]',
    '[{"id": "a", "credits": 0, "prices": {"usd": 1}}]', '[{"id": "a", "credits": 5, "prices": {"usd": 1.5}}]',
    '[{"id": "a", "credits": 5, "prices": {"dollars": 1}}]', '[{"id": "a", "credits": true, "prices": {"usd": 1}}]',
    '[{"id": "a", "credits": 5, "prices": {"usd": 1}}, {"id": "a", "credits": 6, "prices": {"usd": 2}}]',
])
def test_bad_catalogues_name_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError) as err:
        Pricing.from_env(Env({"PAIRLY_CREDIT_PACKAGES": raw}))
    assert err.value.var == "PAIRLY_CREDIT_PACKAGES"


STRIPE = {"PAIRLY_STRIPE_SECRET_KEY": "sk_test_x", "PAIRLY_STRIPE_WEBHOOK_SECRET": "whsec_x"}
RAZORPAY = {"PAIRLY_RAZORPAY_KEY_ID": "rzp_test_x", "PAIRLY_RAZORPAY_KEY_SECRET": "s",
            "PAIRLY_RAZORPAY_WEBHOOK_SECRET": "w"}


@pytest.mark.parametrize(("env", "var"), [
    ({"PAIRLY_STRIPE_SECRET_KEY": "sk_test_x"}, "PAIRLY_STRIPE_WEBHOOK_SECRET"),
    ({**STRIPE, "PAIRLY_STRIPE_SECRET_KEY": "pk_test_x"}, "PAIRLY_STRIPE_SECRET_KEY"),
    ({**STRIPE, "PAIRLY_STRIPE_WEBHOOK_SECRET": "nope"}, "PAIRLY_STRIPE_WEBHOOK_SECRET"),
    ({**STRIPE, "PAIRLY_STRIPE_PUBLISHABLE_KEY": "sk_x"}, "PAIRLY_STRIPE_PUBLISHABLE_KEY"),
    ({**STRIPE, "PAIRLY_STRIPE_API_BASE": "ftp://x"}, "PAIRLY_STRIPE_API_BASE"),
    ({**STRIPE, "PAIRLY_STRIPE_CURRENCY": "eur"}, "PAIRLY_STRIPE_CURRENCY"),  # no package priced in EUR
    ({"PAIRLY_STRIPE_WEBHOOK_SECRET": "whsec_x"}, "PAIRLY_STRIPE_WEBHOOK_SECRET"),
    ({"PAIRLY_RAZORPAY_KEY_ID": "rzp_test_x"}, "PAIRLY_RAZORPAY_KEY_SECRET"),
    ({"PAIRLY_RAZORPAY_KEY_SECRET": "s"}, "PAIRLY_RAZORPAY_KEY_ID"),
    ({**RAZORPAY, "PAIRLY_RAZORPAY_KEY_ID": "key"}, "PAIRLY_RAZORPAY_KEY_ID"),
    ({**RAZORPAY, "PAIRLY_RAZORPAY_WEBHOOK_SECRET": ""}, "PAIRLY_RAZORPAY_WEBHOOK_SECRET"),
    ({"PAIRLY_DEV_PAYMENTS": "maybe"}, "PAIRLY_DEV_PAYMENTS"),
    ({"PAIRLY_PAYMENT_TIMEOUT_S": "0"}, "PAIRLY_PAYMENT_TIMEOUT_S"),
])
def test_bad_provider_settings_name_the_variable(env: dict[str, str], var: str) -> None:
    with pytest.raises(ConfigError) as err:
        providers_from_env(Env(env), production=False, catalogue=Catalogue())
    assert err.value.var == var


def test_which_providers_are_offered() -> None:
    def offered(env: dict[str, str], production: bool = False) -> list[str]:
        return list(providers_from_env(Env(env), production=production, catalogue=Catalogue()))

    assert offered({}) == ["dev"]
    assert offered({**STRIPE, **RAZORPAY}) == ["stripe", "razorpay", "dev"]
    assert offered({**STRIPE, "PAIRLY_DEV_PAYMENTS": "false"}) == ["stripe"]
    assert offered({**STRIPE, **RAZORPAY, "PAIRLY_STRIPE_API_BASE": "https://api.stripe.com"}, True) == [
        "stripe", "razorpay"]
    with pytest.raises(ConfigError, match="https"):
        offered({**STRIPE, "PAIRLY_STRIPE_API_BASE": "http://127.0.0.1:1"}, production=True)


def test_start_up_fails_naming_the_variable(base_env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="PAIRLY_STRIPE_WEBHOOK_SECRET"):
        create_app(make_settings({**base_env, "PAIRLY_STRIPE_SECRET_KEY": "sk_test_x"}))
    with pytest.raises(ConfigError, match="PAIRLY_CREDIT_PACKAGES"):
        create_app(make_settings({**base_env, "PAIRLY_CREDIT_PACKAGES": "[1]"}))
    with pytest.raises(ConfigError, match="PAIRLY_PRICE_MESSAGE"):
        create_app(make_settings({**base_env, "PAIRLY_PRICE_MESSAGE": "-1"}))
