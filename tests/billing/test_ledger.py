"""The ledger against the real store: exactness under concurrency, idempotency, holds, reconciliation."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from billing import accounts
from billing.errors import InsufficientCredits, OperationInFlight
from billing.ledger import Ledger, ensure_indexes
from config.errors import InvalidPayload


@pytest.fixture
async def ledger(mongo_url: str) -> AsyncIterator[Ledger]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    db = client[f"t_{uuid.uuid4().hex[:10]}"]
    await ensure_indexes(db)
    led = Ledger(db, signup_bonus=10)
    await led.start()
    yield led
    await led.stop()
    report = await led.reconcile()
    assert report.ok, report.discrepancies
    await client.close()


async def test_signup_bonus_granted_once(ledger: Ledger) -> None:
    wallets = await asyncio.gather(*(ledger.wallet("ann") for _ in range(5)))
    assert all(w.balance == 10 for w in wallets)
    entries, _ = await ledger.entries("ann")
    assert [(e.kind, e.delta, e.balance_after) for e in entries] == [("signup_bonus", 10, 10)]


async def test_spend_and_credit_record_balance_after(ledger: Ledger) -> None:
    e1 = await ledger.credit("bo", 40, "stripe:pi_1", "purchase", "pi_1")
    e2 = await ledger.spend("bo", 15, "msg:1", "message")
    assert (e1.balance_after, e2.balance_after) == (50, 35)
    assert (await ledger.wallet("bo")).balance == 35


async def test_same_key_applies_once_and_returns_first_result(ledger: Ledger) -> None:
    results = await asyncio.gather(*(ledger.spend("cy", 3, "msg:dup", "message") for _ in range(10)))
    assert {r.balance_after for r in results} == {7}
    assert sum(not r.replayed for r in results) == 1
    again = await ledger.spend("cy", 3, "msg:dup", "message")
    assert again.replayed and again.balance_after == 7
    assert (await ledger.wallet("cy")).balance == 7


async def test_refused_spend_changes_nothing(ledger: Ledger) -> None:
    with pytest.raises(InsufficientCredits):
        await ledger.spend("di", 11, "msg:big", "message")
    assert (await ledger.wallet("di")).balance == 10
    assert await ledger.get_entry("msg:big") is None
    # The key is free again: a later attempt with enough credits goes through.
    await ledger.credit("di", 5, "admin:1", "admin")
    assert (await ledger.spend("di", 11, "msg:big", "message")).balance_after == 4


async def test_thousand_concurrent_spends_never_overspend(ledger: Ledger) -> None:
    await ledger.credit("ed", 490, "seed:ed", "purchase")  # 500 with the bonus
    results = await asyncio.gather(
        *(ledger.spend("ed", 1, f"msg:{i}", "message") for i in range(1000)), return_exceptions=True
    )
    ok = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, InsufficientCredits)]
    assert len(ok) == 500 and len(refused) == 500
    assert sorted(r.balance_after for r in ok) == list(range(500))
    assert (await ledger.wallet("ed")).balance == 0
    assert ledger.batches < 1000  # group commit actually grouped


async def test_adjust_may_go_negative(ledger: Ledger) -> None:
    await ledger.spend("fi", 10, "msg:x", "message")
    entry = await ledger.adjust("fi", -30, "stripe:refund:1", "refund")
    assert entry.balance_after == -30
    with pytest.raises(InsufficientCredits):
        await ledger.spend("fi", 1, "msg:y", "message")


async def test_hold_capture_release(ledger: Ledger) -> None:
    await ledger.credit("gu", 90, "seed:gu", "purchase")  # 100
    hold = await ledger.hold("gu", 30, "call:c1:hold", ref="c1")
    assert (hold.balance_after, hold.held_after) == (100, 30)
    with pytest.raises(InsufficientCredits):
        await ledger.spend("gu", 71, "msg:1", "message")  # only 70 available
    m1 = await ledger.capture("call:c1:hold", 10, "call:c1:1")
    assert (m1.balance_after, m1.held_after) == (90, 20)
    with pytest.raises(InsufficientCredits):
        await ledger.capture("call:c1:hold", 25, "call:c1:2")
    replay = await ledger.capture("call:c1:hold", 10, "call:c1:1")
    assert replay.replayed and replay.balance_after == 90
    released = await ledger.release("call:c1:hold")
    assert released is not None and released.held_after == 0
    assert await ledger.release("call:c1:hold") is None
    wallet = await ledger.wallet("gu")
    assert (wallet.balance, wallet.held, wallet.available) == (90, 0, 90)


async def test_reconcile_reports_a_tampered_account(ledger: Ledger) -> None:
    await ledger.wallet("hy")
    await ledger._accounts.update_one({"_id": "wallet:hy"}, {"$inc": {"balance": 5}})
    report = await ledger.reconcile()
    assert [d.account for d in report.discrepancies] == ["wallet:hy"] and report.total == 5
    await ledger._accounts.update_one({"_id": "wallet:hy"}, {"$inc": {"balance": -5}})
    assert (await ledger.reconcile()).ok


async def test_reconcile_reports_an_unbalanced_transfer(ledger: Ledger) -> None:
    await ledger.wallet("iv")
    await ledger._entries.update_one({"_id": "signup:iv"}, {"$set": {"p.1.1": -9}})
    report = await ledger.reconcile()
    assert report.unbalanced == ["signup:iv"] and not report.ok
    await ledger._entries.update_one({"_id": "signup:iv"}, {"$set": {"p.1.1": -10}})


async def test_every_transfer_balances_and_accounts_sum_to_zero(ledger: Ledger) -> None:
    await ledger.credit("ka", 7, "stripe:pi_ka", "purchase", source=accounts.clearing("stripe"))
    await ledger.spend("ka", 3, "msg:ka:1", "message")
    await ledger.spend("ka", 5, "msg:ka:2", "message", payee=accounts.earnings("star"), share_pct=60)
    await ledger.adjust("ka", -20, "stripe:refund:re_1", "refund", counter=accounts.clearing("stripe"))
    report = await ledger.reconcile()
    assert report.ok and report.total == 0
    assert report.totals["wallet"] == 10 + 7 - 3 - 5 - 20
    assert await ledger.balance(accounts.earnings("star")) == 3
    assert await ledger.balance(accounts.PLATFORM_REVENUE) == 3 + 2
    assert await ledger.balance(accounts.clearing("stripe")) == -7 + 20


async def test_creator_share_carry_rule_never_creates_or_loses_a_credit(ledger: Ledger) -> None:
    await ledger.credit("fan", 1000, "seed:fan", "purchase")
    paid = 0
    for n, amount in enumerate([1, 1, 1, 3, 7, 1, 2, 5, 1, 1]):
        entry = await ledger.spend("fan", amount, f"msg:fan:{n}", "message",
                                   payee=accounts.earnings("cre"), share_pct=60)
        paid += amount
        parts = {p.account: p.delta for p in entry.postings}
        assert sum(parts.values()) == 0
        assert await ledger.balance(accounts.earnings("cre")) == paid * 60 // 100
    assert await ledger.balance(accounts.PLATFORM_REVENUE) == paid - paid * 60 // 100


async def test_a_key_reused_for_another_operation_is_refused(ledger: Ledger) -> None:
    await ledger.spend("lo", 2, "msg:lo", "message")
    with pytest.raises(OperationInFlight):
        await ledger.spend("lo", 3, "msg:lo", "message")


async def test_capture_pays_the_payee_out_of_the_hold(ledger: Ledger) -> None:
    await ledger.credit("mo", 40, "seed:mo", "purchase")  # 50
    await ledger.hold("mo", 20, "call:m1:hold")
    e = await ledger.capture("call:m1:hold", 5, "call:m1:1", "call_minute", payee=accounts.earnings("vip"),
                             share_pct=60)
    assert (e.balance_after, e.held_after, e.delta) == (45, 15, -5)
    assert await ledger.balance(accounts.earnings("vip")) == 3
    assert await ledger.hold_remaining("call:m1:hold") == 15
    await ledger.release("call:m1:hold")
    assert (await ledger.wallet("mo")).balance == 45


async def test_two_ledgers_on_one_store_never_overspend(mongo_url: str) -> None:
    """Two nodes' ledgers writing the same wallets and creator at once: version checks, no overspend."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    db = client[f"t_{uuid.uuid4().hex[:10]}"]
    await ensure_indexes(db)
    a, b = Ledger(db, signup_bonus=100), Ledger(db, signup_bonus=100)
    await a.start()
    await b.start()
    try:
        calls = [(a if i % 2 else b).spend(f"u{i % 3}", 1, f"msg:{i}", "message",
                                          payee=accounts.earnings("star"), share_pct=60) for i in range(400)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        ok = [r for r in results if not isinstance(r, BaseException)]
        assert len(ok) == 300, [r for r in results if isinstance(r, BaseException)][:3]
        assert all(isinstance(r, InsufficientCredits) for r in results if isinstance(r, BaseException))
        for u in ("u0", "u1", "u2"):
            assert (await a.wallet(u)).balance == 0
        assert await a.balance(accounts.earnings("star")) == 300 * 60 // 100 or \
            await a.balance(accounts.earnings("star")) >= 300 * 60 // 100 - accounts.SHARDS
        report = await a.reconcile()
        assert report.ok, report
    finally:
        await a.stop()
        await b.stop()
        await client.close()


async def test_a_refusal_is_never_decided_on_another_nodes_stale_state(mongo_url: str) -> None:
    """Node A knows a wallet as empty; node B then credits it and places a hold on it. A spend and a
    capture on node A must see what B did, not be refused on A's cached state."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    db = client[f"t_{uuid.uuid4().hex[:10]}"]
    await ensure_indexes(db)
    a, b = Ledger(db), Ledger(db)
    await a.start()
    await b.start()
    try:
        assert (await a.wallet("st-ann")).balance == 0  # A caches the empty wallet
        with pytest.raises(InsufficientCredits):
            await a.spend("st-ann", 5, "msg:early", "message")
        await b.credit("st-ann", 100, "buy:1", "purchase")  # on the other node
        entry = await a.spend("st-ann", 5, "msg:late", "message")
        assert entry.postings[0].balance_after == 95
        await b.hold("st-ann", 20, "call:c1:hold", ref="c1")  # the caller's node holds a minute...
        captured = await a.capture("call:c1:hold", 20, "call:c1:1", "call_minute")  # ...the callee's captures it
        assert captured.key == "call:c1:1"
        assert (await b.wallet("st-ann")).balance == 75
        assert (await a.reconcile()).ok
    finally:
        await a.stop()
        await b.stop()
        await client.close()


async def test_a_resend_after_the_credits_are_gone_returns_the_original(ledger: Ledger) -> None:
    first = await ledger.spend("rs-ann", 10, "msg:rs-1", "message")  # the whole signup bonus
    assert (await ledger.wallet("rs-ann")).balance == 0
    again = await ledger.spend("rs-ann", 10, "msg:rs-1", "message")  # a client resending it
    assert again.key == first.key and again.replayed and again.postings == first.postings
    with pytest.raises(InsufficientCredits):
        await ledger.spend("rs-ann", 10, "msg:rs-2", "message")
    assert (await ledger.wallet("rs-ann")).balance == 0 and (await ledger.reconcile()).ok


async def test_a_transfer_the_store_cannot_hold_fails_alone(ledger: Ledger) -> None:
    """One unstorable document (a lone surrogate) in a batch: only its transfer fails."""
    await ledger.credit("po", 90, "seed:po", "purchase")  # 100
    bad = {"_id": "m-bad", "text": "\ud800"}

    async def good(n: int) -> Any:
        return await ledger.spend("po", 1, f"msg:po:{n}", "message", attach=(("t_attach", {"_id": f"m{n}"}),))

    results = await asyncio.gather(
        *(good(n) for n in range(10)),
        ledger.spend("po", 1, "msg:po:bad", "message", attach=(("t_attach", bad),)),
        *(good(n) for n in range(10, 20)),
        return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(failed) == 1 and isinstance(failed[0], InvalidPayload)
    assert (await ledger.wallet("po")).balance == 100 - 20
    assert await ledger.get_entry("msg:po:bad") is None
