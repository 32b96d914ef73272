"""Call quality across two nodes sharing Redis and the store: stats from parties on different nodes
aggregate into one call record and a poor minute is refunded once; a probe run on one node is seen
by `call:prepare` on the other; the per-user probe rate holds across nodes."""

from __future__ import annotations

from typing import Any

from billing.ledger import Ledger
from signaling.quality import REFUND_KIND, refund_key
from tests.server.call.conftest import CALL, billed, ended, error_code, ok, until
from tests.server.call.probe_support import LOOPBACK_ENV, run_probe
from tests.server.call.test_cross_node import ENV, books_agree, db, join  # noqa: F401 - db is a fixture
from tests.server.call.test_quality import REFUND_ENV, Samples, both_poor_in_one_minute
from tests.support.webrtc import ProbePeer

NODE_ENV = {**ENV, **REFUND_ENV, **LOOPBACK_ENV,
            "PAIRLY_RATE_LIMITS": "*=1000/1,call:stats=1000/1,call:probe=2/60"}


async def test_stats_from_both_nodes_and_one_refund(nodes, db) -> None:  # noqa: F811
    n0, n1 = nodes(2, **NODE_ENV)
    ann = await join(n0.url, "qn-ann")
    bob = await join(n1.url, "qn-bob")
    try:
        await Ledger(db).credit("qn-ann", 100, "test-fund:qn-ann", "test_credit")
        call_id = (await ok(ann, "call:invite", {"to": "qn-bob", "media": "audio"}))["call_id"]
        await until(lambda: bob.received(CALL, "call:incoming"))
        await ok(bob, "call:accept", {"call_id": call_id})  # node1 owns the call; ann is on node0
        samples = Samples()
        await both_poor_in_one_minute(ann, bob, call_id, samples)
        expected = samples.poor_minutes()
        await ok(ann, "call:end", {"call_id": call_id})
        e = (await until(lambda: ended(ann, call_id)))[0]

        def refunds() -> list[dict[str, Any]]:
            return [x for x in billed(ann, call_id) if x.get("refunded")]

        await until(lambda: {x["minute"] for x in refunds()} >= expected)
        doc = await db["calls"].find_one({"_id": call_id})
        for minute in expected:
            bucket = doc["quality"]["minutes"][str(minute)]
            assert bucket["caller"]["poor"] >= 2 and bucket["callee"]["poor"] >= 2
        entries = await db["ledger"].find({"k": REFUND_KIND, "ref": call_id}).to_list()
        assert sorted(x["_id"] for x in entries) == sorted(refund_key(call_id, m) for m in expected)
        assert sorted(x["minute"] for x in refunds()) == sorted(expected)
        charges = {x["minute"]: x["credits"] for x in billed(ann, call_id) if not x.get("refunded")}
        wallet = await Ledger(db).wallet("qn-ann")
        assert wallet.balance == 100 - e["credits"] + sum(charges[m] for m in expected)
        await books_agree(db)
    finally:
        await ann.close()
        await bob.close()


async def test_a_probe_on_one_node_is_seen_on_the_other_and_rated_across_nodes(nodes, db) -> None:  # noqa: F811
    n0, n1 = nodes(2, **NODE_ENV)
    here = await join(n0.url, "qp-ann")
    there = await join(n1.url, "qp-ann")
    try:
        result = await run_probe(there, ProbePeer())
        assert result["grade"] == "excellent"
        prep = await ok(here, "call:prepare", {"to": "qp-bob", "media": "audio"})
        assert prep["probe"]["probe_id"] == result["probe_id"] and prep["suggest_probe"] is False
        await run_probe(here, ProbePeer())  # the second of two allowed per minute, on the other node
        peer = ProbePeer()
        assert error_code(await there.call(CALL, "call:probe", await peer.offer())) == "rate_limited"
        await peer.close()
    finally:
        await here.close()
        await there.close()
