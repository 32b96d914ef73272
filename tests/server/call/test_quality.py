"""`call:stats` (validation, bounds, aggregation into the call record per minute) and quality refunds:
a minute both parties found unusable is refunded once through the ledger, a minute only one party
found bad is not, and nothing is refunded when the feature is off."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from server.app import CALLS, CORE, LEDGER
from signaling.quality import REFUND_KIND, refund_key
from tests.server.call.conftest import CALL, billed, call_env, ended, error_code, fund, ok, until
from tests.server.call.test_billing import books_agree, start_call

POOR = {"rtt_ms": 900, "jitter_ms": 100, "loss_pct": 20}  # MOS 1.0
GOOD = {"rtt_ms": 40, "jitter_ms": 2, "loss_pct": 0, "bitrate_kbps": 48}  # MOS ~4.4
REFUND_ENV = {"PAIRLY_RATE_LIMITS": "*=1000/1,call:stats=1000/1", "PAIRLY_CALL_BILLING_INTERVAL_S": "2",
              "PAIRLY_CALL_QUALITY_REFUND": "true", "PAIRLY_CALL_QUALITY_MIN_SAMPLES": "2",
              "PAIRLY_CALL_QUALITY_GRACE_S": "0", "PAIRLY_CALL_MAX_STATS_PER_PARTY": "40"}


@pytest.fixture
def env(base_env: dict[str, str]) -> dict[str, str]:
    return call_env(base_env, **REFUND_ENV)


class Samples:
    """What each party's samples were, per minute, as the acks said."""

    def __init__(self) -> None:
        self.by_minute: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))

    async def send(self, client: Any, role: str, call_id: str, metrics: dict[str, Any]) -> dict[str, Any]:
        ack = await ok(client, "call:stats", {"call_id": call_id, **metrics})
        if ack["mos"] is not None:
            self.by_minute[ack["minute"]][role].append(ack["mos"])
        return ack

    def poor_minutes(self, floor: float = 2.5, min_samples: int = 2) -> set[int]:
        """Minutes the rule must refund: both parties ≥ min_samples scores, most of them below floor."""
        return {m for m, roles in self.by_minute.items()
                if all(len(roles[r]) >= min_samples and 2 * sum(s < floor for s in roles[r]) > len(roles[r])
                       for r in ("caller", "callee"))}


async def both_poor_in_one_minute(a: Any, b: Any, call_id: str, samples: Samples) -> None:
    for _ in range(20):  # a minute is 2 s: a few rounds always put two of each in one minute
        await samples.send(a, "caller", call_id, POOR)
        await samples.send(b, "callee", call_id, POOR)
        if samples.poor_minutes():
            return
    raise AssertionError("no minute collected two poor samples from each party")


async def test_a_minute_both_parties_found_unusable_is_refunded_once(app_server, clients) -> None:
    ledger, db = app_server.app[LEDGER], app_server.app[CORE].db
    await fund(ledger, "qr-ann", 100)
    a, b, call_id = await start_call(app_server, clients, "qr-ann", "qr-bob")
    samples = Samples()
    await both_poor_in_one_minute(a, b, call_id, samples)
    expected = samples.poor_minutes()
    await ok(a, "call:end", {"call_id": call_id})
    e = (await until(lambda: ended(a, call_id)))[0]

    def refunds() -> list[dict[str, Any]]:
        return [x for x in billed(a, call_id) if x.get("refunded")]

    await until(lambda: {x["minute"] for x in refunds()} >= expected)
    # Judge every minute once more, as a node taking over would: nothing moves twice.
    await app_server.app[CALLS].quality.judge(call_id, list(range(1, e["billed_minutes"] + 1)))
    charges = {x["minute"]: x["credits"] for x in billed(a, call_id) if not x.get("refunded")}
    assert sorted(x["minute"] for x in refunds()) == sorted(expected)
    assert all(x["credits"] == -charges[x["minute"]] and x["credits"] < 0 for x in refunds())
    entries = await db["ledger"].find({"k": REFUND_KIND, "ref": call_id}).to_list()
    assert sorted(x["_id"] for x in entries) == sorted(refund_key(call_id, m) for m in expected)
    wallet = await ledger.wallet("qr-ann")
    assert wallet.balance == 100 - e["credits"] + sum(charges[m] for m in expected)
    assert refunds()[-1]["balance"] == wallet.balance
    doc = await db["calls"].find_one({"_id": call_id})
    assert sorted(r["minute"] for r in doc["quality"]["refunds"]) == sorted(expected)
    assert all("MOS below 2.5" in r["reason"] for r in doc["quality"]["refunds"])
    # The payer's history shows the per-minute figures and the refunded minutes.
    history, _ = await app_server.app[CALLS].history("qr-ann", None, 5)
    shown = history[0]["quality"]
    assert sorted(r["minute"] for r in shown["refunds"]) == sorted(expected)
    poor = [row for row in shown["minutes"] if row["minute"] in expected]
    assert poor and all(row["caller"]["mos"]["avg"] < 2.5 and row["callee"]["mos"]["avg"] < 2.5 for row in poor)
    await books_agree(app_server)


