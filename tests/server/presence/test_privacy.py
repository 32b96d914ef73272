"""Blocks: a user who blocked the viewer looks offline to them, in snapshots and updates, at once."""

from __future__ import annotations

from server.app import CORE
from tests.server.presence.conftest import PRESENCE, call_ok, subscribe, update, updates


async def test_blocker_looks_offline_to_the_blocked(app_server, clients) -> None:
    blocks = app_server.app[CORE].blocks
    await blocks.block("bob", "alice")
    bob = await clients(app_server, "bob", namespaces=[PRESENCE])
    alice = await clients(app_server, "alice", namespaces=[PRESENCE])
    carol = await clients(app_server, "carol", namespaces=[PRESENCE])
    assert (await subscribe(alice, ["bob"]))["bob"] == {"user": "bob", "status": "offline", "last_seen": None}
    assert (await subscribe(carol, ["bob"]))["bob"]["status"] == "online"
    # bob blocked alice, not the other way round: bob still sees alice.
    assert (await subscribe(bob, ["alice"]))["alice"]["status"] == "online"

    await call_ok(bob, "presence:set", {"status": "away"})
    await update(carol, "bob", "away")
    await call_ok(bob, "presence:set", {"status": "online"})
    await update(carol, "bob", "online", skip=1)
    assert updates(alice, "bob") == []


async def test_block_and_unblock_after_subscribing_apply_at_once(app_server, clients) -> None:
    blocks = app_server.app[CORE].blocks
    alice = await clients(app_server, "alice", namespaces=[PRESENCE])
    carol = await clients(app_server, "carol", namespaces=[PRESENCE])
    await subscribe(alice, ["bob"])
    await subscribe(carol, ["bob"])
    bob = await clients(app_server, "bob", namespaces=[PRESENCE])
    await update(alice, "bob", "online")

    await blocks.block("bob", "alice")
    assert await update(alice, "bob", "offline") == {"user": "bob", "status": "offline", "last_seen": None}
    await call_ok(bob, "presence:set", {"status": "away"})
    await update(carol, "bob", "away", skip=1)
    assert [p["status"] for p in updates(alice, "bob")] == ["online", "offline"]

    await blocks.unblock("bob", "alice")
    assert await update(alice, "bob", "away") == {"user": "bob", "status": "away", "last_seen": None}
    await call_ok(bob, "presence:set", {"status": "online"})
    await update(alice, "bob", "online", skip=3)
    assert [p["status"] for p in updates(alice, "bob")] == ["online", "offline", "away", "online"]


async def test_a_block_through_chat_applies_at_once_on_a_single_node_without_redis(app_server, clients) -> None:
    assert app_server.app[CORE].redis is None
    blocks = app_server.app[CORE].blocks
    alice = await clients(app_server, "alice", namespaces=[PRESENCE])
    await subscribe(alice, ["bob"])
    bob = await clients(app_server, "bob", namespaces=["/chat", PRESENCE])
    await update(alice, "bob", "online")
    assert not await blocks.is_blocked("bob", "alice")  # now cached (5 s)

    assert (await bob.call("/chat", "user:block", {"user": "alice"}))["ok"]
    assert await blocks.is_blocked("bob", "alice")  # the cache was dropped, not waited out
    assert await update(alice, "bob", "offline") == {"user": "bob", "status": "offline", "last_seen": None}
    assert (await bob.call("/chat", "user:block", {"user": "alice"}))["ok"]  # again: nothing changes
    assert (await bob.call("/chat", "user:unblock", {"user": "alice"}))["ok"]
    await update(alice, "bob", "online", skip=2)
    assert [p["status"] for p in updates(alice, "bob")] == ["online", "offline", "online"]
