"""Purchases with the dev provider (the embedded default), the catalogue, and bad input."""

from __future__ import annotations

import asyncio

import pytest

from config.settings import ConfigError
from server.app import LEDGER, create_app
from tests.billing.api import Api
from tests.support.apps import RunningApp, make_settings, running_app


async def test_packages_list_the_catalogue_and_only_dev_without_keys(app_server: RunningApp) -> None:
    status, body = await Api(app_server, "pur-ann").get("/api/credits/packages", auth=False)
    assert status == 200  # no token needed: apps show prices before sign-in
    assert [(p["id"], p["credits"]) for p in body["packages"]] == [
        ("small", 50), ("medium", 120), ("large", 300), ("xlarge", 600)]
    small = body["packages"][0]["prices"]
    assert small == [{"currency": "inr", "amount": 5000, "display": "₹50.00"},
                     {"currency": "usd", "amount": 60, "display": "$0.60"}]
    assert [p["amount"] for p in body["packages"][3]["prices"]] == [35000, 420]
    assert [p["id"] for p in body["providers"]] == ["dev"]
    assert body["pricing"] == {"message": 1, "audio_per_minute": 5, "video_per_minute": 10, "signup_bonus": 10}


async def test_dev_purchase_completes_at_once_and_grants_once(app_server: RunningApp) -> None:
    api = Api(app_server, "pur-bo")
    status, body = await api.buy("small", key="key-bo-0001")
    assert status == 201, body
    assert body["status"] == "succeeded" and body["balance"] == 60
    assert (body["credits"], body["amount"], body["currency"], body["provider"]) == (50, 60, "usd", "dev")
    assert [h["status"] for h in body["history"]] == ["created", "pending", "succeeded"]
    again_status, again = await api.buy("small", key="key-bo-0001")
    assert again_status == 200 and again["purchase_id"] == body["purchase_id"] and again["balance"] == 60
    status, ledger = await api.get("/api/wallet/ledger")
    assert [(e["kind"], e["delta"], e["id"]) for e in ledger["entries"]] == [
        ("purchase", 50, f"dev:{body['purchase_id']}"), ("signup_bonus", 10, "signup:pur-bo")]
    status, fetched = await api.get(f"/api/purchases/{body['purchase_id']}")
    assert status == 200 and fetched["status"] == "succeeded"
    status, listing = await api.get("/api/purchases")
    assert [p["id"] for p in listing["purchases"]] == [body["purchase_id"]]


async def test_inr_purchase(app_server: RunningApp) -> None:
    status, body = await Api(app_server, "pur-inr").buy("xlarge", currency="INR")
    assert status == 201 and (body["amount"], body["currency"], body["balance"]) == (35000, "inr", 610)


async def test_concurrent_requests_with_one_key_make_one_purchase(app_server: RunningApp) -> None:
    api = Api(app_server, "pur-cy")
    results = await asyncio.gather(*(api.buy("large", key="key-cy-0001") for _ in range(10)))
    assert {r[0] for r in results} <= {200, 201}
    assert sum(r[0] == 201 for r in results) == 1
    assert len({r[1]["purchase_id"] for r in results}) == 1
    assert await api.balance() == 310


async def test_a_key_reused_for_another_purchase_is_a_conflict(app_server: RunningApp) -> None:
    api = Api(app_server, "pur-di")
    assert (await api.buy("small", key="key-di-0001"))[0] == 201
    status, body = await api.buy("large", key="key-di-0001")
    assert status == 409 and body["error"]["code"] == "conflict"
    assert await api.balance() == 60


@pytest.mark.parametrize("body", [
    {"package_id": "huge", "provider": "dev", "idempotency_key": "key-00000001"},
    {"package_id": "small", "provider": "paypal", "idempotency_key": "key-00000002"},
    {"package_id": "small", "provider": "stripe", "idempotency_key": "key-00000003"},  # not configured
    {"package_id": "small", "provider": "dev"},
    {"package_id": "small", "provider": "dev", "idempotency_key": "short"},
    {"package_id": "small", "provider": "dev", "idempotency_key": 12345678},
    {"package_id": "small", "provider": "dev", "idempotency_key": "key-00000004", "currency": "eur"},
    {"package_id": ["small"], "provider": "dev", "idempotency_key": "key-00000005"},
    [1, 2, 3],
    "just a string",
])
async def test_bad_purchase_requests_are_400_and_grant_nothing(app_server: RunningApp, body: object) -> None:
    api = Api(app_server, "pur-ed")
    status, answer = await api.post("/api/purchases", body)
    assert status == 400, answer
    assert answer["error"]["code"] == "invalid_payload" and answer["error"]["message"]
    assert await api.balance() == 10


async def test_malformed_json_is_400(app_server: RunningApp) -> None:
    api = Api(app_server, "pur-fi")
    status, answer = await api.post("/api/purchases", raw=b'{"package_id": "small",')
    assert status == 400 and answer["error"]["code"] == "invalid_payload"
    status, answer = await api.post("/api/purchases", {"package_id": "small"}, auth=False)
    assert status == 401
    status, answer = await api.get("/api/purchases/pur_doesnotexist")
    assert status == 404


async def test_another_users_purchase_is_not_found(app_server: RunningApp) -> None:
    _, body = await Api(app_server, "pur-gu").buy("small")
    status, _ = await Api(app_server, "pur-hy").get(f"/api/purchases/{body['purchase_id']}")
    assert status == 404


async def test_purchases_are_rate_limited(base_env: dict[str, str]) -> None:
    env = {**base_env, "PAIRLY_RATE_LIMITS": "purchase:create=2/60"}
    async with running_app(make_settings(env)) as app:
        api = Api(app, "pur-io")
        assert [(await api.buy())[0] for _ in range(2)] == [201, 201]
        status, body = await api.buy()
        assert status == 429 and body["error"]["code"] == "rate_limited"


async def test_custom_catalogue_and_prices(base_env: dict[str, str]) -> None:
    catalogue = '[{"id": "tiny", "name": "Tiny", "credits": 5, "prices": {"usd": 10}}]'
    env = {**base_env, "PAIRLY_CREDIT_PACKAGES": catalogue, "PAIRLY_SIGNUP_BONUS": "0"}
    async with running_app(make_settings(env)) as app:
        api = Api(app, "pur-ju")
        _, body = await api.get("/api/credits/packages")
        assert [p["id"] for p in body["packages"]] == ["tiny"]
        status, body = await api.buy("tiny")
        assert status == 201 and body["balance"] == 5


async def test_production_mode_refuses_the_dev_provider(base_env: dict[str, str]) -> None:
    prod = {**base_env, "PAIRLY_MODE": "production", "PAIRLY_CORS_ORIGINS": "https://app.example",
            "PAIRLY_METRICS_TOKEN": "scrape-token"}
    with pytest.raises(ConfigError, match="PAIRLY_DEV_PAYMENTS"):
        create_app(make_settings({**prod, "PAIRLY_DEV_PAYMENTS": "true"}))
    async with running_app(make_settings(prod)) as app:
        api = Api(app, "pur-ka")
        _, body = await api.get("/api/credits/packages")
        assert body["providers"] == []
        status, body = await api.buy("small", provider="dev")
        assert status == 400 and "not offered" in body["error"]["message"]
        assert await api.balance() == 10
        assert await app.app[LEDGER].get_entry("signup:pur-ka") is not None
