"""Two nodes sharing Redis and the store: messages, receipts and edits reach devices on the other node."""

from __future__ import annotations

import asyncio

import pytest

from tests.server.chat.conftest import CHAT, sent
from tests.support.apps import make_settings, running_app
from tests.support.clients import connect, token_for


@pytest.fixture
def env(base_env: dict[str, str], redis_url: str) -> dict[str, str]:
    return {**base_env, "REDIS_URL": redis_url, "PAIRLY_RATE_LIMITS": "*=1000/1,message:send=1000/1"}


async def test_cross_node_delivery(env: dict[str, str]) -> None:
    async with running_app(make_settings({**env, "PAIRLY_NODE_ID": "A"})) as a, \
            running_app(make_settings({**env, "PAIRLY_NODE_ID": "B"})) as b:
        alice_a = await connect(a.url, "alice", token_for(a.settings, "alice"), [CHAT])
        alice_b = await connect(b.url, "alice", token_for(b.settings, "alice"), [CHAT])
        bob_a = await connect(a.url, "bob", token_for(a.settings, "bob"), [CHAT])
        bob_b = await connect(b.url, "bob", token_for(b.settings, "bob"), [CHAT])
        await asyncio.sleep(0.1)  # the Redis subscription of a new room is asynchronous to the connect ack
        waits = [asyncio.create_task(c.next(CHAT, "message:new")) for c in (alice_b, bob_a, bob_b)]
        m = await sent(alice_a, "bob", "across")
        assert [await w for w in waits] == [m, m, m]
        # Bob answers from node B; receipts and edits cross back.
        status = asyncio.create_task(alice_a.next(CHAT, "message:status"))
        assert (await bob_b.call(CHAT, "message:delivered", {"ids": [m["id"]]}))["ok"]
        assert (await status)["status"] == "delivered"
        updated = asyncio.create_task(bob_a.next(CHAT, "message:updated"))
        assert (await alice_b.call(CHAT, "message:edit", {"id": m["id"], "text": "edited"}))["ok"]
        assert (await updated)["text"] == "edited"
        # Many senders on both nodes at once: each recipient device gets every message exactly once.
        sends = [sent(alice_a if i % 2 else alice_b, "bob", f"n{i}") for i in range(8)]
        got = await asyncio.gather(*sends)
        reply = await sent(bob_a, "alice", "barrier")
        for client in (alice_a, alice_b):
            while reply["id"] not in [x["id"] for x in client.received(CHAT, "message:new")]:
                await client.next(CHAT, "message:new")
        for client in (bob_a, bob_b):
            while not {g["id"] for g in got} <= {x["id"] for x in client.received(CHAT, "message:new")}:
                await client.next(CHAT, "message:new")
            ids = [x["id"] for x in client.received(CHAT, "message:new")]
            assert len(ids) == len(set(ids)) == 9
        for c in (alice_a, alice_b, bob_a, bob_b):
            await c.close()
