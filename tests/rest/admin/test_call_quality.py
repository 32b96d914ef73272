"""`GET /api/admin/calls/quality`: grade distribution of calls over a window (from their `call:stats`),
calls without stats counted apart, and the worst calls with their per-minute figures."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from server.app import LEDGER
from tests.rest.admin.conftest import FAST, ok, staff
from tests.server.call.conftest import call_env, ended, fund, until
from tests.server.call.conftest import ok as ack_ok
from tests.server.call.test_billing import start_call
from tests.server.call.test_quality import GOOD, POOR


@pytest.fixture
def env(base_env: dict[str, str]) -> dict[str, str]:
    return call_env(base_env, **{**FAST, "PAIRLY_RATE_LIMITS": "*=1000/1,call:stats=1000/1"})


def stamp(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def a_call(app: Any, clients: Any, caller: str, callee: str, stats: dict[str, Any] | None) -> str:
    a, b, call_id = await start_call(app, clients, caller, callee)
    for _ in range(3 if stats is not None else 0):
        assert stats is not None
        await ack_ok(a, "call:stats", {"call_id": call_id, **stats})
        await ack_ok(b, "call:stats", {"call_id": call_id, **stats})
    await ack_ok(a, "call:end", {"call_id": call_id})
    await until(lambda: ended(a, call_id))
    return str(call_id)


async def test_grades_over_a_window_and_the_worst_calls(app_server, clients) -> None:
    ledger = app_server.app[LEDGER]
    for user in ("cq-ann", "cq-cat", "cq-eve"):
        await fund(ledger, user, 100)
    started = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    good = await a_call(app_server, clients, "cq-ann", "cq-bob", GOOD)
    bad = await a_call(app_server, clients, "cq-cat", "cq-dan", POOR)
    await a_call(app_server, clients, "cq-eve", "cq-fay", None)
    support = staff(app_server, "cq-support", "support")

    report = await ok(support, "GET", "/api/admin/calls/quality")
    assert report["calls"] == 3 and not report["truncated"]
    assert report["grades"] == {"excellent": 1, "good": 0, "fair": 0, "poor": 1, "no_stats": 1}
    assert [w["call_id"] for w in report["worst"]] == [bad, good]
    worst = report["worst"][0]
    assert worst["grade"] == "poor" and worst["mos"] < 1.5 and worst["caller"] == "cq-cat"
    assert worst["worst_minute"]["mos"] < 1.5 and worst["minutes"]
    row = worst["minutes"][0]
    assert row["caller"]["rtt_ms"]["avg"] == POOR["rtt_ms"] and row["callee"]["loss_pct"]["max"] == POOR["loss_pct"]

    one = await ok(support, "GET", "/api/admin/calls/quality?worst=1")
    assert [w["call_id"] for w in one["worst"]] == [bad]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    empty = await ok(support, "GET", f"/api/admin/calls/quality?since={stamp(later)}"
                                     f"&until={stamp(later + dt.timedelta(hours=1))}")
    assert empty["calls"] == 0 and empty["worst"] == []
    window = await ok(support, "GET", f"/api/admin/calls/quality?until={stamp(started)}")
    assert window["calls"] == 0


async def test_bad_queries_and_roles(app_server) -> None:
    support = staff(app_server, "cq-s", "support")
    for query in ("worst=101", "worst=x", "since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "since=yesterday"):
        code, body = await support.get(f"/api/admin/calls/quality?{query}")
        assert code == 400 and body["error"]["code"] == "invalid_payload", (query, body)
    code, _ = await staff(app_server, "cq-m", "moderator").get("/api/admin/calls/quality")
    assert code == 403
    code, _ = await staff(app_server, "cq-u", "user").get("/api/admin/calls/quality")
    assert code == 403
