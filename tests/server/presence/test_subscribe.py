"""One node, no Redis: snapshots, updates on real changes only, multi-device, last_seen, caps, bad input."""

from __future__ import annotations

import asyncio
import datetime as dt

from server.app import CORE, SIO
from tests.server.presence.conftest import PRESENCE, call_ok, error_code, subscribe, update, updates


def _parse(ts: str) -> dt.datetime:
    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))


async def test_snapshot_then_updates_on_real_changes(app_server, clients) -> None:
    alice = await clients(app_server, "alice", namespaces=[PRESENCE])
    snap = await subscribe(alice, ["bob", "nobody"])
    assert snap["bob"] == {"user": "bob", "status": "offline", "last_seen": None}
    assert snap["nobody"] == {"user": "nobody", "status": "offline", "last_seen": None}

    bob = await clients(app_server, "bob")  # all three namespaces: still one device
    assert await update(alice, "bob", "online") == {"user": "bob", "status": "online", "last_seen": None}
    # Activity while online is not a change.
    await call_ok(bob, "presence:heartbeat", {})
    await call_ok(bob, "presence:set", {"status": "online"})
    await call_ok(bob, "presence:set", {"status": "away"})
    assert await update(alice, "bob", "away", skip=1) == {"user": "bob", "status": "away", "last_seen": None}
    assert [p["status"] for p in updates(alice, "bob")] == ["online", "away"]

    # A late subscriber gets the current state in its snapshot.
    carol = await clients(app_server, "carol", namespaces=[PRESENCE])
    assert (await subscribe(carol, ["bob"]))["bob"]["status"] == "away"


async def test_multi_device_online_until_the_last_leaves_then_last_seen_persisted(app_server, clients) -> None:
    alice = await clients(app_server, "alice", namespaces=[PRESENCE])
    await subscribe(alice, ["bob"])
    phone = await clients(app_server, "bob", namespaces=[PRESENCE])
    await update(alice, "bob", "online")
    laptop = await clients(app_server, "bob", namespaces=[PRESENCE])
    await phone.close()
    before_last = dt.datetime.now(dt.UTC)
    await laptop.close()
    offline = await update(alice, "bob", "offline")
    after = dt.datetime.now(dt.UTC)
    # Exactly online then offline: the second device and the first leaving changed nothing visible.
    assert [p["status"] for p in updates(alice, "bob")] == ["online", "offline"]
    seen = _parse(offline["last_seen"])
    assert before_last - dt.timedelta(seconds=1) <= seen <= after
    # last_seen is the moment the last device left, not when the grace ended.
    grace = float(app_server.settings.env().number("PAIRLY_PRESENCE_GRACE_S", 5))
    assert seen <= after - dt.timedelta(seconds=grace * 0.5)

    db = app_server.app[CORE].db
    for _ in range(100):  # written behind by the sweep
        doc = await db["presence"].find_one({"_id": "bob"})
        if doc and doc.get("last_seen"):
            break
        await asyncio.sleep(0.05)
    assert doc is not None and abs(doc["last_seen"].timestamp() - seen.timestamp()) < 0.01
    # A fresh subscriber sees the same last_seen.
    dave = await clients(app_server, "dave", namespaces=[PRESENCE])
    assert (await subscribe(dave, ["bob"]))["bob"] == offline


