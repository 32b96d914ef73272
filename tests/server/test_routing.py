"""Two nodes sharing Redis: emits reach a user's devices on other nodes, and only the nodes holding them."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from server.app import CORE, SIO
from server.rooms import user_room
from tests.support.apps import make_settings, running_app
from tests.support.clients import connect, token_for


@pytest.fixture
def env(base_env: dict[str, str], redis_url: str) -> dict[str, str]:
    return {**base_env, "REDIS_URL": redis_url}


async def test_emit_on_node_a_reaches_user_on_node_b(env: dict[str, str]) -> None:
    async with running_app(make_settings({**env, "PAIRLY_NODE_ID": "A"})) as a, \
            running_app(make_settings({**env, "PAIRLY_NODE_ID": "B"})) as b:
        bob_b = await connect(b.url, "bob", token_for(b.settings, "bob"))
        bob_a = await connect(a.url, "bob", token_for(a.settings, "bob"), ["/chat"])
        got_b = asyncio.create_task(bob_b.next("/chat", "hello"))
        got_a = asyncio.create_task(bob_a.next("/chat", "hello"))
        await asyncio.sleep(0.1)  # the subscription on B is asynchronous to the connect ack
        await a.app[SIO].emit("hello", {"n": 1}, room=user_room("bob"), namespace="/chat")
        assert await got_b == {"n": 1}
        assert await got_a == {"n": 1}
        # Delivered once per device: nothing duplicated through Redis for the local device.
        await asyncio.sleep(0.2)
        assert len(bob_a.received("/chat", "hello")) == 1
        assert len(bob_b.received("/chat", "hello")) == 1
        await bob_a.close()
        await bob_b.close()


async def test_only_nodes_holding_the_user_subscribe(env: dict[str, str], redis_url: str) -> None:
    settings = make_settings(env)
    redis = Redis.from_url(redis_url)
    channel = f"{settings.redis_prefix}:room:/chat:{user_room('carol')}"
    async with running_app(settings) as a:
        assert (await redis.pubsub_numsub(channel))[0][1] == 0
        carol = await connect(a.url, "carol", token_for(a.settings, "carol"), ["/chat"])
        await asyncio.sleep(0.1)
        assert (await redis.pubsub_numsub(channel))[0][1] == 1
        await carol.close()
        for _ in range(50):
            if (await redis.pubsub_numsub(channel))[0][1] == 0:
                break
            await asyncio.sleep(0.05)
        assert (await redis.pubsub_numsub(channel))[0][1] == 0
    await redis.aclose()


async def test_disconnect_user_reaches_every_node(env: dict[str, str]) -> None:
    async with running_app(make_settings({**env, "PAIRLY_NODE_ID": "A"})) as a, \
            running_app(make_settings({**env, "PAIRLY_NODE_ID": "B"})) as b:
        dan = await connect(b.url, "dan", token_for(b.settings, "dan"))
        other = await connect(b.url, "eve", token_for(b.settings, "eve"), ["/chat"])
        revoked = asyncio.create_task(dan.next("/presence", "session:revoked"))
        await asyncio.sleep(0.1)
        await a.app[CORE].notifier.disconnect_user("dan", "banned")
        assert await revoked == {"reason": "banned"}
        for _ in range(100):
            if not dan.sio.namespaces:
                break
            await asyncio.sleep(0.05)
        assert not dan.sio.namespaces
        assert other.sio.connected and "/chat" in other.sio.namespaces
        await other.close()
        await dan.close()