async def test_a_minute_only_one_party_found_bad_is_not_refunded(app_server, clients) -> None:
    ledger, db = app_server.app[LEDGER], app_server.app[CORE].db
    await fund(ledger, "qg-ann", 100)
    a, b, call_id = await start_call(app_server, clients, "qg-ann", "qg-bob")
    samples = Samples()
    for _ in range(4):
        await samples.send(a, "caller", call_id, POOR)
        await samples.send(b, "callee", call_id, GOOD)
    assert not samples.poor_minutes()
    await ok(a, "call:end", {"call_id": call_id})
    e = (await until(lambda: ended(a, call_id)))[0]
    await app_server.app[CALLS].quality.judge(call_id, list(range(1, e["billed_minutes"] + 1)))
    assert not [x for x in billed(a, call_id) if x.get("refunded")]
    assert await db["ledger"].count_documents({"k": REFUND_KIND}) == 0
    assert (await ledger.wallet("qg-ann")).balance == 100 - e["credits"]
    await books_agree(app_server)


async def test_stats_are_validated_and_bounded(app_server, clients) -> None:
    ledger, db = app_server.app[LEDGER], app_server.app[CORE].db
    await fund(ledger, "qv-ann", 100)
    a = await clients(app_server, "qv-ann", namespaces=[CALL])
    b = await clients(app_server, "qv-bob", namespaces=[CALL])
    eve = await clients(app_server, "qv-eve", namespaces=[CALL])
    call_id = (await ok(a, "call:invite", {"to": "qv-bob", "media": "audio"}))["call_id"]
    await until(lambda: b.received(CALL, "call:incoming"))
    assert error_code(await a.call(CALL, "call:stats", {"call_id": call_id, **GOOD})) == "conflict"  # ringing
    await ok(b, "call:accept", {"call_id": call_id})
    bad = [
        "nope", {"rtt_ms": 10}, {"call_id": "c123"}, {"call_id": call_id},
        {"call_id": call_id, "rtt_ms": -1}, {"call_id": call_id, "rtt_ms": "10"},
        {"call_id": call_id, "rtt_ms": True}, {"call_id": call_id, "loss_pct": 101},
        {"call_id": call_id, "jitter_ms": float("inf")}, {"call_id": call_id, "rtt_ms": 10, "cpu": 3},
    ]
    for payload in bad:
        assert error_code(await a.call(CALL, "call:stats", payload)) == "invalid_payload", payload
    assert error_code(await eve.call(CALL, "call:stats", {"call_id": call_id, **GOOD})) == "forbidden"
    unknown = call_id[:-4] + ("0000" if not call_id.endswith("0000") else "1111")
    assert error_code(await a.call(CALL, "call:stats", {"call_id": unknown, **GOOD})) == "not_found"
    doc = await db["calls"].find_one({"_id": call_id})
    assert "samples" not in doc["quality"]  # nothing refused was stored
    for _ in range(40):
        await ok(a, "call:stats", {"call_id": call_id, **GOOD})
    assert error_code(await a.call(CALL, "call:stats", {"call_id": call_id, **GOOD})) == "rate_limited"
    await ok(b, "call:stats", {"call_id": call_id, **GOOD})  # the bound is per party
    doc = await db["calls"].find_one({"_id": call_id})
    assert doc["quality"]["samples"] == {"caller": 40, "callee": 1}
    await ok(a, "call:end", {"call_id": call_id})
    assert error_code(await b.call(CALL, "call:stats", {"call_id": call_id, **GOOD})) == "conflict"
    await books_agree(app_server)
