"""Live operations: notices delivered live on every namespace (one user, everyone; one node and two
with Redis), stats aggregated across nodes, active calls and ending one (`ended_by_admin`, settled)."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from server.app import LEDGER
from tests.rest.admin.conftest import FAST, audit_entries, eventually, ok, staff
from tests.server.call.conftest import CALL, ended, fund, until
from tests.support.apps import RunningApp, make_settings
from tests.support.clients import connect, token_for

NAMESPACES = ("/chat", "/presence", CALL)


async def test_notices_reach_one_user_or_everyone_on_every_namespace(app_server: RunningApp, clients) -> None:
    admin = staff(app_server, "op-root", "admin")
    ann, ann2, bob = [await clients(app_server, u) for u in ("op-ann", "op-ann", "op-bob")]
    waits = [asyncio.create_task(c.next(ns, "system:notice")) for c in (ann, ann2) for ns in NAMESPACES]
    answer = await ok(admin, "POST", "/api/admin/notice",
                      {"text": "Your payout is delayed", "level": "warning", "user": "op-ann"})
    notice = answer["notice"]
    assert set(notice) == {"id", "text", "level", "at"} and notice["level"] == "warning"
    assert [await w for w in waits] == [notice] * 6
    assert not any(bob.received(ns, "system:notice") for ns in NAMESPACES)
    waits = [asyncio.create_task(c.next(ns, "system:notice")) for c in (ann, bob) for ns in NAMESPACES]
    everyone = (await ok(admin, "POST", "/api/admin/notice", {"text": "Maintenance at 02:00 UTC"}))["notice"]
    assert [await w for w in waits] == [everyone] * 6 and everyone["level"] == "info"
    for body in ({}, {"text": ""}, {"text": "x" * 2001}, {"text": "hi", "level": "panic"}, {"text": 3}):
        status, answer = await admin.post("/api/admin/notice", body)
        assert status == 400 and answer["error"]["code"] == "invalid_payload", (body, answer)
    status, answer = await admin.post("/api/admin/notice", {"text": "hi", "user": "op-nobody"})
    assert status == 404, answer
    assert [e["target"] for e in await audit_entries(admin, action="notice.send")] == ["*", "op-ann"]


async def test_notices_and_stats_across_two_nodes(nodes, base_env: dict[str, str]) -> None:
    n0, n1 = nodes(2, **FAST)
    settings = make_settings(base_env)
    admin = staff((n0.url, settings), "op-root", "admin")
    ann = await connect(n0.url, "op-ann", token_for(settings, "op-ann"), NAMESPACES)
    bob = await connect(n1.url, "op-bob", token_for(settings, "op-bob"), NAMESPACES)
    cat = await connect(n1.url, "op-cat", token_for(settings, "op-cat"), ["/chat"])
    try:
        waits = [asyncio.create_task(c.next(ns, "system:notice")) for c in (ann, bob) for ns in NAMESPACES]
        notice = (await ok(admin, "POST", "/api/admin/notice", {"text": "hello all"}))["notice"]
        assert [await w for w in waits] == [notice] * 6
        wait_bob = asyncio.create_task(bob.next(CALL, "system:notice"))
        to_bob = (await ok(admin, "POST", "/api/admin/notice", {"text": "just you", "user": "op-bob"}))["notice"]
        assert await wait_bob == to_bob
        for n in range(3):
            ack = await bob.call("/chat", "message:send", {"to": "op-ann", "client_id": f"s{n}", "text": "x"})
            assert ack["ok"], ack
        stats: dict[str, Any] = {}

        async def both_nodes_counted() -> bool:
            stats.update(await ok(admin, "GET", "/api/admin/stats"))
            return bool(stats["nodes_alive"] == 2 and stats["messages_per_min"] == 3)

        await eventually(both_nodes_counted)  # each node publishes every PAIRLY_ADMIN_STATS_PUBLISH_S
        assert stats["connections"] == {"/chat": 3, "/presence": 2, "/call": 2}
        by_node = {n["node"]: n for n in stats["nodes"]}
        assert by_node["node0"]["connections"] == {"/chat": 1, "/presence": 1, "/call": 1}
        assert by_node["node1"]["connections"] == {"/chat": 2, "/presence": 1, "/call": 1}
        assert by_node["node1"]["messages_per_min"] == 3 and stats["credits_spent_per_min"] == 3
        assert stats["active_calls"] == 0 and stats["purchases_today"] == {"count": 0, "credits": 0}
        support = staff((n1.url, settings), "op-help", "support")
        assert (await ok(support, "GET", "/api/admin/stats"))["nodes_alive"] == 2
        n1.stop()  # a node that stops (or dies: its key expires) drops out of the figures

        async def one_node_left() -> bool:
            stats.update(await ok(admin, "GET", "/api/admin/stats"))
            return bool(stats["nodes_alive"] == 1)

        await eventually(one_node_left)
        assert stats["connections"] == {"/chat": 1, "/presence": 1, "/call": 1}
    finally:
        for c in (ann, bob, cat):
            await c.close()


async def test_active_calls_and_ending_one(app_server: RunningApp, clients) -> None:
    admin = staff(app_server, "op-root", "admin")
    ledger = app_server.app[LEDGER]
    await fund(ledger, "op-ann", 100)
    ann = await clients(app_server, "op-ann", namespaces=[CALL])
    bob = await clients(app_server, "op-bob", namespaces=[CALL])
    invite = await ann.call(CALL, "call:invite", {"to": "op-bob", "media": "video"})
    assert invite["ok"], invite
    await until(lambda: bob.received(CALL, "call:incoming"))
    assert (await bob.call(CALL, "call:accept", {"call_id": invite["call_id"]}))["ok"]
    [call] = (await ok(admin, "GET", "/api/admin/calls/active"))["calls"]
    assert call["call_id"] == invite["call_id"] and call["state"] == "accepted" and call["rate_per_minute"] == 10
    assert (await ok(admin, "GET", "/api/admin/stats"))["active_calls"] == 1
    assert (await staff(app_server, "op-help", "support").get("/api/admin/calls/active"))[0] == 200
    assert (await staff(app_server, "op-help", "support").post(f"/api/admin/calls/{call['call_id']}/end"))[0] == 403
    answer = await ok(admin, "POST", f"/api/admin/calls/{call['call_id']}/end", {"reason": "reported abuse"})
    assert answer["call"]["reason"] == "ended_by_admin"
    for client in (ann, bob):
        event = await until(functools.partial(ended, client, invite["call_id"]))
        assert event[0]["reason"] == "ended_by_admin"
    assert (await ok(admin, "GET", "/api/admin/calls/active"))["calls"] == []
    status, again = await admin.post(f"/api/admin/calls/{call['call_id']}/end")
    assert status == 409 and again["error"]["code"] == "conflict"
    assert (await admin.post("/api/admin/calls/no-such-call/end"))[0] == 404
    assert (await ledger.wallet("op-ann")).balance == 10 + 100 - 10  # bonus + funds - minute 1; hold released
    report = await ledger.reconcile()
    assert report.ok and report.total == 0
    [entry] = await audit_entries(admin, action="call.end")
    assert entry["target"] == invite["call_id"] and entry["after"]["reason"] == "ended_by_admin"
