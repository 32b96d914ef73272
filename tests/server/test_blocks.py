"""BlockStore announces every real block change: in process, and through Redis to the other nodes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from server.blocks import BlockChange, BlockEvents, BlockStore, RedisBlockEvents


@pytest.fixture
async def db(mongo_url: str, base_env: dict[str, str]) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    yield client[base_env["MONGO_DB"]]
    await client.drop_database(base_env["MONGO_DB"])
    await client.close()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


def _recorder(events: BlockEvents) -> list[BlockChange]:
    heard: list[BlockChange] = []

    async def listener(change: BlockChange) -> None:
        heard.append(change)

    events.subscribe(listener)
    return heard


async def _eventually(check: Any, timeout: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_only_real_changes_are_announced(db) -> None:
    events = BlockEvents()
    heard = _recorder(events)
    blocks = BlockStore(db, events=events)
    await blocks.block("bob", "alice")
    await blocks.block("bob", "alice")  # already blocked: nothing changes
    await blocks.unblock("bob", "alice")
    await blocks.unblock("bob", "alice")
    await blocks.unblock("bob", "carol")  # never blocked
    assert heard == [BlockChange("bob", "alice", True), BlockChange("bob", "alice", False)]


async def test_a_failing_listener_does_not_fail_the_block_or_the_others(db) -> None:
    events = BlockEvents()

    async def broken(_: BlockChange) -> None:
        raise RuntimeError("boom")

    events.subscribe(broken)
    heard = _recorder(events)
    blocks = BlockStore(db, events=events)
    await blocks.block("bob", "alice")
    assert heard == [BlockChange("bob", "alice", True)]
    assert await blocks.is_blocked("bob", "alice")


async def test_a_change_on_one_node_reaches_the_others_once_and_clears_their_cache(db, redis, base_env) -> None:
    prefix = base_env["REDIS_PREFIX"]
    node_a, node_b = RedisBlockEvents(redis, prefix, "A"), RedisBlockEvents(redis, prefix, "B")
    heard_a, heard_b = _recorder(node_a), _recorder(node_b)
    # A cache TTL far longer than the test: only the notification can make B see the change.
    blocks_a, blocks_b = BlockStore(db, events=node_a, ttl_s=600), BlockStore(db, events=node_b, ttl_s=600)
    await node_a.start()
    await node_b.start()
    try:
        assert await blocks_b.blocked_by("bob") == frozenset()  # cached on B
        await blocks_a.block("bob", "alice")
        assert heard_a == [BlockChange("bob", "alice", True)]  # delivered on A before block() returns
        await _eventually(lambda: len(heard_b) == 1)
        assert heard_b == [BlockChange("bob", "alice", True)]
        assert await blocks_b.blocked_by("bob") == frozenset({"alice"})
        assert await blocks_b.either_blocked("alice", "bob")

        await blocks_b.unblock("bob", "alice")
        await _eventually(lambda: len(heard_a) == 2)
        assert heard_a[-1] == BlockChange("bob", "alice", False)
        assert await blocks_a.blocked_by("bob") == frozenset()
        await asyncio.sleep(0.2)  # no node hears its own publish a second time
        assert len(heard_a) == 2 and len(heard_b) == 2
    finally:
        await node_a.stop()
        await node_b.stop()


async def test_nodes_of_another_deployment_hear_nothing(db, redis, base_env) -> None:
    ours = RedisBlockEvents(redis, base_env["REDIS_PREFIX"], "A")
    theirs = RedisBlockEvents(redis, base_env["REDIS_PREFIX"] + "-other", "B")
    heard = _recorder(theirs)
    await ours.start()
    await theirs.start()
    try:
        await BlockStore(db, events=ours).block("bob", "alice")
        await asyncio.sleep(0.2)
        assert heard == []
    finally:
        await ours.stop()
        await theirs.stop()
