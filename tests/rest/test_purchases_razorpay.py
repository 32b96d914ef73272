"""Razorpay end to end: the official SDK against a local server speaking Razorpay's API; checkout
signatures and webhook signatures computed with Razorpay's algorithms (HMAC-SHA256)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from server.app import LEDGER, PAYMENTS
from tests.billing.api import Api
from tests.support.apps import RunningApp
from tests.support.fake_razorpay import FakeRazorpay


@pytest.fixture
async def razorpay_api() -> AsyncIterator[FakeRazorpay]:
    fake = FakeRazorpay()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def env(base_env: dict[str, str], razorpay_api: FakeRazorpay) -> dict[str, str]:
    return {**base_env, **razorpay_api.env()}


VERIFY = "/api/purchases/razorpay/verify"


async def _order(app: RunningApp, user: str, package: str = "small") -> tuple[Api, dict[str, Any]]:
    api = Api(app, user)
    status, body = await api.buy(package, provider="razorpay")
    assert status == 201, body
    return api, body


def _verify_body(fake: FakeRazorpay, order_id: str, payment: dict[str, Any], **override: str) -> dict[str, str]:
    body = {"razorpay_order_id": order_id, "razorpay_payment_id": payment["id"],
            "razorpay_signature": fake.checkout_signature(order_id, payment["id"])}
    body.update(override)
    return body


async def test_order_then_verify_grants_once(app_server: RunningApp, razorpay_api: FakeRazorpay, clients) -> None:
    device = await clients(app_server, "rz-ann", namespaces=["/presence"])
    api, body = await _order(app_server, "rz-ann")
    assert body["status"] == "pending"
    assert body["key_id"] == razorpay_api.key_id and body["order_id"].startswith("order_")
    assert (body["amount"], body["currency"]) == (5000, "inr")
    order = razorpay_api.orders[body["order_id"]]
    assert (order["amount"], order["currency"], order["receipt"]) == (5000, "INR", body["purchase_id"])

    payment = razorpay_api.pay(body["order_id"])
    await api.balance()  # opens the wallet: its signup bonus is an update of its own
    update = asyncio.create_task(device.next("/presence", "wallet:updated"))
    status, verified = await api.post(VERIFY, _verify_body(razorpay_api, body["order_id"], payment))
    assert status == 200, verified
    assert verified["status"] == "succeeded" and verified["balance"] == 60
    assert (await update)["delta"] == 50
    # The app retries the call, and the webhooks arrive too: nothing more is granted.
    status, again = await api.post(VERIFY, _verify_body(razorpay_api, body["order_id"], payment))
    assert status == 200 and again["balance"] == 60
    for name in ("payment.captured", "order.paid"):
        status, answer = await razorpay_api.deliver(app_server.url, razorpay_api.event(name, payment=payment))
        assert status == 200 and answer["outcome"] == "payment_recorded"
    assert await api.balance() == 60
    _, entries = await api.get("/api/wallet/ledger?limit=1")
    assert entries["entries"][0]["id"] == f"razorpay:{payment['id']}"


async def test_verify_and_webhooks_racing_grant_once(app_server: RunningApp, razorpay_api: FakeRazorpay) -> None:
    for n in range(3):
        api, body = await _order(app_server, f"rz-race-{n}", "medium")
        payment = razorpay_api.pay(body["order_id"])
        captured = razorpay_api.event("payment.captured", payment=payment)
        paid = razorpay_api.event("order.paid", payment=payment, order=razorpay_api.orders[body["order_id"]])
        verify = _verify_body(razorpay_api, body["order_id"], payment)
        results = await asyncio.gather(
            *(api.post(VERIFY, verify) for _ in range(3)),
            *(razorpay_api.deliver(app_server.url, captured, event_id=f"evt_cap_{n}") for _ in range(3)),
            razorpay_api.deliver(app_server.url, paid),
        )
        assert {r[0] for r in results} == {200}, results
        assert await api.balance() == 130
    assert (await app_server.app[LEDGER].reconcile()).ok


async def test_webhook_first_then_verify(app_server: RunningApp, razorpay_api: FakeRazorpay) -> None:
    api, body = await _order(app_server, "rz-bo")
    payment = razorpay_api.pay(body["order_id"])
    await razorpay_api.deliver(app_server.url, razorpay_api.event("payment.captured", payment=payment))
    assert await api.balance() == 60
    status, verified = await api.post(VERIFY, _verify_body(razorpay_api, body["order_id"], payment))
    assert status == 200 and verified["status"] == "succeeded" and verified["balance"] == 60


async def test_forged_verify_and_someone_elses_order(app_server: RunningApp, razorpay_api: FakeRazorpay) -> None:
    api, body = await _order(app_server, "rz-cy")
    payment = razorpay_api.pay(body["order_id"])
    forged = _verify_body(razorpay_api, body["order_id"], payment,
                          razorpay_signature=razorpay_api.checkout_signature(body["order_id"], payment["id"], "guess"))
    status, answer = await api.post(VERIFY, forged)
    assert status == 400 and answer["error"]["code"] == "invalid_payload"
    # A valid signature for another payment id does not verify this one.
    swapped = _verify_body(razorpay_api, body["order_id"], payment, razorpay_payment_id="pay_other")
    assert (await api.post(VERIFY, swapped))[0] == 400
    weird = _verify_body(razorpay_api, body["order_id"], payment, razorpay_signature="ü" * 64)
    assert (await api.post(VERIFY, weird))[0] == 400
    assert (await api.post(VERIFY, {"razorpay_order_id": body["order_id"]}))[0] == 400
    mallory = Api(app_server, "rz-mallory")
    status, _ = await mallory.post(VERIFY, _verify_body(razorpay_api, body["order_id"], payment))
    assert status == 404
    assert await api.balance() == 10 and await mallory.balance() == 10


async def test_forged_and_duplicate_webhooks(app_server: RunningApp, razorpay_api: FakeRazorpay) -> None:
    api, body = await _order(app_server, "rz-di")
    payment = razorpay_api.pay(body["order_id"])
    event = razorpay_api.event("payment.captured", payment=payment)
    status, answer = await razorpay_api.deliver(app_server.url, event, secret="wrong-secret")
    assert status == 400 and answer["error"]["code"] == "invalid_payload"
    status, _ = await razorpay_api.deliver(app_server.url, event, signature="")
    assert status == 400
    tampered = razorpay_api.event("payment.captured", payment={**payment, "amount": 500000})
    wrong = razorpay_api.checkout_signature("x", "y", razorpay_api.webhook_secret)
    status, _ = await razorpay_api.deliver(app_server.url, tampered, signature=wrong)
    assert status == 400
    assert await api.balance() == 10
    first = await razorpay_api.deliver(app_server.url, event, event_id="evt_dup_1")
    replay = await razorpay_api.deliver(app_server.url, event, event_id="evt_dup_1")
    assert first == (200, {"received": True, "outcome": "payment_recorded"})
    assert replay == (200, {"received": True, "duplicate": True, "outcome": "payment_recorded"})
    assert await api.balance() == 60


async def test_amount_mismatch_is_refused(app_server: RunningApp, razorpay_api: FakeRazorpay) -> None:
    api, body = await _order(app_server, "rz-ed")
    payment = razorpay_api.pay(body["order_id"], amount=100)
    status, answer = await razorpay_api.deliver(app_server.url, razorpay_api.event("payment.captured", payment=payment))
    assert status == 400 and "does not match" in answer["error"]["message"]
    usd = razorpay_api.pay(body["order_id"], currency="USD")
    status, _ = await razorpay_api.deliver(app_server.url, razorpay_api.event("payment.captured", payment=usd))
    assert status == 400
    assert await api.balance() == 10


async def test_refunds_and_disputes(app_server: RunningApp, razorpay_api: FakeRazorpay) -> None:
    api, body = await _order(app_server, "rz-fi", "large")  # 300 credits for ₹200
    payment = razorpay_api.pay(body["order_id"])
    # Out of order: the refund's webhook arrives before the capture's (and before any verify).
    refund = razorpay_api.refund(payment, 5000)
    await razorpay_api.deliver(app_server.url, razorpay_api.event("refund.processed", refund=refund, payment=payment))
    assert await api.balance() == 10
    await razorpay_api.deliver(app_server.url, razorpay_api.event("payment.captured", payment=payment))
    assert await api.balance() == 10 + 300 - 75
    failed = razorpay_api.refund(payment, 5000, status="failed")
    await razorpay_api.deliver(app_server.url, razorpay_api.event("refund.failed", refund=failed, payment=payment))
    assert await api.balance() == 10 + 300 - 75
    dispute = razorpay_api.dispute(payment)
    await razorpay_api.deliver(app_server.url, razorpay_api.event("payment.dispute.created", dispute=dispute,
                                                                  payment=payment))
    assert await api.balance() == 10  # the rest of the purchase is taken back
    _, fetched = await api.get(f"/api/purchases/{body['purchase_id']}")
    assert fetched["status"] == "disputed"
    lost = {**dispute, "status": "lost"}
    lost_event = razorpay_api.event("payment.dispute.lost", dispute=lost, payment=payment)
    await razorpay_api.deliver(app_server.url, lost_event)
    assert await api.balance() == 10
    status, _ = await razorpay_api.deliver(app_server.url, razorpay_api.event(
        "refund.processed", refund=razorpay_api.refund({**payment, "id": "pay_unknown"}, 100),
        payment={**payment, "id": "pay_unknown", "order_id": "order_unknown"}))
    assert status == 200
    assert (await app_server.app[LEDGER].reconcile()).ok


async def test_provider_errors_become_502(app_server: RunningApp, razorpay_api: FakeRazorpay) -> None:
    api = Api(app_server, "rz-gu")
    razorpay_api.fail_with = 500
    status, body = await api.buy("small", provider="razorpay", key="rz-gu-key-1")
    assert status == 502 and body["error"]["code"] == "unavailable"
    razorpay_api.fail_with = None
    status, body = await api.buy("small", provider="razorpay", key="rz-gu-key-1")
    assert status == 200 and body["order_id"]
    assert len(razorpay_api.orders) == 1


async def test_slow_processing_is_answered_in_time_and_finishes(app_server: RunningApp,
                                                                razorpay_api: FakeRazorpay) -> None:
    webhooks = app_server.app[PAYMENTS].webhooks
    webhooks._budget_s = 0.0  # every event takes "too long": answered at once, finished in the background
    api, body = await _order(app_server, "rz-hy")
    payment = razorpay_api.pay(body["order_id"])
    status, answer = await razorpay_api.deliver(app_server.url, razorpay_api.event("payment.captured", payment=payment))
    assert status == 200 and answer == {"received": True, "queued": True}
    await webhooks.stop()  # waits for the queued work
    assert await api.balance() == 60
