"""Purchases against the real store and ledger: exactly-once under contention and after crashes.

A tiny provider adapter stands in for a payment provider here (no HTTP); the REST tests drive the
real Stripe/Razorpay SDKs against local servers."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from billing.errors import PaymentMismatch
from billing.ledger import Ledger
from billing.ledger import ensure_indexes as ledger_indexes
from billing.packages import Catalogue
from billing.payments import Payments
from billing.providers.base import Checkout, PaymentRequest, WebhookEvent
from billing.purchases import Report, credits_for, plan, status_of
from billing.purchases import ensure_indexes as purchase_indexes
from billing.webhooks import ensure_indexes as webhook_indexes


class ManualProvider:
    """Creates a payment reference and waits for the test to report what happened."""

    name = "stripe"
    default_currency = "usd"
    completes_immediately = False

    async def create_payment(self, request: PaymentRequest) -> Checkout:
        return Checkout(ref=f"pi_{request.purchase_id[4:]}", client={"client_secret": "secret"})

    def verify_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        data = json.loads(body)
        return WebhookEvent(self.name, data["id"], data["type"], body.decode(), data)

    def public(self) -> dict[str, Any]:
        return {"id": self.name}

    async def close(self) -> None:
        return None


@pytest.fixture
async def payments(mongo_url: str) -> AsyncIterator[Payments]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    db = client[f"t_{uuid.uuid4().hex[:10]}"]
    await ledger_indexes(db)
    await purchase_indexes(db)
    await webhook_indexes(db)
    ledger = Ledger(db, signup_bonus=10)
    await ledger.start()
    service = Payments(db, ledger, Catalogue(), {"stripe": ManualProvider()})
    await service.start()
    service.ledger = ledger  # type: ignore[attr-defined]
    yield service
    await service.stop()
    await ledger.stop()
    assert (await ledger.reconcile()).ok
    await client.drop_database(db.name)
    await client.close()


async def _purchase(payments: Payments, user: str, package: str = "large") -> dict[str, Any]:
    doc, _ = await payments.purchases.create(user, package, "stripe", uuid.uuid4().hex)
    return doc


async def _balance(payments: Payments, user: str) -> int:
    return (await payments.ledger.wallet(user)).balance  # type: ignore[attr-defined, no-any-return]


async def test_concurrent_reports_of_one_purchase_grant_and_debit_exactly(payments: Payments) -> None:
    doc = await _purchase(payments, "pu-ann")  # 300 credits for 240 cents
    p, pid = payments.purchases, doc["_id"]
    reports = [p.record_payment(pid, "pi_x", 240, "usd", Report(f"s{i}")) for i in range(10)]
    reports += [p.record_refund(pid, "re_1", 60, "usd", "succeeded", Report(f"r{i}")) for i in range(5)]
    reports += [p.record_refund(pid, "re_2", 24, "usd", "pending", Report(f"q{i}")) for i in range(5)]
    reports += [p.record_dispute(pid, "dp_1", 240, "usd", "needs_response", Report(f"d{i}")) for i in range(3)]
    reports += [p.record_failure(pid, "pi_x", "declined", Report(f"f{i}")) for i in range(3)]
    random.shuffle(reports)
    await asyncio.gather(*reports)
    final = await p.get(pid)
    assert final is not None and final["status"] == "disputed"
    # 300 granted; refunds of 84 cents → 105 credits; the dispute takes the remaining 195. (The
    # operations depend on the arrival order — a dispute seen first takes 300, a later refund
    # re-balances with a reversal — but the net per family does not.)
    def net(*kinds: str) -> int:
        return sum(op["delta"] for op in final["ops"] if op["kind"] in kinds)

    assert (net("purchase"), net("refund", "refund_reversal"), net("dispute", "dispute_reversal")) == (300, -105, -195)
    assert set(final["applied"]) == {op["key"] for op in final["ops"]}
    assert await _balance(payments, "pu-ann") == 10


async def test_mismatched_money_is_refused_before_anything_is_recorded(payments: Payments) -> None:
    doc = await _purchase(payments, "pu-bo")
    p = payments.purchases
    for amount, currency in ((239, "usd"), (240, "inr"), ("240", "usd"), (None, None), (True, "usd")):
        with pytest.raises(PaymentMismatch):
            await p.record_payment(doc["_id"], "pi_y", amount, currency, Report("x"))
    with pytest.raises(PaymentMismatch):
        await p.record_refund(doc["_id"], "re_big", 241, "usd", "succeeded", Report("x"))
    assert (await p.get(doc["_id"]))["payment"] is None  # type: ignore[index]
    assert await _balance(payments, "pu-bo") == 10


async def test_a_second_payment_for_one_purchase_grants_nothing_more(payments: Payments) -> None:
    doc = await _purchase(payments, "pu-cy", "small")
    p = payments.purchases
    await p.record_payment(doc["_id"], "pi_1", 60, "usd", Report("a"))
    final = await p.record_payment(doc["_id"], "pi_2", 60, "usd", Report("b"))
    assert final["extra_payments"] == ["pi_2"]
    assert await _balance(payments, "pu-cy") == 60


async def test_a_crash_between_planning_and_applying_is_settled_by_resume(payments: Payments) -> None:
    doc = await _purchase(payments, "pu-di", "small")
    p = payments.purchases

    def paid(d: dict[str, Any]) -> bool:
        d["payment"] = {"id": "pi_crash", "amount": 60, "currency": "usd", "at": dt.datetime.now(dt.UTC),
                        "source": "test"}
        return True

    planned = await p._transition(doc["_id"], paid, Report("test"))  # …and the process dies here
    assert planned["unsettled"] and planned["ops"][0]["key"] == "stripe:pi_crash"
    assert await _balance(payments, "pu-di") == 10
    assert await p.resume(older_than_s=0) == 1
    assert await _balance(payments, "pu-di") == 60
    assert await p.resume(older_than_s=0) == 0
    await p.settle(doc["_id"])  # again: nothing changes
    assert await _balance(payments, "pu-di") == 60


async def test_a_webhook_recorded_but_never_processed_is_swept(payments: Payments) -> None:
    doc = await _purchase(payments, "pu-ed", "small")
    body = json.dumps({"id": "evt_stuck", "type": "payment_intent.succeeded", "data": {"object": {
        "id": doc["provider_ref"], "amount": 60, "amount_received": 60, "currency": "usd", "metadata": {}}}})
    old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    events = payments.webhooks._events
    await events.insert_one({"_id": "stripe:evt_stuck", "provider": "stripe", "event_id": "evt_stuck",
                             "type": "payment_intent.succeeded", "body": body, "status": "received",
                             "received_at": old, "deliveries": 1})
    assert await payments.sweep() == (1, 0)
    assert (await events.find_one({"_id": "stripe:evt_stuck"}))["status"] == "processed"  # type: ignore[index]
    assert await _balance(payments, "pu-ed") == 60
    # The provider retries it later: a duplicate, answered from the record.
    answer = await payments.webhooks.receive("stripe", body.encode(), {})
    assert answer == {"received": True, "duplicate": True, "outcome": "payment_recorded"}
    assert await _balance(payments, "pu-ed") == 60


def test_plan_and_status_are_functions_of_the_facts() -> None:
    base: dict[str, Any] = {"provider": "razorpay", "credits": 120, "amount": 10000, "ops": [], "payment": None,
                            "refunds": [], "refunded_total": 0, "disputes": [], "failures": [], "canceled": False,
                            "provider_ref": "order_1"}
    assert plan(base, "t") == [] and status_of(base) == "pending"
    assert status_of({**base, "failures": [{}]}) == "failed"
    assert status_of({**base, "canceled": True}) == "canceled"
    refunded = {**base, "refunds": [{"id": "rfnd_1", "amount": 3333, "status": "processed"}]}
    assert plan(refunded, "rfnd_1") == []  # nothing to take back before anything was granted
    paid = {**refunded, "payment": {"id": "pay_1"}}
    assert plan(paid, "pay_1") == [
        {"key": "razorpay:pay_1", "delta": 120, "kind": "purchase"},
        {"key": "razorpay:refund:rfnd_1", "delta": -40, "kind": "refund"}]  # ceil(120 * 3333 / 10000)
    assert status_of(paid) == "partially_refunded"
    assert credits_for(base, 10000) == 120 and credits_for(base, 1) == 1 and credits_for(base, 0) == 0
    assert credits_for(base, 10**9) == 120
