"""Quality refunds off (the default): stats are still aggregated per minute into the call record,
and no minute is refunded however bad both parties found it."""

from __future__ import annotations

import pytest

from server.app import CALLS, CORE, LEDGER
from signaling.quality import REFUND_KIND
from tests.server.call.conftest import billed, call_env, ended, fund, ok, until
from tests.server.call.test_billing import books_agree, start_call
from tests.server.call.test_quality import REFUND_ENV, Samples, both_poor_in_one_minute


@pytest.fixture
def env(base_env: dict[str, str]) -> dict[str, str]:
    return call_env(base_env, **{**REFUND_ENV, "PAIRLY_CALL_QUALITY_REFUND": "false"})


async def test_stats_are_aggregated_per_minute_and_nothing_is_refunded_when_off(app_server, clients) -> None:
    ledger, db = app_server.app[LEDGER], app_server.app[CORE].db
    await fund(ledger, "qo-ann", 100)
    a, b, call_id = await start_call(app_server, clients, "qo-ann", "qo-bob")
    samples = Samples()
    await both_poor_in_one_minute(a, b, call_id, samples)
    minute = min(samples.poor_minutes())
    ack = await samples.send(b, "callee", call_id, {"rtt_ms": 10})
    await ok(a, "call:end", {"call_id": call_id})
    e = (await until(lambda: ended(a, call_id)))[0]
    await app_server.app[CALLS].quality.judge(call_id, list(range(1, e["billed_minutes"] + 1)))
    doc = await db["calls"].find_one({"_id": call_id})
    q = doc["quality"]
    caller = q["minutes"][str(minute)]["caller"]
    assert caller["rtt_ms"]["min"] == caller["rtt_ms"]["max"] == 900 and caller["mos"]["max"] == 1.0
    assert caller["poor"] == caller["n"] == len(samples.by_minute[minute]["caller"])
    callee = q["minutes"][str(ack["minute"])]["callee"]
    assert callee["rtt_ms"]["min"] == 10 and callee["rtt_ms"]["max"] >= 10
    assert q["samples"] == {"caller": sum(len(r["caller"]) for r in samples.by_minute.values()),
                            "callee": sum(len(r["callee"]) for r in samples.by_minute.values())}
    assert "refunds" not in q and not [x for x in billed(a, call_id) if x.get("refunded")]
    assert await db["ledger"].count_documents({"k": REFUND_KIND}) == 0
    await books_agree(app_server)
