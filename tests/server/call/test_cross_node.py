"""Calls across nodes sharing Redis and the store, and calls surviving crashes: a node killed with
SIGKILL mid-call (another takes the call over: billing continues, no minute twice, at most one
unpaid), and a single node without Redis restarted mid-call (settled at start-up)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from billing.ledger import Ledger
from server.auth import mint_token
from signaling.audit import audit_calls
from signaling.billing import minutes_started
from signaling.model import ts
from tests.conftest import TEST_SECRET
from tests.server.call.conftest import CALL, billed, ended, error_code, ok, until
from tests.support.apps import NodeProcess
from tests.support.clients import Client, connect

ENV = {"PAIRLY_RATE_LIMITS": "*=1000/1", "PAIRLY_SIGNUP_BONUS": "100", "PAIRLY_CALL_BILLING_INTERVAL_S": "1",
       "PAIRLY_CALL_RING_TIMEOUT_S": "10", "PAIRLY_CALL_RECONNECT_GRACE_S": "8", "PAIRLY_CALL_SWEEP_S": "0.5",
       "PAIRLY_NODE_TTL_S": "2"}


@pytest.fixture
async def db(base_env: dict[str, str]) -> AsyncIterator[Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(base_env["MONGO_URL"], tz_aware=True)
    yield client[base_env["MONGO_DB"]]
    await client.close()


async def join(url: str, user: str) -> Client:
    return await connect(url, user, mint_token(TEST_SECRET, user), [CALL])


async def books_agree(db: Any) -> None:
    assert (await Ledger(db).reconcile()).ok
    audit = await audit_calls(db)
    assert audit.ok, audit.problems


async def test_caller_and_callee_on_different_nodes(nodes, db) -> None:
    n0, n1 = nodes(2, **ENV)
    ann = await join(n0.url, "xn-ann")
    phone = await join(n1.url, "xn-bob")
    laptop = await join(n0.url, "xn-bob")
    try:
        call_id = (await ok(ann, "call:invite", {"to": "xn-bob", "media": "audio"}))["call_id"]
        await until(lambda: phone.received(CALL, "call:incoming") and laptop.received(CALL, "call:incoming"))
        # The first offer goes to every ringing device, on both nodes.
        offer = {"call_id": call_id, "type": "offer", "payload": {"sdp": "v=0 offer"}}
        await ok(ann, "call:signal", offer)
        await until(lambda: phone.received(CALL, "call:signal") and laptop.received(CALL, "call:signal"))
        await ok(phone, "call:accept", {"call_id": call_id})
        await until(lambda: ended(laptop, call_id) and ann.received(CALL, "call:accepted"))
        assert ended(laptop, call_id)[0]["reason"] == "answered_elsewhere"
        # Relay across nodes, to the accepting device only.
        await ok(phone, "call:signal", {"call_id": call_id, "type": "answer", "payload": {"sdp": "v=0 answer"}})
        await until(lambda: ann.received(CALL, "call:signal"))
        await ok(ann, "call:signal", {"call_id": call_id, "type": "ice", "payload": {"candidate": "candidate:1"}})
        await until(lambda: len(phone.received(CALL, "call:signal")) == 2)
        await asyncio.sleep(0.3)
        assert len(laptop.received(CALL, "call:signal")) == 1
        # The callee's node bills; the caller, elsewhere, is told.
        await until(lambda: len(billed(ann, call_id)) >= 2)
        # Ended from the node that does not own the call.
        await ok(ann, "call:end", {"call_id": call_id})
        await until(lambda: ended(ann, call_id) and ended(phone, call_id) and len(ended(laptop, call_id)) == 2)
        await asyncio.sleep(1.5)  # a late tick on the owner must not charge or end it again
        assert len(ended(ann, call_id)) == 1 and len(ended(phone, call_id)) == 1
        e = ended(ann, call_id)[0]
        assert e["reason"] == "completed" and e["credits"] == 5 * e["billed_minutes"]
        assert [b["minute"] for b in billed(ann, call_id)] == list(range(1, e["billed_minutes"] + 1))
    finally:
        for c in (ann, phone, laptop):
            await c.close()
    await books_agree(db)


async def test_the_ticking_node_killed_mid_call_another_takes_over(nodes, db) -> None:
    n0, n1 = nodes(2, **ENV)
    ann = await join(n0.url, "xk-ann")
    bob = await join(n1.url, "xk-bob")
    call_id = (await ok(ann, "call:invite", {"to": "xk-bob", "media": "audio"}))["call_id"]
    await until(lambda: bob.received(CALL, "call:incoming"))
    await ok(bob, "call:accept", {"call_id": call_id})  # n1 owns the call
    await until(lambda: len(billed(ann, call_id)) >= 2)
    n1.signal(signal.SIGKILL)
    await asyncio.to_thread(n1.wait, 10)
    killed_at = len(billed(ann, call_id))
    bob2 = await join(n0.url, "xk-bob")  # the callee's app reconnects to the surviving node
    try:
        renegotiate = {"call_id": call_id, "type": "renegotiate", "payload": {"sdp": "v=0 after"}}

        async def rebound() -> bool:
            ack = await bob2.call(CALL, "call:signal", renegotiate)
            if ack["ok"]:
                return True
            assert error_code(ack) == "forbidden"  # until the dead node's sockets stop counting
            await asyncio.sleep(0.3)
            return False

        deadline = asyncio.get_running_loop().time() + 8
        while not await rebound():
            assert asyncio.get_running_loop().time() < deadline
        await until(lambda: ann.received(CALL, "call:signal"))
        # Billing goes on from the surviving node.
        await until(lambda: len(billed(ann, call_id)) >= killed_at + 3, timeout=15)
        await ok(ann, "call:end", {"call_id": call_id})
        await until(lambda: ended(ann, call_id) and ended(bob2, call_id))
    finally:
        await ann.close()
        await bob2.close()
    e = ended(ann, call_id)[0]
    minutes = [b["minute"] for b in billed(ann, call_id)]
    assert minutes == sorted(set(minutes)), "a minute was billed twice"
    assert set(minutes) == set(range(1, e["billed_minutes"] + 1))
    doc = await db["calls"].find_one({"_id": call_id})
    started = minutes_started(ts(doc["accepted_at"]), ts(doc["ended_at"]), 1.0)
    assert e["billed_minutes"] >= started - 1, "more than one started minute unpaid"
    await books_agree(db)


async def test_a_single_node_restarted_mid_call_settles_it_at_start_up(base_env, db) -> None:
    env = {**base_env, **ENV}
    node = NodeProcess(env, "solo")
    node.wait_ready()
    try:
        ann = await join(node.url, "xs-ann")
        bob = await join(node.url, "xs-bob")
        call_id = (await ok(ann, "call:invite", {"to": "xs-bob", "media": "video"}))["call_id"]
        await until(lambda: bob.received(CALL, "call:incoming"))
        await ok(bob, "call:accept", {"call_id": call_id})
        await until(lambda: len(billed(ann, call_id)) >= 2)
        node.signal(signal.SIGKILL)
        await asyncio.to_thread(node.wait, 10)
        charged_before = len(billed(ann, call_id))
        await ann.close()
        await bob.close()
    finally:
        node.stop()
    again = NodeProcess(env, "solo-again")
    again.wait_ready()
    try:
        doc = await until_settled(db, call_id)
        assert doc["state"] == "ended" and doc["reason"] == "disconnected"
        # Only minutes that began before the crash; the one being charged at the kill may or may not be.
        assert charged_before <= doc["billed_minutes"] <= charged_before + 1
        assert doc["credits"] == 10 * doc["billed_minutes"]
        assert (await Ledger(db).wallet("xs-ann")).held == 0
        # Both are free to call again.
        ann = await join(again.url, "xs-ann")
        await join(again.url, "xs-bob")
        fresh = await ok(ann, "call:invite", {"to": "xs-bob", "media": "audio"})
        await ok(ann, "call:cancel", {"call_id": fresh["call_id"]})
        await ann.close()
    finally:
        again.stop()
    await books_agree(db)


async def until_settled(db: Any, call_id: str) -> dict[str, Any]:
    for _ in range(100):
        doc = await db["calls"].find_one({"_id": call_id})
        if doc and doc.get("settled"):
            return dict(doc)
        await asyncio.sleep(0.1)
    raise AssertionError("not settled")


async def test_an_end_catches_up_on_minutes_the_owner_never_ticked(nodes, db) -> None:
    # The owner is frozen (SIGSTOP: alive to its peers, ticking nothing) while minutes go by; the
    # other node ends the call and charges every minute that began, in runs per rate; once thawed,
    # the owner's late ticks hit the fence and charge nothing more.
    n0, n1 = nodes(2, **{**ENV, "PAIRLY_CALL_BILLING_INTERVAL_S": "0.5", "PAIRLY_NODE_TTL_S": "30",
                         "PAIRLY_SIGNUP_BONUS": "1000"})
    ann = await join(n0.url, "xc-ann")
    bob = await join(n1.url, "xc-bob")
    try:
        call_id = (await ok(ann, "call:invite", {"to": "xc-bob", "media": "audio"}))["call_id"]
        await until(lambda: bob.received(CALL, "call:incoming"))
        await ok(bob, "call:accept", {"call_id": call_id})  # n1 owns the call
        await until(lambda: len(billed(ann, call_id)) >= 2)
        n1.signal(signal.SIGSTOP)
        try:
            switched = await ok(ann, "call:media", {"call_id": call_id, "media": "video"})
            await asyncio.sleep(3)  # ~6 minutes begin unticked, audio then video
            await ok(ann, "call:end", {"call_id": call_id})
            await until(lambda: ended(ann, call_id))
        finally:
            n1.signal(signal.SIGCONT)
        await until(lambda: ended(bob, call_id))
        await asyncio.sleep(1.5)  # the thawed owner's overdue ticks run now
    finally:
        await ann.close()
        await bob.close()
    e = ended(ann, call_id)[0]
    assert len(ended(ann, call_id)) == 1 and e["reason"] == "completed"
    doc = await db["calls"].find_one({"_id": call_id})
    begun = minutes_started(ts(doc["accepted_at"]), ts(doc["ended_at"]), 0.5)
    assert e["billed_minutes"] == begun >= len(billed(ann, call_id)) + 4
    entries = [x async for x in db["ledger"].find({"k": "call_minute", "meta.call": call_id})]
    rates = {x["meta"]["minute"]: x["meta"]["credits"] for x in entries}
    assert sorted(rates) == list(range(1, begun + 1))
    assert all(rates[m] == (10 if m >= switched["from_minute"] else 5) for m in rates)
    assert e["credits"] == sum(rates.values())
    await books_agree(db)
