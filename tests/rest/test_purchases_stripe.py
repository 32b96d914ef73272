"""Stripe end to end: the official SDK against a local server speaking Stripe's API, and webhooks
signed the way Stripe signs them. Duplicates, reordering, refunds, disputes, forged/expired input."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from server.app import LEDGER, PAYMENTS
from tests.billing.api import Api
from tests.support.apps import RunningApp
from tests.support.fake_stripe import FakeStripe, stripe_signature


@pytest.fixture
def env(base_env: dict[str, str], stripe_api: FakeStripe) -> dict[str, str]:
    return {**base_env, **stripe_api.env()}


async def _buy(app: RunningApp, user: str, package: str = "small") -> tuple[Api, dict[str, Any]]:
    api = Api(app, user)
    status, body = await api.buy(package, provider="stripe")
    assert status == 201, body
    return api, body


async def test_purchase_creates_a_payment_intent_and_the_webhook_grants(
        app_server: RunningApp, stripe_api: FakeStripe, clients) -> None:
    device = await clients(app_server, "st-ann", namespaces=["/chat"])
    api, body = await _buy(app_server, "st-ann")
    assert body["status"] == "pending" and body["provider"] == "stripe"
    assert body["client_secret"].startswith(body["payment_intent_id"] + "_secret_")
    assert body["publishable_key"] == "pk_test_fake"
    intent = stripe_api.intents[body["payment_intent_id"]]
    assert (intent["amount"], intent["currency"]) == (60, "usd")
    assert intent["metadata"]["purchase_id"] == body["purchase_id"]
    assert await api.balance() == 10

    update = asyncio.create_task(device.next("/chat", "wallet:updated"))
    status, answer = await stripe_api.deliver(app_server.url, stripe_api.succeeded(body["payment_intent_id"]))
    assert status == 200 and answer == {"received": True, "outcome": "payment_recorded"}
    assert (await update) == {"balance": 60, "delta": 50, "reason": "purchase", "held": 0, "available": 60,
                              "ref": body["purchase_id"]}
    assert await api.balance() == 60
    _, fetched = await api.get(f"/api/purchases/{body['purchase_id']}")
    assert fetched["status"] == "succeeded" and "client_secret" not in fetched
    assert [h["status"] for h in fetched["history"]] == ["created", "pending", "succeeded"]
    _, entries = await api.get("/api/wallet/ledger?limit=1")
    assert entries["entries"][0]["id"] == f"stripe:{body['payment_intent_id']}"


async def test_retrying_the_purchase_returns_the_same_payment_intent(
        app_server: RunningApp, stripe_api: FakeStripe) -> None:
    api = Api(app_server, "st-bo")
    first = await api.buy("medium", provider="stripe", key="st-bo-key-1")
    again = await api.buy("medium", provider="stripe", key="st-bo-key-1")
    assert (first[0], again[0]) == (201, 200)
    assert first[1]["client_secret"] == again[1]["client_secret"]
    assert len(stripe_api.intents) == 1


async def test_duplicate_webhooks_grant_once(app_server: RunningApp, stripe_api: FakeStripe) -> None:
    api, body = await _buy(app_server, "st-cy")
    event = stripe_api.succeeded(body["payment_intent_id"])
    results = await asyncio.gather(*(stripe_api.deliver(app_server.url, event) for _ in range(8)))
    assert {r[0] for r in results} == {200}
    status, again = await stripe_api.deliver(app_server.url, event)  # once processed: answered from the record
    assert status == 200 and again == {"received": True, "duplicate": True, "outcome": "payment_recorded"}
    # A second, distinct event about the same payment (Stripe may send several) changes nothing.
    status, _ = await stripe_api.deliver(app_server.url, stripe_api.succeeded(body["payment_intent_id"]))
    assert status == 200
    assert await api.balance() == 60
    record = await app_server.app[PAYMENTS].webhooks._events.find_one({"event_id": event["id"]})
    assert record is not None and record["status"] == "processed" and record["deliveries"] == 9


async def test_refund_before_success_grants_nothing_then_nets_out(
        app_server: RunningApp, stripe_api: FakeStripe) -> None:
    api, body = await _buy(app_server, "st-di")
    pid = body["payment_intent_id"]
    refund = stripe_api.refund(pid)
    assert (await stripe_api.deliver(app_server.url, refund))[0] == 200
    assert await api.balance() == 10
    _, fetched = await api.get(f"/api/purchases/{body['purchase_id']}")
    assert fetched["status"] == "pending"
    assert (await stripe_api.deliver(app_server.url, stripe_api.succeeded(pid)))[0] == 200
    assert await api.balance() == 10  # granted and debited together
    _, fetched = await api.get(f"/api/purchases/{body['purchase_id']}")
    assert fetched["status"] == "refunded"
    _, entries = await api.get("/api/wallet/ledger")
    assert [(e["kind"], e["delta"]) for e in entries["entries"][:2]] == [("refund", -50), ("purchase", 50)]
    # Late duplicates of either change nothing.
    assert (await stripe_api.deliver(app_server.url, refund))[0] == 200
    same_refund = stripe_api.refund(pid, refund_id=refund["data"]["object"]["id"])
    assert (await stripe_api.deliver(app_server.url, same_refund))[0] == 200
    assert await api.balance() == 10


async def test_failure_then_success_and_late_failure(app_server: RunningApp, stripe_api: FakeStripe) -> None:
    api, body = await _buy(app_server, "st-ed")
    pid = body["payment_intent_id"]
    assert (await stripe_api.deliver(app_server.url, stripe_api.failed(pid)))[1]["outcome"] == "failure_recorded"
    _, fetched = await api.get(f"/api/purchases/{body['purchase_id']}")
    assert fetched["status"] == "failed" and fetched["client_secret"]  # the app may retry the same intent
    await stripe_api.deliver(app_server.url, stripe_api.succeeded(pid))
    await stripe_api.deliver(app_server.url, stripe_api.failed(pid))  # stale, after the success
    _, fetched = await api.get(f"/api/purchases/{body['purchase_id']}")
    assert [h["status"] for h in fetched["history"]] == ["created", "pending", "failed", "succeeded"]
    assert await api.balance() == 60


async def test_refund_after_spend_takes_the_wallet_below_zero(app_server: RunningApp, stripe_api: FakeStripe) -> None:
    api, body = await _buy(app_server, "st-fi")
    pid = body["payment_intent_id"]
    await stripe_api.deliver(app_server.url, stripe_api.succeeded(pid))
    ledger = app_server.app[LEDGER]
    await ledger.spend("st-fi", 55, "msg:st-fi:1", "message")
    assert await api.balance() == 5
    status, answer = await stripe_api.deliver(app_server.url, stripe_api.charge_refunded(pid, 60))
    assert status == 200 and answer["outcome"] == "refund_recorded"
    _, wallet = await api.get("/api/wallet")
    assert wallet == {"balance": -45, "held": 0, "available": -45}
    from billing.errors import InsufficientCredits
    with pytest.raises(InsufficientCredits):
        await ledger.spend("st-fi", 1, "msg:st-fi:2", "message")
    # The refund also arrives as refund.created: still one debit in total.
    await stripe_api.deliver(app_server.url, stripe_api.refund(pid))
    assert await api.balance() == -45
    assert (await ledger.reconcile()).ok


async def test_partial_refunds_debit_proportionally(app_server: RunningApp, stripe_api: FakeStripe) -> None:
    api, body = await _buy(app_server, "st-gu", "medium")  # 120 credits for $1.20
    pid = body["payment_intent_id"]
    await stripe_api.deliver(app_server.url, stripe_api.succeeded(pid))
    await stripe_api.deliver(app_server.url, stripe_api.refund(pid, 30))
    assert await api.balance() == 130 - 30
    _, fetched = await api.get(f"/api/purchases/{body['purchase_id']}")
    assert fetched["status"] == "partially_refunded"
    failed = stripe_api.refund(pid, 40, status="pending")
    await stripe_api.deliver(app_server.url, failed)
    assert await api.balance() == 130 - 70
    rid = failed["data"]["object"]["id"]
    await stripe_api.deliver(app_server.url, stripe_api.refund(pid, 40, status="failed", refund_id=rid,
                                                               kind="refund.failed"))
    assert await api.balance() == 130 - 30  # the failed refund's debit is reversed
    # A late 'pending' for that refund does not resurrect it.
    await stripe_api.deliver(app_server.url, stripe_api.refund(pid, 40, status="pending", refund_id=rid))
    assert await api.balance() == 130 - 30


async def test_dispute_debits_and_a_won_dispute_credits_back(app_server: RunningApp, stripe_api: FakeStripe) -> None:
    api, body = await _buy(app_server, "st-hy")
    pid = body["payment_intent_id"]
    await stripe_api.deliver(app_server.url, stripe_api.succeeded(pid))
    opened = stripe_api.dispute(pid)
    await stripe_api.deliver(app_server.url, opened)
    assert await api.balance() == 10
    _, fetched = await api.get(f"/api/purchases/{body['purchase_id']}")
    assert fetched["status"] == "disputed"
    did = opened["data"]["object"]["id"]
    won = stripe_api.dispute(pid, "won", dispute_id=did, kind="charge.dispute.closed")
    await stripe_api.deliver(app_server.url, won)
    await stripe_api.deliver(app_server.url, stripe_api.dispute(pid, "under_review", dispute_id=did,
                                                                kind="charge.dispute.updated"))  # late
    assert await api.balance() == 60
    _, fetched = await api.get(f"/api/purchases/{body['purchase_id']}")
    assert fetched["status"] == "succeeded"
    _, entries = await api.get("/api/wallet/ledger?limit=3")
    assert [e["kind"] for e in entries["entries"]] == ["dispute_reversal", "dispute", "purchase"]


async def test_every_order_of_events_ends_in_the_same_state(app_server: RunningApp, stripe_api: FakeStripe) -> None:
    orders = [(0, 1, 2, 3), (3, 2, 1, 0), (1, 3, 0, 2), (2, 0, 3, 1)]
    for n, order in enumerate(orders):
        api, body = await _buy(app_server, f"st-perm-{n}", "large")  # 300 credits for $2.40
        pid = body["payment_intent_id"]
        events = [stripe_api.succeeded(pid), stripe_api.refund(pid, 60), stripe_api.refund(pid, 120),
                  stripe_api.failed(pid)]
        for i in order:
            assert (await stripe_api.deliver(app_server.url, events[i]))[0] == 200
        assert await api.balance() == 10 + 300 - 75 - 150
        _, fetched = await api.get(f"/api/purchases/{body['purchase_id']}")
        assert fetched["status"] == "partially_refunded"


async def test_forged_expired_and_malformed_webhooks_are_refused(
        app_server: RunningApp, stripe_api: FakeStripe) -> None:
    api, body = await _buy(app_server, "st-io")
    event = stripe_api.succeeded(body["payment_intent_id"])
    raw, header = stripe_api.signed(event)
    tampered = raw.replace(b'"amount_received": 60', b'"amount_received": 6000')
    cases = {
        "wrong secret": await stripe_api.deliver(app_server.url, event, secret="whsec_attacker"),
        "expired": await stripe_api.deliver(app_server.url, event, timestamp=int(time.time()) - 301),
        "future": await stripe_api.deliver(app_server.url, event, timestamp=int(time.time()) + 301),
        "far future": await stripe_api.deliver(app_server.url, event, timestamp=int(time.time()) + 10 * 365 * 86400),
        "no header": await stripe_api.deliver(app_server.url, event, header=""),
        "garbage header": await stripe_api.deliver(app_server.url, event, header="nonsense"),
        "tampered body": await stripe_api.deliver(app_server.url, event, body=tampered, header=header),
        "not json": await stripe_api.deliver(app_server.url, event, body=b"{nope",
                                             header=stripe_signature("{nope", stripe_api.webhook_secret)),
    }
    for name, (status, answer) in cases.items():
        assert status == 400, name
        assert answer["error"]["code"] == "invalid_payload", name
    assert "tolerance" in cases["expired"][1]["error"]["message"]
    assert "tolerance" in cases["future"][1]["error"]["message"]
    assert await api.balance() == 10
    assert await app_server.app[PAYMENTS].webhooks._events.count_documents({}) == 0
    # Within the tolerance (either way), the genuine event still works, and its replay is a harmless
    # duplicate.
    assert (await stripe_api.deliver(app_server.url, event, timestamp=int(time.time()) - 200))[0] == 200
    status, answer = await stripe_api.deliver(app_server.url, event, timestamp=int(time.time()) + 200)
    assert status == 200 and answer["duplicate"] is True
    assert await api.balance() == 60


async def test_amount_or_currency_mismatch_is_refused(app_server: RunningApp, stripe_api: FakeStripe) -> None:
    api, body = await _buy(app_server, "st-ju")
    pid = body["payment_intent_id"]
    short = stripe_api.succeeded(pid, amount=1)
    status, answer = await stripe_api.deliver(app_server.url, short)
    assert status == 400 and "does not match" in answer["error"]["message"]
    status, _ = await stripe_api.deliver(app_server.url, short)  # a retry gets the same answer
    assert status == 400
    status, _ = await stripe_api.deliver(app_server.url, stripe_api.succeeded(pid, currency="eur"))
    assert status == 400
    assert await api.balance() == 10
    _, fetched = await api.get(f"/api/purchases/{body['purchase_id']}")
    assert fetched["status"] == "pending"


async def test_events_for_unknown_payments_are_acknowledged_and_ignored(
        app_server: RunningApp, stripe_api: FakeStripe) -> None:
    orphan = stripe_api.event("payment_intent.succeeded", {"id": "pi_notours", "amount": 60, "currency": "usd",
                                                           "amount_received": 60, "metadata": {}})
    status, answer = await stripe_api.deliver(app_server.url, orphan)
    assert status == 200 and answer["outcome"] == "unknown_purchase"
    other = stripe_api.event("customer.created", {"id": "cus_1", "object": "customer"})
    status, answer = await stripe_api.deliver(app_server.url, other)
    assert status == 200 and answer["outcome"] == "ignored"


async def test_provider_errors_become_502_and_a_retry_recovers(app_server: RunningApp, stripe_api: FakeStripe) -> None:
    api = Api(app_server, "st-ka")
    stripe_api.fail_with = 400
    status, body = await api.buy("small", provider="stripe", key="st-ka-key-1")
    assert status == 502 and body["error"]["code"] == "unavailable"
    assert "simulated" not in json.dumps(body)  # provider details go to the logs, not to clients
    stripe_api.fail_with = None
    status, body = await api.buy("small", provider="stripe", key="st-ka-key-1")
    assert status == 200 and body["status"] == "pending" and body["client_secret"]


async def test_dev_is_still_offered_next_to_stripe_in_dev_mode(app_server: RunningApp) -> None:
    _, body = await Api(app_server, "st-la").get("/api/credits/packages")
    assert [p["id"] for p in body["providers"]] == ["stripe", "dev"]
    assert body["providers"][0]["publishable_key"] == "pk_test_fake"
