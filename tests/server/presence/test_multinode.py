"""Several nodes sharing Redis: the same behaviour as one node, plus node death.

In-process nodes for the behaviour; real `python -m server` processes for SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import signal
import time
from collections.abc import AsyncIterator

import pytest

from server.app import CORE
from server.auth import mint_token
from tests.conftest import TEST_SECRET
from tests.server.presence.conftest import FAST, PRESENCE, call_ok, subscribe, update, updates
from tests.support.apps import NodeProcess, RunningApp, make_settings, running_app
from tests.support.clients import Client, connect, token_for


@pytest.fixture
def env(base_env: dict[str, str], redis_url: str) -> dict[str, str]:
    return {**base_env, **FAST, "REDIS_URL": redis_url}


@contextlib.asynccontextmanager
async def two_nodes(env: dict[str, str], **extra: str) -> AsyncIterator[tuple[RunningApp, RunningApp, list[Client]]]:
    """Nodes A and B; clients opened through the yielded list are closed before the nodes stop."""
    opened: list[Client] = []
    async with running_app(make_settings({**env, **extra, "PAIRLY_NODE_ID": "A"})) as a, \
            running_app(make_settings({**env, **extra, "PAIRLY_NODE_ID": "B"})) as b:
        try:
            yield a, b, opened
        finally:
            for client in opened:
                await client.close()


async def _client(opened: list[Client], node: RunningApp, user: str) -> Client:
    client = await connect(node.url, user, token_for(node.settings, user), [PRESENCE])
    opened.append(client)
    return client


async def test_devices_on_two_nodes_make_one_presence(env) -> None:
    async with two_nodes(env) as (a, b, opened):
        alice = await _client(opened, a, "alice")
        await subscribe(alice, ["bob"])
        await asyncio.sleep(0.1)  # A's Redis subscription to the room is asynchronous to the ack
        bob_b = await _client(opened, b, "bob")
        await update(alice, "bob", "online")
        bob_a = await _client(opened, a, "bob")
        carol = await _client(opened, b, "carol")  # a watcher on the other node sees the same
        assert (await subscribe(carol, ["bob"]))["bob"]["status"] == "online"
        await bob_b.close()
        await call_ok(bob_a, "presence:set", {"status": "away"})
        await update(carol, "bob", "away")
        left = dt.datetime.now(dt.UTC)
        await bob_a.close()
        offline = await update(alice, "bob", "offline")
        assert await update(carol, "bob", "offline") == offline
        assert [p["status"] for p in updates(alice, "bob")] == ["online", "away", "offline"]
        seen = dt.datetime.fromisoformat(offline["last_seen"].replace("Z", "+00:00"))
        assert abs((seen - left).total_seconds()) < 0.5


async def test_reconnect_to_another_node_within_grace_is_not_broadcast(env) -> None:
    async with two_nodes(env, PAIRLY_PRESENCE_GRACE_S="1.5") as (a, b, opened):
        alice = await _client(opened, a, "alice")
        await subscribe(alice, ["bob"])
        await asyncio.sleep(0.1)
        bob = await _client(opened, a, "bob")
        await update(alice, "bob", "online")
        await bob.close()
        bob = await _client(opened, b, "bob")  # the load balancer sent the reconnect elsewhere
        await asyncio.sleep(2.0)  # past the grace the first node was waiting out
        assert [p["status"] for p in updates(alice, "bob")] == ["online"]
        await bob.close()
        await update(alice, "bob", "offline")


async def test_block_on_one_node_hides_from_a_watcher_on_the_other(env) -> None:
    async with two_nodes(env) as (a, b, opened):
        alice = await _client(opened, a, "alice")
        carol = await _client(opened, a, "carol")
        await subscribe(alice, ["bob"])
        await subscribe(carol, ["bob"])
        await asyncio.sleep(0.1)
        bob = await _client(opened, b, "bob")
        await update(alice, "bob", "online")
        await b.app[CORE].blocks.block("bob", "alice")
        await update(alice, "bob", "offline")
        await call_ok(bob, "presence:set", {"status": "away"})
        await update(carol, "bob", "away")
        assert [p["status"] for p in updates(alice, "bob")] == ["online", "offline"]
        dave = await _client(opened, b, "alice")  # a new device of alice, on B: its snapshot hides bob too
        assert (await subscribe(dave, ["bob"]))["bob"] == {"user": "bob", "status": "offline", "last_seen": None}


async def test_unblock_on_one_node_shows_again_on_the_other_and_clears_its_cache(env) -> None:
    async with two_nodes(env) as (a, b, opened):
        alice = await _client(opened, a, "alice")
        await subscribe(alice, ["bob"])
        await asyncio.sleep(0.1)
        bob = await _client(opened, b, "bob")
        await update(alice, "bob", "online")
        assert not await a.app[CORE].blocks.is_blocked("bob", "alice")  # now cached on A (for 5 s)
        await b.app[CORE].blocks.block("bob", "alice")
        await update(alice, "bob", "offline")
        assert await a.app[CORE].blocks.is_blocked("bob", "alice")  # A's cache heard of it: no 5 s wait
        await call_ok(bob, "presence:set", {"status": "away"})  # alice no longer hears bob
        await b.app[CORE].blocks.unblock("bob", "alice")
        assert await update(alice, "bob", "away") == {"user": "bob", "status": "away", "last_seen": None}
        assert not await a.app[CORE].blocks.is_blocked("bob", "alice")
        await call_ok(bob, "presence:set", {"status": "online"})
        await update(alice, "bob", "online", skip=2)
        assert [p["status"] for p in updates(alice, "bob")] == ["online", "offline", "away", "online"]


async def test_a_block_through_chat_on_one_process_applies_on_another(nodes) -> None:
    """Real `python -m server` processes: the notification travels through Redis, nothing else."""
    n0, n1 = nodes(2, **FAST)
    opened: list[Client] = []

    async def device(node: NodeProcess, user: str, *namespaces: str) -> Client:
        opened.append(await connect(node.url, user, mint_token(TEST_SECRET, user), list(namespaces)))
        return opened[-1]

    try:
        alice = await device(n1, "alice", PRESENCE)
        carol = await device(n1, "carol", PRESENCE)
        await subscribe(alice, ["bob"])
        await subscribe(carol, ["bob"])
        await asyncio.sleep(0.2)  # n1's Redis subscription to the room is asynchronous to the ack
        bob = await device(n0, "bob", "/chat", PRESENCE)
        await update(alice, "bob", "online")
        assert (await bob.call("/chat", "user:block", {"user": "alice"}))["ok"]
        assert await update(alice, "bob", "offline") == {"user": "bob", "status": "offline", "last_seen": None}
        await call_ok(bob, "presence:set", {"status": "away"})
        await update(carol, "bob", "away")
        assert (await bob.call("/chat", "user:unblock", {"user": "alice"}))["ok"]
        assert (await update(alice, "bob", "away"))["status"] == "away"
        assert [p["status"] for p in updates(alice, "bob")] == ["online", "offline", "away"]
    finally:
        for client in opened:
            await client.close()


async def test_activity_on_one_node_keeps_devices_on_another_online(env) -> None:
    async with two_nodes(env, PAIRLY_PRESENCE_AWAY_AFTER_S="0.6") as (a, b, opened):
        alice = await _client(opened, a, "alice")
        await subscribe(alice, ["bob"])
        await asyncio.sleep(0.1)
        busy = await _client(opened, a, "bob")
        await _client(opened, b, "bob")  # an idle second device on the other node
        await update(alice, "bob", "online")
        until = time.monotonic() + 2.0
        while time.monotonic() < until:  # about elapsed time: stay busy for 3 x away_after
            await call_ok(busy, "presence:heartbeat", {})
            await asyncio.sleep(0.05)
        assert [p["status"] for p in updates(alice, "bob")] == ["online"]
        await update(alice, "bob", "away")  # once nothing is active anywhere
        await call_ok(busy, "presence:heartbeat", {})
        await update(alice, "bob", "online", skip=1)


async def test_a_stopping_node_hands_its_users_over(env) -> None:
    settings = {**env, "PAIRLY_PRESENCE_GRACE_S": "1.0"}
    async with running_app(make_settings({**settings, "PAIRLY_NODE_ID": "A"})) as a:
        alice = await connect(a.url, "alice", token_for(a.settings, "alice"), [PRESENCE])
        await subscribe(alice, ["bob", "carol"])
        await asyncio.sleep(0.1)
        node_b = running_app(make_settings({**settings, "PAIRLY_NODE_ID": "B"}))
        b = await node_b.__aenter__()
        bob = await connect(b.url, "bob", token_for(b.settings, "bob"), [PRESENCE])
        carol = await connect(b.url, "carol", token_for(b.settings, "carol"), [PRESENCE])
        await update(alice, "bob", "online")
        await update(alice, "carol", "online")
        told = asyncio.create_task(bob.next(PRESENCE, "server:shutdown"))
        stopping = asyncio.create_task(node_b.__aexit__(None, None, None))  # as on SIGTERM
        await told
        started = time.monotonic()
        bob_again = await connect(a.url, "bob", token_for(a.settings, "bob"), [PRESENCE])  # reconnects to A
        await stopping
        await update(alice, "carol", "offline", timeout=10)  # carol did not come back
        assert time.monotonic() - started < 8
        assert [p["status"] for p in updates(alice, "bob")] == ["online"]
        for client in (bob, carol, bob_again, alice):
            await client.close()


async def test_sigkilled_node_takes_its_users_offline_within_the_bound(nodes) -> None:
    ttl = 1.5
    n0, n1 = nodes(2, **{**FAST, "PAIRLY_PRESENCE_NODE_TTL_S": str(ttl)})

    def token(user: str) -> str:
        return mint_token(TEST_SECRET, user)

    alice = await connect(n0.url, "alice", token("alice"), [PRESENCE])
    await subscribe(alice, ["bob", "carol"])
    await asyncio.sleep(0.2)
    bob_n1 = await connect(n1.url, "bob", token("bob"), [PRESENCE])
    bob_n0 = await connect(n0.url, "bob", token("bob"), [PRESENCE])  # bob also has a device on the survivor
    carol = await connect(n1.url, "carol", token("carol"), [PRESENCE])
    await update(alice, "bob", "online")
    await update(alice, "carol", "online")

    killed_at = time.monotonic()
    killed_wall = dt.datetime.now(dt.UTC)
    n1.signal(signal.SIGKILL)
    offline = await update(alice, "carol", "offline", timeout=15)
    took = time.monotonic() - killed_at
    # Bound: the node TTL plus a sweep (documented as node_ttl_s + 1 s); allow slack for a busy CI box.
    assert took < ttl + 3.0, took
    seen = dt.datetime.fromisoformat(offline["last_seen"].replace("Z", "+00:00"))
    assert killed_wall - dt.timedelta(seconds=ttl) <= seen <= killed_wall + dt.timedelta(seconds=0.1)
    # bob still has a device on the surviving node: no change for him.
    assert [p["status"] for p in updates(alice, "bob")] == ["online"]
    await bob_n0.close()
    await update(alice, "bob", "offline")
    for c in (alice, bob_n1, carol):
        await c.close()


async def test_a_burst_of_connects_and_disconnects_leaves_no_ghosts(env) -> None:
    """150 devices arrive and leave at once (a reconnect storm): group-committed, nobody stays online."""
    import aiohttp

    from loadtests._common_presence import open_many

    users = [f"u{i}" for i in range(150)]
    async with two_nodes(env, PAIRLY_PRESENCE_GRACE_S="0.3") as (a, b, opened):
        watcher = await _client(opened, a, "watcher")
        await subscribe(watcher, users)
        await asyncio.sleep(0.2)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            burst = await open_many(http, b.url, PRESENCE, [{"token": token_for(b.settings, u)} for u in users],
                                    concurrency=150)
            for u in users:
                await update(watcher, u, "online", timeout=10)
            await asyncio.gather(*(c.close() for c in burst))
            for u in users:
                await update(watcher, u, "offline", timeout=10)
        snapshot = await subscribe(watcher, users)
        assert {p["status"] for p in snapshot.values()} == {"offline"}
        assert all(len(updates(watcher, u)) == 2 for u in users)
