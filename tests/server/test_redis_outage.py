"""Redis stopped under running nodes: a node keeps serving what it can alone (same-node chat, acks,
history), what needs Redis answers `unavailable` (never `internal`), connects are refused at once with
the code `unavailable`, REST that does not need Redis keeps working, and everything recovers by itself
when Redis is back (same port, empty: as after a restart): presence, connection registry, deliveries."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from pymongo import AsyncMongoClient

from billing.ledger import Ledger
from server.auth import mint_token
from tests.conftest import TEST_SECRET
from tests.support.apps import NodeProcess, make_settings, running_app
from tests.support.clients import Client, ConnectRefused, connect, token_for
from tests.support.services import RedisServer


async def test_a_redis_outage_answers_unavailable_and_recovers(base_env: dict[str, str]) -> None:
    redis = RedisServer()
    settings = make_settings({**base_env, "REDIS_URL": redis.url, "PAIRLY_RATE_LIMITS": "*=1000/1"})
    try:
        async with running_app(settings) as app:
            ann = await connect(app.url, "ro-ann", token_for(settings, "ro-ann"), ["/chat", "/presence"])
            send = {"to": "ro-bob", "text": "hi"}
            assert (await ann.call("/chat", "message:send", {**send, "client_id": "a"}))["ok"]
            redis.stop()
            started = time.monotonic()
            # A node serves what it can alone: this send needs no other node (rate limits go local).
            ack = await ann.call("/chat", "message:send", {**send, "client_id": "b"})
            assert ack["ok"], ack
            assert time.monotonic() - started < 5
            # Presence lives in Redis: a node alone would call users on other nodes offline, so it says
            # it cannot answer rather than answer wrong.
            ack = await ann.call("/presence", "presence:subscribe", {"users": ["ro-bob"]})
            assert ack["ok"] is False and ack["error"]["code"] == "unavailable", ack
            try:
                await connect(app.url, "ro-cat", token_for(settings, "ro-cat"), ["/chat"])
                raise AssertionError("connected without Redis")
            except ConnectRefused as exc:
                assert exc.code == "unavailable"
            async with aiohttp.ClientSession() as session, session.get(
                    f"{app.url}/api/wallet", headers={"Authorization": f"Bearer {token_for(settings, 'ro-ann')}"}) as r:
                assert r.status == 200
            redis = RedisServer(port=redis.port)  # back, empty
            for _ in range(50):
                ack = await ann.call("/presence", "presence:subscribe", {"users": ["ro-bob"]})
                if ack["ok"]:
                    break
                assert ack["error"]["code"] == "unavailable"
                await asyncio.sleep(0.2)
            assert ack["ok"], ack
            cat = await connect(app.url, "ro-cat", token_for(settings, "ro-cat"), ["/chat"])
            await cat.close()
            await ann.close()
    finally:
        redis.stop()


async def test_two_nodes_keep_serving_through_a_redis_restart_under_chat_load(base_env: dict[str, str]) -> None:
    """Redis stopped and started again (empty) under chat load on two nodes: same-node chat keeps working,
    nothing answers `internal`, no acked message is lost (cross-node ones are delivered once Redis is
    back), presence is right again within the node TTL, and the books balance."""
    redis = RedisServer()
    env = {**base_env, "REDIS_URL": redis.url, "PAIRLY_RATE_LIMITS": "*=1000/1,message:send=1000/1",
           "PAIRLY_SIGNUP_BONUS": "10000",
           "PAIRLY_NODE_TTL_S": "2", "PAIRLY_PRESENCE_GRACE_S": "0.5"}
    n0, n1 = NodeProcess(env, "ro0"), NodeProcess(env, "ro1")
    clients: list[Client] = []
    try:
        n0.wait_ready()
        n1.wait_ready()
        spaces = ["/chat", "/presence"]
        ann = await connect(n0.url, "rl-ann", mint_token(TEST_SECRET, "rl-ann"), spaces)
        bob = await connect(n0.url, "rl-bob", mint_token(TEST_SECRET, "rl-bob"), spaces)
        cat = await connect(n1.url, "rl-cat", mint_token(TEST_SECRET, "rl-cat"), spaces)
        clients += [ann, bob, cat]
        watched = await cat.call("/presence", "presence:subscribe", {"users": ["rl-ann"]})
        assert watched["presence"][0]["status"] == "online"
        acks: dict[str, list[tuple[str, dict[str, Any], str]]] = {"same": [], "cross": []}
        phase = "before"
        stop = asyncio.Event()

        async def load(kind: str, sender: Client, to: str) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                cid = f"{kind}-{i}"
                ack = await sender.call("/chat", "message:send", {"to": to, "client_id": cid, "text": cid})
                acks[kind].append((cid, ack, phase))
                await asyncio.sleep(0.03)

        loads = [asyncio.create_task(load("same", ann, "rl-bob")), asyncio.create_task(load("cross", ann, "rl-cat"))]
        await asyncio.sleep(1.0)
        redis.stop()
        phase = "down"
        await asyncio.sleep(4.0)
        redis = RedisServer(port=redis.port)  # back, empty, as after a restart without persistence
        phase = "after"
        await asyncio.sleep(3.0)
        stop.set()
        await asyncio.gather(*loads)

        codes = {a["error"]["code"] for kind in acks for _, a, _ in acks[kind] if not a["ok"]}
        assert "internal" not in codes, codes
        assert codes <= {"unavailable"}, codes
        down_same = [a for _, a, p in acks["same"] if p == "down"]
        assert down_same and all(a["ok"] for a in down_same), "same-node chat stopped while Redis was down"
        assert all(a["ok"] for _, a, p in acks["cross"] if p == "after")
        # No acked message lost: each recipient has every message acked to its sender, live or on sync.
        for kind, who in (("same", bob), ("cross", cat)):
            acked = {cid for cid, a, _ in acks[kind] if a["ok"]}
            live = {m["client_id"] for m in who.received("/chat", "message:new")}
            synced: set[str] = set()
            since = None
            while True:
                page = await who.call("/chat", "sync", {"since": since})
                synced |= {m["client_id"] for m in page["messages"] if m["from"] == "rl-ann"}
                if not page["more"]:
                    break
                since = page["messages"][-1]["id"]
            assert acked <= synced, f"{kind}: acked but not stored: {sorted(acked - synced)[:5]}"
            if kind == "cross":  # sent while Redis was down: published when it is back
                for _ in range(50):
                    live = {m["client_id"] for m in who.received("/chat", "message:new")}
                    if acked <= live:
                        break
                    await asyncio.sleep(0.1)
            assert acked <= live, f"{kind}: acked messages not delivered live: {sorted(acked - live)[:5]}"
        # Presence is right again: ann is still connected, so a fresh look and a fresh subscriber see her.
        async def ann_online() -> bool:
            ack = await cat.call("/presence", "presence:subscribe", {"users": ["rl-ann"]})
            return bool(ack["ok"] and ack["presence"][0]["status"] == "online")

        for _ in range(40):
            if await ann_online():
                break
            await asyncio.sleep(0.25)
        assert await ann_online(), "presence still wrong after Redis came back"
    finally:
        for c in clients:
            await c.close()
        n0.stop()
        n1.stop()
        redis.stop()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(base_env["MONGO_URL"])
    try:
        assert (await Ledger(client[base_env["MONGO_DB"]]).reconcile()).ok
    finally:
        await client.close()
