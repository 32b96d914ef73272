"""`call:signal`: relayed to the other party's device only; malformed signals change nothing; the
limits (SDP size, ICE candidates per party, signals per second per call) hold; a party that loses
its connection may come back within the reconnect grace and re-offer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from server.app import CORE, LEDGER
from tests.server.call.conftest import CALL, call_env, ended, error_code, fund, ok, until
from tests.support.clients import connect, token_for


@pytest.fixture
def env(base_env: dict[str, str]) -> dict[str, str]:
    return call_env(base_env, PAIRLY_CALL_MAX_SDP_BYTES="1024", PAIRLY_CALL_MAX_ICE_PER_PARTY="3",
                    PAIRLY_CALL_SIGNALS_PER_S="20", PAIRLY_CALL_BILLING_INTERVAL_S="30")


async def accepted(app, clients, caller: str, callee: str):
    await fund(app.app[LEDGER], caller, 100)
    a = await clients(app, caller, namespaces=[CALL])
    b = await clients(app, callee, namespaces=[CALL])
    call_id = (await ok(a, "call:invite", {"to": callee, "media": "video"}))["call_id"]
    await until(lambda: b.received(CALL, "call:incoming"))
    await ok(b, "call:accept", {"call_id": call_id})
    return a, b, call_id


async def test_signals_reach_the_other_party_only_and_bad_ones_change_nothing(app_server, clients) -> None:
    a, b, call_id = await accepted(app_server, clients, "rs-ann", "rs-bob")
    eve = await clients(app_server, "rs-eve", namespaces=[CALL])
    offer = {"call_id": call_id, "type": "offer", "payload": {"type": "offer", "sdp": "v=0\r\no=- 1 1 IN IP4 0"}}
    await ok(a, "call:signal", offer)
    got = await until(lambda: b.received(CALL, "call:signal"))
    assert got == [{"call_id": call_id, "from": "rs-ann", "type": "offer", "payload": offer["payload"]}]
    await ok(b, "call:signal", {"call_id": call_id, "type": "answer", "payload": {"sdp": "v=0 answer"}})
    await until(lambda: a.received(CALL, "call:signal"))
    bad = [
        {"call_id": call_id, "type": "hello", "payload": {}},
        {"call_id": call_id, "type": "offer", "payload": "v=0"},
        {"call_id": call_id, "type": "offer", "payload": {"sdp": 42}},
        {"call_id": call_id, "type": "offer", "payload": {"sdp": "x" * 1025}},
        {"call_id": call_id, "type": "ice", "payload": {"candidate": ["x"]}},
        {"call_id": "not-a-call", "type": "ice", "payload": {}},
        {"type": "offer", "payload": {"sdp": "v=0"}},
        "offer",
    ]
    for payload in bad:
        assert error_code(await a.call(CALL, "call:signal", payload)) == "invalid_payload", payload
    # A third user can neither inject nor receive.
    assert error_code(await eve.call(CALL, "call:signal", offer)) == "forbidden"
    await asyncio.sleep(0.2)
    assert len(b.received(CALL, "call:signal")) == 1 and len(a.received(CALL, "call:signal")) == 1
    assert not eve.received(CALL, "call:signal")
    # ICE candidates: at most 3 per party in this configuration; the end-of-candidates marker counts.
    for i in range(3):
        await ok(a, "call:signal", {"call_id": call_id, "type": "ice",
                                    "payload": {"candidate": f"candidate:{i} 1 udp 1 127.0.0.1 9 typ host"}})
    over = await a.call(CALL, "call:signal", {"call_id": call_id, "type": "ice", "payload": {"candidate": None}})
    assert error_code(over) == "rate_limited"
    await ok(b, "call:signal", {"call_id": call_id, "type": "ice", "payload": {"candidate": None}})  # b's own count
    await until(lambda: len(b.received(CALL, "call:signal")) == 4)
    # The connection stays usable and the call is untouched.
    doc = await app_server.app[CORE].db["calls"].find_one({"_id": call_id})
    assert doc["state"] == "accepted"
    await ok(a, "call:end", {"call_id": call_id})


async def test_signals_per_second_per_call_are_limited(app_server, clients) -> None:
    a, _b, call_id = await accepted(app_server, clients, "rr-ann", "rr-bob")
    sig = {"call_id": call_id, "type": "renegotiate", "payload": {"sdp": "v=0"}}
    acks = await asyncio.gather(*[a.call(CALL, "call:signal", sig) for _ in range(30)])
    codes = [x["ok"] or x["error"]["code"] for x in acks]
    # A bucket of 20 that refills at 20/s: a slow machine may refill a token or two during the burst.
    assert set(codes) == {True, "rate_limited"}
    assert codes.count(True) >= 20 and codes.count("rate_limited") >= 5
    await ok(a, "call:end", {"call_id": call_id})


async def test_a_party_reconnecting_within_the_grace_continues_and_can_renegotiate(app_server, clients) -> None:
    a, b, call_id = await accepted(app_server, clients, "rg-ann", "rg-bob")
    await a.close()  # the caller's connection drops
    await asyncio.sleep(0.5)
    a2 = await connect(app_server.url, "rg-ann", token_for(app_server.settings, "rg-ann"), [CALL])
    try:
        renegotiate = {"call_id": call_id, "type": "renegotiate", "payload": {"sdp": "v=0 again"}}
        await ok(a2, "call:signal", renegotiate)
        await until(lambda: b.received(CALL, "call:signal"))
        await asyncio.sleep(2.0)  # past the 1.5 s grace: still up
        doc = await app_server.app[CORE].db["calls"].find_one({"_id": call_id})
        assert doc["state"] == "accepted"
        await ok(b, "call:signal", {"call_id": call_id, "type": "answer", "payload": {"sdp": "v=0 answer"}})
        await until(lambda: a2.received(CALL, "call:signal"))
        await ok(a2, "call:end", {"call_id": call_id})
    finally:
        await a2.close()


async def test_a_party_gone_longer_than_the_grace_ends_the_call(app_server, clients) -> None:
    a, b, call_id = await accepted(app_server, clients, "rd-ann", "rd-bob")
    await b.close()
    await until(lambda: ended(a, call_id), timeout=6)
    e = ended(a, call_id)[0]
    assert e["reason"] == "disconnected" and e["billed_minutes"] == 1 and e["credits"] == 10


async def test_an_offline_callee_is_pushed_and_a_missed_call_too(base_env) -> None:
    from aiohttp import web

    from server.store import free_port
    from tests.support.apps import make_settings, running_app

    jobs: list[dict[str, Any]] = []

    async def receive(request: web.Request) -> web.Response:
        jobs.append(await request.json())
        return web.Response(status=200)

    hook = web.Application()
    hook.router.add_post("/push", receive)
    runner = web.AppRunner(hook, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    settings = make_settings(call_env(base_env, PAIRLY_PUSH_WEBHOOK_URL=f"http://127.0.0.1:{port}/push",
                                      PAIRLY_PUSH_WEBHOOK_SECRET="push-secret-for-tests"))
    try:
        async with running_app(settings) as app:
            await fund(app.app[LEDGER], "rp-ann", 50)
            a = await connect(app.url, "rp-ann", token_for(settings, "rp-ann"), [CALL])
            prep = await ok(a, "call:prepare", {"to": "rp-bob", "media": "audio"})
            assert prep["callee"] == {"reachable": True, "via": "push"}
            call_id = (await ok(a, "call:invite", {"to": "rp-bob", "media": "audio"}))["call_id"]
            await until(lambda: jobs)
            assert jobs[0]["type"] == "call:incoming" and jobs[0]["user"] == "rp-bob"
            assert jobs[0]["data"] == {"call_id": call_id, "from": "rp-ann", "media": "audio"}
            await until(lambda: ended(a, call_id), timeout=8)  # still rings for the timeout: missed
            assert ended(a, call_id)[0]["reason"] == "missed"
            await until(lambda: len(jobs) == 2)
            assert jobs[1]["type"] == "call:missed" and jobs[1]["data"]["call_id"] == call_id
            await a.close()
    finally:
        await runner.cleanup()
