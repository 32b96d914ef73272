"""Away after idle time, and any activity bringing a user back to online."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.server.presence.conftest import FAST, PRESENCE, call_ok, subscribe, update, updates


@pytest.fixture
def env(base_env: dict[str, str]) -> dict[str, str]:
    return {**base_env, **FAST, "PAIRLY_PRESENCE_AWAY_AFTER_S": "0.6"}


async def test_idle_user_turns_away_and_activity_brings_them_back(app_server, clients) -> None:
    alice = await clients(app_server, "alice", namespaces=[PRESENCE])
    await subscribe(alice, ["bob"])
    bob = await clients(app_server, "bob")  # one device on all three namespaces
    online_at = time.monotonic()
    await update(alice, "bob", "online")
    await update(alice, "bob", "away")
    idle_for = time.monotonic() - online_at
    assert 0.5 <= idle_for < 3.0, idle_for  # the bound itself: away_after (0.6 s) plus a sweep
    # The heartbeat's ack comes after the change: the update is already on its way.
    await call_ok(bob, "presence:heartbeat", {})
    await update(alice, "bob", "online", skip=2)
    # Any client event counts as activity, a chat event too (whatever its answer).
    await update(alice, "bob", "away", skip=3)
    await bob.call("/chat", "conversation:list", {})
    await update(alice, "bob", "online", skip=4)
    assert [p["status"] for p in updates(alice, "bob")][:5] == ["online", "away", "online", "away", "online"]


async def test_activity_keeps_a_user_online(app_server, clients) -> None:
    alice = await clients(app_server, "alice", namespaces=[PRESENCE])
    await subscribe(alice, ["bob"])
    bob = await clients(app_server, "bob", namespaces=["/chat", PRESENCE])
    await update(alice, "bob", "online")
    until = time.monotonic() + 2.0
    while time.monotonic() < until:  # the behaviour is about elapsed time: stay busy for 3 x away_after
        await call_ok(bob, "presence:heartbeat", {})
        await bob.call("/chat", "conversation:list", {})
        await asyncio.sleep(0.05)
    assert [p["status"] for p in updates(alice, "bob")] == ["online"]
