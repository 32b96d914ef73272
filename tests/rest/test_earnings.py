"""A creator's earnings over REST: the split by the carry rule, the summary, the paginated ledger."""

from __future__ import annotations

import pytest

from billing import accounts
from billing.ledger import Ledger
from billing.payouts import PayoutPolicy, Payouts
from billing.providers import DevPayoutProvider
from server.app import CORE, LEDGER
from tests.billing.api import Api
from tests.support.apps import RunningApp

CREATOR = {"roles": ["creator"]}


async def pay(ledger: Ledger, fan: str, creator: str, amount: int, key: str, ref: str | None = None) -> None:
    """A fan pays a creator `amount` credits for a message (60% to the creator by the carry rule)."""
    await ledger.spend(fan, amount, key, "message", ref=ref or key, payee=accounts.earnings(creator), share_pct=60)


async def test_earnings_need_the_creator_role(app_server: RunningApp) -> None:
    fan = Api(app_server, "ern-fan")
    for path in ("/api/earnings", "/api/earnings/ledger", "/api/creator/rates", "/api/payouts"):
        status, body = await fan.get(path)
        assert status == 403 and body["error"]["code"] == "forbidden", path
    status, body = await fan.get("/api/earnings", auth=False)
    assert status == 401


async def test_a_new_creator_has_nothing_yet(app_server: RunningApp) -> None:
    status, body = await Api(app_server, "ern-new", **CREATOR).get("/api/earnings")
    assert status == 200
    assert body == {
        "balance": 0, "pending_payout": 0, "paid_out": 0, "lifetime": 0, "share_pct": 60,
        "payout": {"currency": "usd", "rates": {"inr": "0.8", "usd": "0.01"}, "min_credits": 100,
                   "balance_value": {"amount_minor": 0, "currency": "usd", "display": "$0.00"},
                   "provider": "dev", "stripe_account": None},
    }


async def test_five_one_credit_messages_earn_three_credits(app_server: RunningApp) -> None:
    ledger = app_server.app[LEDGER]
    for n in range(5):
        await pay(ledger, "ern-fa", "ern-cy", 1, f"msg:ern-fa:{n}", ref=f"m{n}")
    api = Api(app_server, "ern-cy", **CREATOR)
    _, body = await api.get("/api/earnings")
    assert (body["balance"], body["lifetime"], body["pending_payout"]) == (3, 3, 0)  # floor(5 * 60 / 100)
    assert body["payout"]["balance_value"] == {"amount_minor": 3, "currency": "usd", "display": "$0.03"}
    # Shares 0, 1, 0, 1, 1: messages whose share rounded to 0 moved nothing and are not listed.
    _, page = await api.get("/api/earnings/ledger")
    assert [(e["ref"], e["delta"], e["gross"]) for e in page["entries"]] == [("m4", 1, 1), ("m3", 1, 1), ("m1", 1, 1)]
    assert page["entries"][0]["link"] == {"type": "message", "message_id": "m4"}
    assert page["entries"][0]["kind"] == "message" and page["next"] is None
    assert await ledger.balance(accounts.PLATFORM_REVENUE) == 2
    assert (await ledger.wallet("ern-fa")).balance == 10 - 5


