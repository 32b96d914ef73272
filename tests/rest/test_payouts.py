"""Creator payouts end to end: requests against earnings, idempotency, admin approval through the dev
provider and through Stripe Connect (the official SDK against the fake Stripe), rejection, failures."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest

from billing import accounts
from billing.payouts import PayoutPolicy, Payouts, payout_provider
from billing.providers import DevPayoutProvider, DevProvider
from config.settings import ConfigError, Env
from server.app import LEDGER, PAYOUTS
from tests.billing.api import Api
from tests.support.apps import RunningApp, make_settings, running_app
from tests.support.fake_stripe import FakeStripe

CREATOR = {"roles": ["creator"]}
ADMIN = {"roles": ["admin"]}


async def earn(app: RunningApp, creator: str, gross: int, fan: str | None = None) -> None:
    """A fan pays `creator` `gross` credits (60% to the creator, by the carry rule)."""
    ledger = app.app[LEDGER]
    fan = fan or f"{creator}-fan"
    await ledger.credit(fan, gross, f"grant:{fan}:{uuid.uuid4().hex}", "admin")
    await ledger.spend(fan, gross, f"msg:{fan}:{uuid.uuid4().hex}", "message",
                       payee=accounts.earnings(creator), share_pct=60)


async def summary(api: Api) -> dict[str, Any]:
    status, body = await api.get("/api/earnings")
    assert status == 200, body
    return dict(body)


async def request_payout(api: Api, amount: int, key: str | None = None, **extra: Any) -> tuple[int, Any]:
    return await api.post("/api/payouts", {"amount": amount, "idempotency_key": key or uuid.uuid4().hex, **extra})


async def assert_books_balance(app: RunningApp) -> None:
    report = await app.app[LEDGER].reconcile()
    assert report.ok and report.total == 0, report


# -- money ----------------------------------------------------------------------------------------
def test_money_is_rounded_down_exactly() -> None:
    policy = PayoutPolicy.from_env(Env({"PAIRLY_PAYOUT_RATES": "usd=0.013, inr=0.8, jpy=1.5",
                                        "PAIRLY_PAYOUT_CURRENCY": "INR", "PAIRLY_PAYOUT_MIN_CREDITS": "50"}))
    assert (policy.currency, policy.min_credits) == ("inr", 50)
    assert policy.money(101, "usd").amount == 131  # 1.313 dollars → 131 cents
    assert policy.money(101).amount == 8080  # ₹80.80
    assert policy.money(101, "jpy").amount == 151  # 151.5 yen → 151 (no minor unit)
    assert policy.money(10**12, "usd").amount == 13 * 10**11  # exact far beyond float precision
    assert PayoutPolicy().rates == {"usd": Decimal("0.01"), "inr": Decimal("0.8")}


@pytest.mark.parametrize(("env", "var"), [
    ({"PAIRLY_PAYOUT_RATES": "usd=abc"}, "PAIRLY_PAYOUT_RATES"),
    ({"PAIRLY_PAYOUT_RATES": "usd=-1"}, "PAIRLY_PAYOUT_RATES"),
    ({"PAIRLY_PAYOUT_RATES": "dollars=1"}, "PAIRLY_PAYOUT_RATES"),
    ({"PAIRLY_PAYOUT_RATES": "inr=0.8"}, "PAIRLY_PAYOUT_CURRENCY"),
    ({"PAIRLY_PAYOUT_CURRENCY": "eur"}, "PAIRLY_PAYOUT_CURRENCY"),
    ({"PAIRLY_PAYOUT_MIN_CREDITS": "0"}, "PAIRLY_PAYOUT_MIN_CREDITS"),
])
def test_bad_payout_settings_name_the_variable(env: dict[str, str], var: str) -> None:
    with pytest.raises(ConfigError) as caught:
        PayoutPolicy.from_env(Env(env))
    assert caught.value.var == var


def test_the_dev_payout_provider_exists_only_with_the_dev_purchase_provider() -> None:
    # The dev purchase provider is refused in production (start-up fails), so is the dev payout provider.
    assert isinstance(payout_provider({"dev": DevProvider()}), DevPayoutProvider)
    assert payout_provider({}) is None


# -- requests (dev provider) ----------------------------------------------------------------------
async def test_request_moves_earnings_to_the_payout_account(app_server: RunningApp) -> None:
    await earn(app_server, "po-ann", 200)  # 120 earned
    api = Api(app_server, "po-ann", **CREATOR)
    status, body = await request_payout(api, 100, "po-ann-key-1")
    assert status == 201, body
    assert body["status"] == "requested" and body["amount"] == 100 and body["user"] == "po-ann"
    assert body["money"] == {"amount_minor": 100, "currency": "usd", "display": "$1.00"}
    assert body["provider"] == "dev" and body["transfer_ref"] is None
    got = await summary(api)
    assert (got["balance"], got["pending_payout"], got["paid_out"], got["lifetime"]) == (20, 100, 0, 120)
    _, page = await api.get("/api/earnings/ledger?limit=1")
    [entry] = page["entries"]
    assert (entry["id"], entry["kind"], entry["delta"]) == ("payout:po-ann:po-ann-key-1", "payout_request", -100)
    assert entry["link"] == {"type": "payout", "payout_id": body["id"]}
    status, mine = await api.get("/api/payouts")
    assert status == 200 and [p["id"] for p in mine["payouts"]] == [body["id"]]
    await assert_books_balance(app_server)


async def test_request_below_the_minimum_or_above_the_balance(app_server: RunningApp) -> None:
    await earn(app_server, "po-bo", 200)
    api = Api(app_server, "po-bo", **CREATOR)
    status, body = await request_payout(api, 99)
    assert status == 400 and body["error"]["code"] == "invalid_payload" and "100" in body["error"]["message"]
    status, body = await request_payout(api, 121)
    assert status == 402 and body["error"]["code"] == "insufficient_credits"
    for bad in ({"amount": "100", "idempotency_key": "po-bo-key-1"}, {"amount": 100, "idempotency_key": "short"},
                {"amount": 100}, {"amount": 100, "idempotency_key": "po-bo-key-2", "currency": "eur"},
                {"amount": True, "idempotency_key": "po-bo-key-3"}):
        status, body = await api.post("/api/payouts", bad)
        assert status == 400 and body["error"]["code"] == "invalid_payload", bad
    assert (await summary(api))["balance"] == 120
    status, body = await request_payout(Api(app_server, "po-bo"), 100)
    assert status == 403


async def test_same_key_same_payout_other_amount_conflicts(app_server: RunningApp) -> None:
    await earn(app_server, "po-cy", 500)  # 300 earned
    api = Api(app_server, "po-cy", **CREATOR)
    first = await request_payout(api, 100, "po-cy-key-1")
    again = await request_payout(api, 100, "po-cy-key-1")
    assert (first[0], again[0]) == (201, 200) and first[1] == again[1]
    status, body = await request_payout(api, 101, "po-cy-key-1")
    assert status == 409 and body["error"]["code"] == "conflict"
    # Concurrent requests with one key: one payout, one transfer.
    results = await asyncio.gather(*(request_payout(api, 150, "po-cy-key-2") for _ in range(6)))
    assert sorted(r[0] for r in results) == [200] * 5 + [201]
    assert len({r[1]["id"] for r in results}) == 1
    got = await summary(api)
    assert (got["balance"], got["pending_payout"]) == (50, 250)
    await assert_books_balance(app_server)


async def test_a_payout_takes_from_every_earnings_shard_in_order(app_server: RunningApp) -> None:
    fans = [f"po-di-fan{n}" for n in range(12)]
    for fan in fans:
        await earn(app_server, "po-di", 50, fan)  # 30 each, on the fans' shards
    ledger = app_server.app[LEDGER]
    before = await ledger.shard_balances(accounts.earnings("po-di"))
    assert sum(before.values()) == 360 and len(before) > 3
    status, body = await request_payout(Api(app_server, "po-di", **CREATOR), 200)
    assert status == 201, body
    after = await ledger.shard_balances(accounts.earnings("po-di"))
    order = sorted(before, key=lambda s: int(s.rsplit("~", 1)[1]))
    left = 200
    for shard in order:
        taken = min(before[shard], left)
        assert after[shard] == before[shard] - taken, shard
        left -= taken
    assert await ledger.balance(accounts.payout("po-di")) == 200
    await assert_books_balance(app_server)


# -- decisions (dev provider) ---------------------------------------------------------------------
async def test_approve_with_the_dev_provider(app_server: RunningApp) -> None:
    await earn(app_server, "po-ed", 200)
    api, admin = Api(app_server, "po-ed", **CREATOR), Api(app_server, "po-admin", **ADMIN)
    _, payout = await request_payout(api, 100)
    status, listed = await admin.get("/api/admin/payouts?status=requested")
    assert status == 200 and payout["id"] in [p["id"] for p in listed["payouts"]]
    status, done = await admin.post(f"/api/admin/payouts/{payout['id']}/approve")
    assert status == 200, done
    assert done["status"] == "approved" and done["transfer_ref"] == f"dev_tr_{payout['id']}"
    assert done["decided_by"] == "po-admin" and done["decided_at"]
    got = await summary(api)
    assert (got["balance"], got["pending_payout"], got["paid_out"], got["lifetime"]) == (20, 0, 100, 120)
    assert await app_server.app[LEDGER].balance(accounts.PLATFORM_PAYOUTS) == 100
    status, again = await admin.post(f"/api/admin/payouts/{payout['id']}/approve")
    assert status == 200 and again == done
    status, body = await admin.post(f"/api/admin/payouts/{payout['id']}/reject", {"reason": "too late"})
    assert status == 409 and body["error"]["code"] == "conflict"
    _, listed = await admin.get("/api/admin/payouts?status=approved")
    assert [p["id"] for p in listed["payouts"]] == [payout["id"]]
    await assert_books_balance(app_server)


async def test_reject_returns_the_credits(app_server: RunningApp) -> None:
    await earn(app_server, "po-fa", 200)
    api, admin = Api(app_server, "po-fa", **CREATOR), Api(app_server, "po-admin", **ADMIN)
    _, payout = await request_payout(api, 120)
    assert (await summary(api))["balance"] == 0
    status, done = await admin.post(f"/api/admin/payouts/{payout['id']}/reject", {"reason": "KYC missing"})
    assert status == 200, done
    assert done["status"] == "rejected" and done["reason"] == "KYC missing" and done["decided_by"] == "po-admin"
    got = await summary(api)
    assert (got["balance"], got["pending_payout"], got["paid_out"], got["lifetime"]) == (120, 0, 0, 120)
    status, again = await admin.post(f"/api/admin/payouts/{payout['id']}/reject")
    assert status == 200 and again == done
    status, body = await admin.post(f"/api/admin/payouts/{payout['id']}/approve")
    assert status == 409 and body["error"]["code"] == "conflict"
    _, page = await api.get("/api/earnings/ledger?limit=1")
    assert [(e["kind"], e["delta"]) for e in page["entries"]] == [("payout_rejected", 120)]
    await assert_books_balance(app_server)


async def test_admin_routes_need_the_admin_role(app_server: RunningApp) -> None:
    await earn(app_server, "po-gu", 200)
    creator = Api(app_server, "po-gu", **CREATOR)
    _, payout = await request_payout(creator, 100)
    for api in (creator, Api(app_server, "po-someone")):
        status, _ = await api.get("/api/admin/payouts")
        assert status == 403
        for action in ("approve", "reject"):
            status, body = await api.post(f"/api/admin/payouts/{payout['id']}/{action}")
            assert status == 403 and body["error"]["code"] == "forbidden"
    admin = Api(app_server, "po-admin", **ADMIN)
    status, _ = await admin.post("/api/admin/payouts/po_nope/approve")
    assert status == 404
    status, _ = await admin.get("/api/admin/payouts?status=lost")
    assert status == 400
    assert (await summary(creator))["pending_payout"] == 100


async def test_approve_and_reject_race_one_wins(app_server: RunningApp) -> None:
    await earn(app_server, "po-hy", 400)
    api, admin = Api(app_server, "po-hy", **CREATOR), Api(app_server, "po-admin", **ADMIN)
    _, payout = await request_payout(api, 200)
    results = await asyncio.gather(admin.post(f"/api/admin/payouts/{payout['id']}/approve"),
                                   admin.post(f"/api/admin/payouts/{payout['id']}/reject"),
                                   admin.post(f"/api/admin/payouts/{payout['id']}/approve"),
                                   admin.post(f"/api/admin/payouts/{payout['id']}/reject"))
    ok = {body["status"] for status, body in results if status == 200}
    assert len(ok) == 1, results
    got = await summary(api)
    if ok == {"approved"}:
        assert (got["balance"], got["pending_payout"], got["paid_out"]) == (40, 0, 200)
    else:
        assert (got["balance"], got["pending_payout"], got["paid_out"]) == (240, 0, 0)
    await assert_books_balance(app_server)


# -- Stripe Connect ---------------------------------------------------------------------------------
@pytest.fixture
def env(base_env: dict[str, str], request: pytest.FixtureRequest) -> dict[str, str]:
    if "stripe_api" in request.fixturenames:
        fake: FakeStripe = request.getfixturevalue("stripe_api")
        return {**base_env, **fake.env()}
    return base_env


async def _stripe_payout(app: RunningApp, creator: str, amount: int = 100) -> tuple[Api, Api, dict[str, Any]]:
    await earn(app, creator, 200)
    api, admin = Api(app, creator, **CREATOR), Api(app, "po-admin", **ADMIN)
    status, body = await api.request("PUT", "/api/creator/payout-account", {"stripe_account": "acct_1Pairly0Test"})
    assert status == 200 and body == {"stripe_account": "acct_1Pairly0Test"}
    status, payout = await request_payout(api, amount)
    assert status == 201, payout
    assert payout["provider"] == "stripe"
    return api, admin, payout


async def test_stripe_payout_needs_a_connected_account(app_server: RunningApp, stripe_api: FakeStripe) -> None:
    await earn(app_server, "po-ia", 200)
    api = Api(app_server, "po-ia", **CREATOR)
    status, body = await request_payout(api, 100)
    assert status == 400 and "payout-account" in body["error"]["message"]
    for bad in ({"stripe_account": "acct_"}, {"stripe_account": "ba_123456789"}, {"stripe_account": 12},
                {"stripe_account": "acct_123456789", "iban": "x"}, {}):
        status, body = await api.request("PUT", "/api/creator/payout-account", bad)
        assert status == 400 and body["error"]["code"] == "invalid_payload", bad
    status, _ = await Api(app_server, "po-ia-fan").request("PUT", "/api/creator/payout-account",
                                                           {"stripe_account": "acct_123456789"})
    assert status == 403
    assert (await summary(api))["payout"]["provider"] == "stripe"


async def test_stripe_approval_sends_a_connect_transfer(app_server: RunningApp, stripe_api: FakeStripe) -> None:
    api, admin, payout = await _stripe_payout(app_server, "po-jo")
    status, done = await admin.post(f"/api/admin/payouts/{payout['id']}/approve")
    assert status == 200, done
    assert done["status"] == "approved" and done["transfer_ref"].startswith("tr_")
    transfer = stripe_api.transfers[done["transfer_ref"]]
    assert (transfer["amount"], transfer["currency"], transfer["destination"]) == (100, "usd", "acct_1Pairly0Test")
    assert transfer["transfer_group"] == payout["id"]
    assert transfer["metadata"] == {"payout_id": payout["id"], "user": "po-jo", "credits": "100"}
    got = await summary(api)
    assert (got["balance"], got["pending_payout"], got["paid_out"], got["lifetime"]) == (20, 0, 100, 120)
    # Approving again changes nothing and sends nothing.
    status, again = await admin.post(f"/api/admin/payouts/{payout['id']}/approve")
    assert status == 200 and again == done
    assert len(stripe_api.transfers) == 1
    assert [r[1] for r in stripe_api.requests] == ["/v1/transfers"]
    await assert_books_balance(app_server)


@pytest.mark.parametrize("error", [(500, "api_error", None), (402, "card_error", "card_declined"),
                                   (400, "invalid_request_error", "balance_insufficient")])
async def test_a_failed_transfer_moves_nothing_and_can_be_retried(
        app_server: RunningApp, stripe_api: FakeStripe, error: tuple[int, str, str | None]) -> None:
    api, admin, payout = await _stripe_payout(app_server, "po-ka")
    ledger = app_server.app[LEDGER]
    stripe_api.transfer_error = error
    status, body = await admin.post(f"/api/admin/payouts/{payout['id']}/approve")
    assert status == 502 and body["error"]["code"] == "unavailable"
    got = await summary(api)
    assert (got["balance"], got["pending_payout"], got["paid_out"]) == (20, 100, 0)
    assert await ledger.balance(accounts.PLATFORM_PAYOUTS) == 0
    assert await ledger.get_entry(f"payout:{payout['id']}:paid") is None
    _, listed = await admin.get("/api/admin/payouts?status=failed")
    [failed] = listed["payouts"]
    assert failed["id"] == payout["id"] and failed["transfer_ref"] is None
    assert failed["error"]["code"] == (error[2] or "APIError")
    await assert_books_balance(app_server)
    # Retried once Stripe answers again: approved, one transfer.
    stripe_api.transfer_error = None
    status, done = await admin.post(f"/api/admin/payouts/{payout['id']}/approve")
    assert status == 200 and done["status"] == "approved" and "error" not in done
    assert len(stripe_api.transfers) == 1
    assert (await summary(api))["paid_out"] == 100
    await assert_books_balance(app_server)


async def test_a_failed_transfer_can_be_rejected(app_server: RunningApp, stripe_api: FakeStripe) -> None:
    api, admin, payout = await _stripe_payout(app_server, "po-lu")
    stripe_api.transfer_error = (402, "card_error", "card_declined")
    assert (await admin.post(f"/api/admin/payouts/{payout['id']}/approve"))[0] == 502
    status, done = await admin.post(f"/api/admin/payouts/{payout['id']}/reject", {"reason": "account closed"})
    assert status == 200 and done["status"] == "rejected"
    assert (await summary(api))["balance"] == 120
    await assert_books_balance(app_server)


async def test_a_transfer_made_but_unanswered_is_found_not_sent_twice(
        app_server: RunningApp, stripe_api: FakeStripe) -> None:
    api, admin, payout = await _stripe_payout(app_server, "po-mo")
    stripe_api.lose_transfer_answers = True
    status, _ = await admin.post(f"/api/admin/payouts/{payout['id']}/approve")
    assert status == 502
    [made] = stripe_api.transfers.values()  # Stripe did it; we could not know
    assert (await summary(api))["pending_payout"] == 100
    # Rejecting now would pay the creator twice: refused, and the transfer is recorded.
    status, body = await admin.post(f"/api/admin/payouts/{payout['id']}/reject")
    assert status == 409, body
    stripe_api.lose_transfer_answers = False
    status, done = await admin.post(f"/api/admin/payouts/{payout['id']}/approve")
    assert status == 200 and done["status"] == "approved" and done["transfer_ref"] == made["id"]
    assert len(stripe_api.transfers) == 1
    got = await summary(api)
    assert (got["balance"], got["pending_payout"], got["paid_out"]) == (20, 0, 100)
    await assert_books_balance(app_server)


async def test_an_abandoned_approval_is_finished_by_the_sweeper(app_server: RunningApp, stripe_api: FakeStripe) -> None:
    api, _, payout = await _stripe_payout(app_server, "po-ny")
    payouts: Payouts = app_server.app[PAYOUTS]
    # A node died right after claiming the approval (nothing sent, nothing recorded).
    long_ago = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    await payouts._col.update_one({"_id": payout["id"]}, {
        "$set": {"approving": {"token": "dead", "by": "po-admin", "at": long_ago}},
        "$inc": {"attempts": 1, "version": 1}})
    assert await payouts.sweep() == 1
    doc = await payouts.get(payout["id"])
    assert doc["status"] == "approved" and doc["decided_by"] == "po-admin" and doc["transfer_ref"].startswith("tr_")
    assert [r[1] for r in stripe_api.requests] == ["/v1/transfers", "/v1/transfers"]  # looked up, then sent
    assert (await summary(api))["paid_out"] == 100
    await assert_books_balance(app_server)


async def test_without_a_payout_provider_approval_is_unavailable(env: dict[str, str]) -> None:
    async with running_app(make_settings({**env, "PAIRLY_DEV_PAYMENTS": "false"})) as app:
        await earn(app, "po-ol", 200)
        _, payout = await request_payout(Api(app, "po-ol", **CREATOR), 100)
        status, body = await Api(app, "po-admin", **ADMIN).post(f"/api/admin/payouts/{payout['id']}/approve")
        assert status == 503 and body["error"]["code"] == "unavailable"
