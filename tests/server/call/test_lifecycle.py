"""Call lifecycle on one node: every way a call ends, who may do what, and `call:ended` exactly once
to every device of both parties — with the ledger, the records and the holds agreeing afterwards."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from billing import accounts
from server.app import CORE, LEDGER
from signaling.audit import audit_calls
from signaling.billing import hold_key
from tests.server.call.conftest import CALL, ended, error_code, fund, ok, until
from tests.support.apps import RunningApp


async def books_agree(app: RunningApp) -> None:
    report = await app.app[LEDGER].reconcile()
    assert report.ok, report
    audit = await audit_calls(app.app[CORE].db)
    assert audit.ok, audit.problems


def both_ended(a: Any, b: Any, call_id: str) -> bool:
    return bool(ended(a, call_id) and ended(b, call_id))


async def call_doc(app: RunningApp, call_id: str) -> dict[str, Any]:
    doc = await app.app[CORE].db["calls"].find_one({"_id": call_id})
    assert doc is not None
    return doc


async def ring(a: Any, b: Any, to: str, media: str = "audio") -> str:
    inv = await ok(a, "call:invite", {"to": to, "media": media})
    await until(lambda: [e for e in b.received(CALL, "call:incoming") if e["call_id"] == inv["call_id"]])
    return str(inv["call_id"])


async def test_a_completed_call_is_billed_per_minute_and_recorded(app_server, clients) -> None:
    ledger = app_server.app[LEDGER]
    await fund(ledger, "lc-ann", 100)
    a = await clients(app_server, "lc-ann", namespaces=[CALL])
    b = await clients(app_server, "lc-bob", namespaces=[CALL])
    call_id = await ring(a, b, "lc-bob")
    assert b.received(CALL, "call:incoming")[0] == {"call_id": call_id, "from": "lc-ann", "media": "audio"}
    # Ringing holds one minute: it cannot be spent elsewhere meanwhile.
    wallet = await ledger.wallet("lc-ann")
    assert (wallet.available, wallet.held) == (95, 5)
    acc = await ok(b, "call:accept", {"call_id": call_id})
    assert acc["rate_per_minute"] == 5
    await until(lambda: a.received(CALL, "call:accepted"))
    await until(lambda: len([e for e in a.received(CALL, "call:billed") if e["call_id"] == call_id]) >= 3)
    bills = [e for e in a.received(CALL, "call:billed") if e["call_id"] == call_id]
    assert [e["minute"] for e in bills[:3]] == [1, 2, 3]
    assert bills[0] == {"call_id": call_id, "minute": 1, "credits": 5, "balance": 95}
    assert not b.received(CALL, "call:billed")  # only the payer is told
    done = await ok(b, "call:end", {"call_id": call_id})
    e = done["call"]
    assert e["reason"] == "completed" and e["billed_minutes"] >= 3 and e["credits"] == 5 * e["billed_minutes"]
    await until(lambda: ended(a, call_id) and ended(b, call_id))
    await asyncio.sleep(0.3)
    assert ended(a, call_id) == [e] and ended(b, call_id) == [e]  # exactly once each
    wallet = await ledger.wallet("lc-ann")
    assert (wallet.available, wallet.held) == (100 - e["credits"], 0)
    assert error_code(await b.call(CALL, "call:end", {"call_id": call_id})) == "conflict"
    doc = await call_doc(app_server, call_id)
    assert doc["state"] == "ended" and doc["settled"] and doc["billed_minutes"] == e["billed_minutes"]
    await books_agree(app_server)


async def test_reject_cancel_and_ring_timeout_release_the_hold(app_server, clients) -> None:
    ledger = app_server.app[LEDGER]
    await fund(ledger, "lr-ann", 20)
    a = await clients(app_server, "lr-ann", namespaces=[CALL])
    b = await clients(app_server, "lr-bob", namespaces=[CALL])

    rejected = await ring(a, b, "lr-bob")
    assert error_code(await a.call(CALL, "call:reject", {"call_id": rejected})) == "conflict"  # caller cancels
    assert (await ok(b, "call:reject", {"call_id": rejected}))["call"]["reason"] == "rejected"

    cancelled = await ring(a, b, "lr-bob")
    assert error_code(await b.call(CALL, "call:cancel", {"call_id": cancelled})) == "conflict"
    assert (await ok(a, "call:cancel", {"call_id": cancelled}))["call"]["reason"] == "cancelled"
    assert error_code(await b.call(CALL, "call:accept", {"call_id": cancelled})) == "conflict"

    missed = await ring(a, b, "lr-bob", media="video")
    await until(lambda: ended(a, missed), timeout=8)  # PAIRLY_CALL_RING_TIMEOUT_S=3
    for call_id, reason in ((rejected, "rejected"), (cancelled, "cancelled"), (missed, "missed")):
        await until(functools.partial(both_ended, a, b, call_id))
        assert ended(a, call_id) == ended(b, call_id) == [
            {"call_id": call_id, "reason": reason, "duration_s": 0, "billed_minutes": 0, "credits": 0}]
        assert await ledger.balance(accounts.hold(hold_key(call_id))) == 0
    wallet = await ledger.wallet("lr-ann")
    assert (wallet.available, wallet.held) == (20, 0)
    await books_agree(app_server)


async def test_busy_when_either_party_is_already_in_a_call(app_server, clients) -> None:
    ledger = app_server.app[LEDGER]
    for user in ("lb-ann", "lb-cat"):
        await fund(ledger, user, 50)
    a = await clients(app_server, "lb-ann", namespaces=[CALL])
    b = await clients(app_server, "lb-bob", namespaces=[CALL])
    c = await clients(app_server, "lb-cat", namespaces=[CALL])
    first = await ring(a, b, "lb-bob")
    # The caller is ringing someone already: refused outright, nothing held.
    assert error_code(await a.call(CALL, "call:invite", {"to": "lb-cat", "media": "audio"})) == "busy"
    # The callee is ringing: the call exists and ends `busy` at once (both parties are told).
    second = await ok(c, "call:invite", {"to": "lb-bob", "media": "audio"})
    await until(lambda: ended(c, second["call_id"]))
    assert ended(c, second["call_id"])[0]["reason"] == "busy"
    assert not [e for e in b.received(CALL, "call:incoming") if e["call_id"] == second["call_id"]]
    assert (await ledger.wallet("lb-cat")).held == 0
    # Still busy once accepted; free again after the end.
    await ok(b, "call:accept", {"call_id": first})
    assert error_code(await b.call(CALL, "call:invite", {"to": "lb-cat", "media": "audio"})) == "busy"
    await ok(a, "call:end", {"call_id": first})
    again = await ring(c, b, "lb-bob")
    await ok(c, "call:cancel", {"call_id": again})
    await books_agree(app_server)


async def test_accept_on_one_device_ends_ringing_on_the_others(app_server, clients) -> None:
    await fund(app_server.app[LEDGER], "le-ann", 50)
    a = await clients(app_server, "le-ann", namespaces=[CALL])
    phone = await clients(app_server, "le-bob", namespaces=[CALL])
    laptop = await clients(app_server, "le-bob", namespaces=[CALL])
    call_id = await ring(a, phone, "le-bob")
    await until(lambda: laptop.received(CALL, "call:incoming"))
    await ok(phone, "call:accept", {"call_id": call_id})
    await until(lambda: ended(laptop, call_id))
    assert ended(laptop, call_id)[0]["reason"] == "answered_elsewhere"
    assert phone.received(CALL, "call:accepted") == [{"call_id": call_id}]
    assert not ended(phone, call_id) and not laptop.received(CALL, "call:accepted")
    # Signals now go to the device in the call only.
    await ok(a, "call:signal", {"call_id": call_id, "type": "offer", "payload": {"type": "offer", "sdp": "v=0 x"}})
    await until(lambda: phone.received(CALL, "call:signal"))
    await asyncio.sleep(0.2)
    assert not laptop.received(CALL, "call:signal")
    # The other device may not act in the call while the accepting one is connected.
    assert error_code(await laptop.call(CALL, "call:signal", {"call_id": call_id, "type": "answer",
                                                                "payload": {"sdp": "v=0"}})) == "forbidden"
    assert error_code(await laptop.call(CALL, "call:accept", {"call_id": call_id})) == "conflict"
    await ok(a, "call:end", {"call_id": call_id})
    await until(lambda: ended(phone, call_id) and len(ended(laptop, call_id)) == 2)
    await books_agree(app_server)


async def test_only_the_parties_act_and_unknown_calls_are_not_found(app_server, clients) -> None:
    await fund(app_server.app[LEDGER], "lf-ann", 50)
    a = await clients(app_server, "lf-ann", namespaces=[CALL])
    b = await clients(app_server, "lf-bob", namespaces=[CALL])
    eve = await clients(app_server, "lf-eve", namespaces=[CALL])
    call_id = await ring(a, b, "lf-bob")
    for event, extra in (("call:accept", {}), ("call:reject", {}), ("call:end", {}), ("call:cancel", {}),
                         ("call:media", {"media": "video"}),
                         ("call:signal", {"type": "offer", "payload": {"sdp": "v=0"}})):
        assert error_code(await eve.call(CALL, event, {"call_id": call_id, **extra})) == "forbidden", event
    unknown = "c" + "0" * 11 + "f" * 16
    assert error_code(await a.call(CALL, "call:end", {"call_id": unknown})) == "not_found"
    assert error_code(await a.call(CALL, "call:accept", {"call_id": call_id})) == "conflict"  # not the callee
    assert error_code(await a.call(CALL, "call:media", {"call_id": call_id, "media": "video"})) == "conflict"
    assert error_code(await b.call(CALL, "call:signal", {"call_id": call_id, "type": "answer",
                                                         "payload": {"sdp": "v=0"}})) == "conflict"
    assert error_code(await a.call(CALL, "call:invite", {"to": "lf-ann"})) == "invalid_payload"
    await ok(a, "call:cancel", {"call_id": call_id})
    await asyncio.sleep(0.2)
    assert not eve.received(CALL, "call:ended") and not eve.received(CALL, "call:signal")


async def test_blocked_pairs_cannot_call_and_a_block_ends_the_call(app_server, clients) -> None:
    await fund(app_server.app[LEDGER], "lk-ann", 50)
    a = await clients(app_server, "lk-ann", namespaces=["/chat", CALL])
    b = await clients(app_server, "lk-bob", namespaces=["/chat", CALL])
    call_id = await ring(a, b, "lk-bob")
    await ok(b, "call:accept", {"call_id": call_id})
    assert (await b.call("/chat", "user:block", {"user": "lk-ann"}))["ok"]
    await until(lambda: ended(a, call_id) and ended(b, call_id))
    assert ended(a, call_id)[0]["reason"] == "blocked"
    assert error_code(await a.call(CALL, "call:invite", {"to": "lk-bob", "media": "audio"})) == "blocked"
    assert error_code(await b.call(CALL, "call:invite", {"to": "lk-ann", "media": "audio"})) == "blocked"
    prep = await ok(a, "call:prepare", {"to": "lk-bob", "media": "audio"})
    assert prep["callee"] == {"reachable": False, "via": None, "reason": "blocked"}
    await books_agree(app_server)


async def test_invite_needs_one_affordable_minute(app_server, clients) -> None:
    ledger = app_server.app[LEDGER]
    await fund(ledger, "li-ann", 7)
    a = await clients(app_server, "li-ann", namespaces=[CALL])
    await clients(app_server, "li-bob", namespaces=[CALL])
    assert error_code(await a.call(CALL, "call:invite", {"to": "li-bob", "media": "video"})) == "insufficient_credits"
    wallet = await ledger.wallet("li-ann")
    assert (wallet.available, wallet.held) == (7, 0)
    assert await app_server.app[CORE].db["calls"].count_documents({"caller": "li-ann"}) == 0
    prep = await ok(a, "call:prepare", {"to": "li-bob", "media": "audio"})
    assert prep["rate_per_minute"] == 5 and prep["affordable_minutes"] == 1
    assert prep["callee"] == {"reachable": True, "via": "online"} and prep["ice_servers"] and prep["ttl"]
    # The audio call is affordable; the hold keeps the minute from being spent on messages meanwhile.
    call_id = (await ok(a, "call:invite", {"to": "li-bob", "media": "audio"}))["call_id"]
    assert (await ledger.wallet("li-ann")).available == 2
    await ok(a, "call:cancel", {"call_id": call_id})
    assert (await ledger.wallet("li-ann")).available == 7