async def test_worked_example_of_the_docs(app_server: RunningApp) -> None:
    """docs/earnings.md: 5 messages at a rate of 3 to a creator at 60% → 9 to the creator, 6 to the platform."""
    ledger = app_server.app[LEDGER]
    await ledger.credit("ern-ann", 100, "dev:pur_ern_ann", "purchase", source=accounts.clearing("dev"))
    shares = []
    for n in range(5):
        entry = await ledger.spend("ern-ann", 3, f"msg:ern-ann:{n}", "message", ref=f"m{n}",
                                   payee=accounts.earnings("ern-bea"), share_pct=60)
        shares.append(sum(p.delta for p in entry.postings if p.account == "earnings:ern-bea"))
    assert shares == [1, 2, 2, 2, 2]
    assert await ledger.balances(["earnings:ern-bea", accounts.PLATFORM_REVENUE, "wallet:ern-ann",
                                  accounts.clearing("dev"), accounts.PLATFORM_PROMOTIONS]) == {
        "earnings:ern-bea": 9, accounts.PLATFORM_REVENUE: 6, "wallet:ern-ann": 110 - 15,
        accounts.clearing("dev"): -100, accounts.PLATFORM_PROMOTIONS: -10}
    report = await ledger.reconcile()
    assert report.ok and report.total == 0
    # Stages 8 and 9: a payout of the 9 credits ($0.09 at usd=0.01), approved.
    payouts = Payouts(app_server.app[CORE].db, ledger, PayoutPolicy(min_credits=5), DevPayoutProvider())
    payout, created = await payouts.request("ern-bea", 9, "ern-bea-payout-1")
    assert created and payout["money"] == {"amount_minor": 9, "currency": "usd"}
    assert await ledger.balances(["earnings:ern-bea", "payout:ern-bea"]) == {"earnings:ern-bea": 0,
                                                                            "payout:ern-bea": 9}
    await payouts.approve(payout["_id"], "ern-admin")
    assert await ledger.balances(["earnings:ern-bea", "payout:ern-bea", accounts.PLATFORM_PAYOUTS]) == {
        "earnings:ern-bea": 0, "payout:ern-bea": 0, accounts.PLATFORM_PAYOUTS: 9}
    _, body = await Api(app_server, "ern-bea", **CREATOR).get("/api/earnings")
    assert (body["balance"], body["pending_payout"], body["paid_out"], body["lifetime"]) == (0, 0, 9, 9)
    # The fan refunds the purchase after spending: the wallet goes negative, the creator keeps the 9.
    await ledger.adjust("ern-ann", -100, "dev:refund:ern-ann", "refund", counter=accounts.clearing("dev"))
    assert await ledger.balances(["wallet:ern-ann", accounts.clearing("dev")]) == {
        "wallet:ern-ann": -5, accounts.clearing("dev"): 0}
    report = await ledger.reconcile()
    assert report.ok and report.total == 0


async def test_earnings_ledger_is_newest_first_and_cursor_paginated(app_server: RunningApp) -> None:
    ledger = app_server.app[LEDGER]
    await ledger.credit("ern-fb", 1000, "grant:ern-fb", "admin")
    for n in range(7):
        await pay(ledger, "ern-fb", "ern-di", 10, f"msg:ern-fb:{n}")
    api = Api(app_server, "ern-di", **CREATOR)
    pages = await api.pages("/api/earnings/ledger", 3)
    assert all(e["delta"] == 6 and e["gross"] == 10 for page in pages for e in page)
    seen = [e["id"] for page in pages for e in page]
    assert len(pages) == 3
    assert seen == [f"msg:ern-fb:{n}" for n in reversed(range(7))]
    _, summary = await api.get("/api/earnings")
    assert summary["balance"] == summary["lifetime"] == 42


async def test_call_minutes_link_to_the_call(app_server: RunningApp) -> None:
    ledger = app_server.app[LEDGER]
    await ledger.hold("ern-fc", 10, "call:c1:hold", ref="c1")
    await ledger.capture("call:c1:hold", 5, "call:c1:1", "call_minute", payee=accounts.earnings("ern-ed"),
                         share_pct=60, ref="c1")
    _, body = await Api(app_server, "ern-ed", **CREATOR).get("/api/earnings/ledger")
    [entry] = body["entries"]
    assert entry["delta"] == 3 and entry["gross"] == 5 and entry["kind"] == "call_minute"
    assert entry["link"] == {"type": "call_minute", "call_id": "c1", "minute": 1}


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=x", "before=notanumber"])
async def test_bad_earnings_ledger_queries_are_400(app_server: RunningApp, query: str) -> None:
    status, body = await Api(app_server, "ern-fy", **CREATOR).get(f"/api/earnings/ledger?{query}")
    assert status == 400 and body["error"]["code"] == "invalid_payload"


async def test_openapi_describes_the_creator_routes(app_server: RunningApp) -> None:
    status, doc = await Api(app_server, "ern-gu").get("/api/openapi.json")
    assert status == 200
    paths = doc["paths"]
    for path, method in [("/api/earnings", "get"), ("/api/earnings/ledger", "get"), ("/api/creator/rates", "get"),
                         ("/api/creator/rates", "put"), ("/api/creator/payout-account", "put"),
                         ("/api/payouts", "post"), ("/api/payouts", "get"), ("/api/admin/payouts", "get"),
                         ("/api/admin/payouts/{payout_id}/approve", "post"),
                         ("/api/admin/payouts/{payout_id}/reject", "post")]:
        operation = paths[path][method]
        assert not operation["summary"].startswith(method.upper()), path  # described, not just listed
        assert operation["x-roles"] in (["creator"], ["admin"]), path
    assert "402" in paths["/api/payouts"]["post"]["responses"]
    assert {"Payout", "EarningsEntry", "CreatorRates"} <= set(doc["components"]["schemas"])
