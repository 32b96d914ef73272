"""The ledger against the real store: exactness under concurrency, idempotency, holds, reconciliation."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from billing.errors import InsufficientCredits
from billing.ledger import Ledger, ensure_indexes


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


async def test_reconcile_reports_a_tampered_wallet(ledger: Ledger, mongo_url: str) -> None:
    await ledger.wallet("hy")
    await ledger._wallets.update_one({"_id": "hy"}, {"$inc": {"balance": 5}})
    report = await ledger.reconcile()
    assert [d.user for d in report.discrepancies] == ["hy"]
    await ledger._wallets.update_one({"_id": "hy"}, {"$inc": {"balance": -5}})


async def test_recovery_settles_entries_left_pending_by_a_crash(ledger: Ledger) -> None:
    await ledger.wallet("io")
    # Simulate the two crash windows by hand: an entry applied to the wallet but never marked, and
    # an entry never applied. Recovery settles both by the wallet's record.
    now = (await ledger.entries("io"))[0][0].created_at
    await ledger._entries.insert_many([
        {"_id": "k:applied", "user": "io", "delta": -4, "held_delta": 0, "kind": "message", "ref": None,
         "state": "pending", "created_at": now},
        {"_id": "k:lost", "user": "io", "delta": -3, "held_delta": 0, "kind": "message", "ref": None,
         "state": "pending", "created_at": now},
    ])
    await ledger._wallets.update_one({"_id": "io"}, {"$inc": {"balance": -4, "available": -4},
                                                     "$push": {"applied": ["k:applied", -4, 0]}})
    assert not (await ledger.reconcile(settle=False)).ok
    assert await ledger.recover(min_age_s=0) == 2
    assert (await ledger.get_entry("k:applied")).balance_after == 6  # type: ignore[union-attr]
    assert await ledger.get_entry("k:lost") is None


async def test_audit_settles_only_what_is_decided(ledger: Ledger) -> None:
    await ledger.wallet("ju")
    now = (await ledger.entries("ju"))[0][0].created_at
    # Young pending entries, as another node leaves them mid-batch: one already applied to the
    # wallet, one not yet. audit() settles the first and leaves the second alone (it may still land).
    await ledger._entries.insert_many([
        {"_id": "k:young-applied", "user": "ju", "delta": -2, "held_delta": 0, "kind": "message", "ref": None,
         "state": "pending", "created_at": now},
        {"_id": "k:young-inflight", "user": "ju", "delta": -1, "held_delta": 0, "kind": "message", "ref": None,
         "state": "pending", "created_at": now.replace(year=now.year + 1)},
    ])
    await ledger._wallets.update_one({"_id": "ju"}, {"$inc": {"balance": -2, "available": -2},
                                                     "$push": {"applied": ["k:young-applied", -2, 0]}})
    report = await ledger.audit()
    assert report.ok and report.pending_resolved == 1
    assert (await ledger.get_entry("k:young-applied")).balance_after == 8  # type: ignore[union-attr]
    assert (await ledger._entries.find_one({"_id": "k:young-inflight"}))["state"] == "pending"  # type: ignore[index]
    await ledger._entries.delete_one({"_id": "k:young-inflight"})
