"""Three nodes sharing Redis: a user's devices spread over all three get every chat message and every
presence change exactly once, and each room channel is subscribed by exactly the nodes holding it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from server.rooms import user_room
from tests.server.chat.conftest import CHAT, sent
from tests.server.presence.conftest import FAST, PRESENCE, call_ok, subscribe, update, updates
from tests.support.apps import RunningApp, make_settings, running_app
from tests.support.clients import Client, connect, token_for


@pytest.fixture
def env(base_env: dict[str, str], redis_url: str) -> dict[str, str]:
    return {**base_env, **FAST, "REDIS_URL": redis_url,
            "PAIRLY_RATE_LIMITS": "*=1000/1,message:send=1000/1,presence:subscribe=1000/1"}


@contextlib.asynccontextmanager
async def three_nodes(env: dict[str, str]) -> AsyncIterator[tuple[list[RunningApp], list[Client]]]:
    opened: list[Client] = []
    async with running_app(make_settings({**env, "PAIRLY_NODE_ID": "A"})) as a, \
            running_app(make_settings({**env, "PAIRLY_NODE_ID": "B"})) as b, \
            running_app(make_settings({**env, "PAIRLY_NODE_ID": "C"})) as c:
        try:
            yield [a, b, c], opened
        finally:
            for client in opened:
                await client.close()


async def _subscribers(redis: Redis, channel: str, expected: int) -> int:
    """The channel's subscriber count once it reaches `expected` (subscribing is asynchronous to the
    connect ack), or whatever it is after ~5 s."""
    count = 0
    for _ in range(100):
        count = int((await redis.pubsub_numsub(channel))[0][1])
        if count == expected:
            break
        await asyncio.sleep(0.05)
    return count


async def test_devices_on_three_nodes_get_each_message_once(env: dict[str, str], redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    async with three_nodes(env) as (apps, opened):
        async def device(node: RunningApp, user: str, namespaces: list[str]) -> Client:
            client = await connect(node.url, user, token_for(node.settings, user), namespaces)
            opened.append(client)
            return client

        bob = [await device(node, "bob", [CHAT]) for node in apps]
        alice_a = await device(apps[0], "alice", [CHAT])
        alice_c = await device(apps[2], "alice", [CHAT])
        prefix = apps[0].settings.redis_prefix
        assert await _subscribers(redis, f"{prefix}:room:{CHAT}:{user_room('bob')}", 3) == 3
        assert await _subscribers(redis, f"{prefix}:room:{CHAT}:{user_room('alice')}", 2) == 2

        got = await asyncio.gather(*(sent(alice_a, "bob", f"m{i}") for i in range(6)))
        barrier = await sent(alice_a, "bob", "barrier")  # per-room order: a duplicate would come before it
        for client in [*bob, alice_c]:
            while barrier["id"] not in [m["id"] for m in client.received(CHAT, "message:new")]:
                await client.next(CHAT, "message:new")
            ids = [m["id"] for m in client.received(CHAT, "message:new")]
            assert sorted(ids) == sorted([m["id"] for m in got] + [barrier["id"]])
        assert alice_a.received(CHAT, "message:new") == []  # the sending device gets its acks only
    await redis.aclose()


async def test_presence_watchers_on_three_nodes_get_each_change_once(env: dict[str, str], redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    async with three_nodes(env) as (apps, opened):
        watchers = []
        for i, node in enumerate(apps):
            watcher = await connect(node.url, f"w{i}", token_for(node.settings, f"w{i}"), [PRESENCE])
            opened.append(watcher)
            await subscribe(watcher, ["target"])
            watchers.append(watcher)
        prefix = apps[0].settings.redis_prefix
        assert await _subscribers(redis, f"{prefix}:room:{PRESENCE}:p:target", 3) == 3
        target = await connect(apps[0].url, "target", token_for(apps[0].settings, "target"), [PRESENCE])
        opened.append(target)
        for w in watchers:
            await update(w, "target", "online")
        await call_ok(target, "presence:set", {"status": "away"})
        for w in watchers:
            await update(w, "target", "away")
        await call_ok(target, "presence:set", {"status": "online"})  # the barrier: ordered after "away"
        for w in watchers:
            await update(w, "target", "online", skip=2)
            assert [u["status"] for u in updates(w, "target")] == ["online", "away", "online"]
    await redis.aclose()