async def test_unsubscribe_and_subscriptions_end_with_the_connection(app_server, clients) -> None:
    alice = await clients(app_server, "alice", namespaces=[PRESENCE])
    await subscribe(alice, ["bob", "carol"])
    await call_ok(alice, "presence:unsubscribe", {"users": ["bob", "never-subscribed"]})
    await clients(app_server, "bob", namespaces=[PRESENCE])
    await clients(app_server, "carol", namespaces=[PRESENCE])
    await update(alice, "carol", "online")  # carol's update arrives; bob's (connected first) did not
    assert updates(alice, "bob") == []

    sio = app_server.app[SIO]
    service = sio.namespace_handlers[PRESENCE].presence
    sid = alice.sio.get_sid(PRESENCE)
    assert service.subscriptions(sid) == 1
    await alice.close()
    # The disconnect handler clears the subscriptions, then Socket.IO drops the sid from its rooms.
    for _ in range(100):
        if service.subscriptions(sid) == 0 and sid not in dict(sio.manager.get_participants(PRESENCE, "p:carol")):
            break
        await asyncio.sleep(0.02)
    assert service.subscriptions(sid) == 0
    assert sid not in dict(sio.manager.get_participants(PRESENCE, "p:carol"))
    # A new connection of alice starts with no subscriptions.
    again = await clients(app_server, "alice", namespaces=[PRESENCE])
    assert service.subscriptions(again.sio.get_sid(PRESENCE)) == 0


async def test_caps_and_bad_payloads_get_clear_errors_and_change_nothing(env, clients) -> None:
    from tests.support.apps import make_settings, running_app

    capped = {**env, "PAIRLY_PRESENCE_MAX_SUBSCRIBE": "3", "PAIRLY_PRESENCE_MAX_SUBSCRIPTIONS": "4"}
    async with running_app(make_settings(capped)) as app:
        alice = await clients(app, "alice", namespaces=[PRESENCE])
        bad = [
            ("presence:subscribe", None, "invalid_payload"),
            ("presence:subscribe", "bob", "invalid_payload"),
            ("presence:subscribe", {"users": "bob"}, "invalid_payload"),
            ("presence:subscribe", {"users": [1, 2]}, "invalid_payload"),
            ("presence:subscribe", {"users": [""]}, "invalid_payload"),
            ("presence:subscribe", {"users": ["x" * 300]}, "invalid_payload"),
            ("presence:subscribe", {"users": [None]}, "invalid_payload"),
            ("presence:subscribe", {"users": [{"id": "bob"}]}, "invalid_payload"),
            ("presence:subscribe", {"users": ["a", "b", "c", "d"]}, "too_large"),
            ("presence:subscribe", {"users": [f"u{i}" for i in range(5000)]}, "too_large"),
            ("presence:subscribe", {"users": ["u"] * 100_000}, "too_large"),  # over the payload cap
            ("presence:unsubscribe", {"users": 5}, "invalid_payload"),
            ("presence:set", {"status": "busy"}, "invalid_payload"),
            ("presence:set", {"status": "offline"}, "invalid_payload"),
            ("presence:set", {}, "invalid_payload"),
            ("presence:set", ["online"], "invalid_payload"),
            ("presence:heartbeat", "now", "invalid_payload"),
            ("presence:nonsense", {}, "invalid_payload"),
        ]
        for event, data, code in bad:
            ack = await alice.sio.call(event, data, namespace=PRESENCE, timeout=10)
            assert error_code(ack) == code, (event, data, ack)
            assert ack["error"]["message"]
        # The connection is fine and nothing was subscribed by the failures.
        assert (await subscribe(alice, ["a", "b", "c"])).keys() == {"a", "b", "c"}
        ack = await alice.call(PRESENCE, "presence:subscribe", {"users": ["d", "e"]})
        assert error_code(ack) == "too_large" and "at most 4" in ack["error"]["message"]
        # Re-subscribing counts once; the one free slot still takes one more.
        await subscribe(alice, ["a", "b", "d"])
        assert error_code(await alice.call(PRESENCE, "presence:subscribe", {"users": ["e"]})) == "too_large"
        # The refused "e" was not subscribed: freeing a slot lets it in.
        await call_ok(alice, "presence:unsubscribe", {"users": ["a"]})
        await subscribe(alice, ["e"])
        # alice's status was not changed by a refused presence:set.
        bob = await clients(app, "bob", namespaces=[PRESENCE])
        assert (await subscribe(bob, ["alice"]))["alice"]["status"] == "online"
        await alice.close()  # before the app stops, or its drain waits for the clients
        await bob.close()
