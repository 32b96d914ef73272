"""Explicit away and invisible (sticky across reconnects and devices)."""

from __future__ import annotations

from tests.server.presence.conftest import PRESENCE, call_ok, subscribe, update, updates


async def test_explicit_away_and_invisible(app_server, clients) -> None:
    alice = await clients(app_server, "alice", namespaces=[PRESENCE])
    await subscribe(alice, ["bob"])
    bob = await clients(app_server, "bob", namespaces=[PRESENCE])
    await update(alice, "bob", "online")

    await call_ok(bob, "presence:set", {"status": "away"})
    await update(alice, "bob", "away")
    await call_ok(bob, "presence:heartbeat", {})  # activity does not end an explicit away
    await call_ok(bob, "presence:set", {"status": "invisible"})
    hidden = await update(alice, "bob", "offline")
    assert hidden["last_seen"] is not None  # exactly as if bob had left, now
    assert [p["status"] for p in updates(alice, "bob")] == ["online", "away", "offline"]

    # Invisible survives a reconnect and a new device: nobody sees bob come or go.
    other = await clients(app_server, "bob", namespaces=[PRESENCE])
    await bob.close()
    await other.close()
    bob = await clients(app_server, "bob", namespaces=[PRESENCE])
    carol = await clients(app_server, "carol", namespaces=[PRESENCE])
    assert (await subscribe(carol, ["bob"]))["bob"] == hidden
    await call_ok(bob, "presence:set", {"status": "online"})
    await update(alice, "bob", "online", skip=3)
    await update(carol, "bob", "online")
    assert [p["status"] for p in updates(alice, "bob")] == ["online", "away", "offline", "online"]


async def test_explicit_away_is_kept_across_sessions(app_server, clients) -> None:
    alice = await clients(app_server, "alice", namespaces=[PRESENCE])
    await subscribe(alice, ["bob"])
    bob = await clients(app_server, "bob", namespaces=[PRESENCE])
    await call_ok(bob, "presence:set", {"status": "away"})
    await update(alice, "bob", "away")
    await bob.close()
    await update(alice, "bob", "offline")
    await clients(app_server, "bob", namespaces=[PRESENCE])
    assert (await update(alice, "bob", "away", skip=3))["last_seen"] is None
    assert [p["status"] for p in updates(alice, "bob")] == ["online", "away", "offline", "away"]
