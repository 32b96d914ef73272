"""The grace window: a quick reconnect is invisible to watchers; a real departure is announced after it."""

from __future__ import annotations

import asyncio
import time

from tests.server.presence.conftest import PRESENCE, subscribe, update, updates
from tests.support.apps import make_settings, running_app


async def test_reconnect_within_grace_is_not_broadcast(env, clients) -> None:
    async with running_app(make_settings({**env, "PAIRLY_PRESENCE_GRACE_S": "1.5"})) as app:
        alice = await clients(app, "alice", namespaces=[PRESENCE])
        await subscribe(alice, ["bob"])
        bob = await clients(app, "bob", namespaces=[PRESENCE])
        await update(alice, "bob", "online")
        for _ in range(3):  # flaky network: drop and come back, three times
            await bob.close()
            bob = await clients(app, "bob", namespaces=[PRESENCE])
        # While bob was away between connections a snapshot still said online (no flapping there either).
        carol = await clients(app, "carol", namespaces=[PRESENCE])
        assert (await subscribe(carol, ["bob"]))["bob"]["status"] == "online"
        await asyncio.sleep(2.0)  # the behaviour is "nothing within the grace window": wait past it
        assert [p["status"] for p in updates(alice, "bob")] == ["online"]
        assert updates(carol, "bob") == []

        left = time.monotonic()
        await bob.close()
        offline = await update(alice, "bob", "offline")
        waited = time.monotonic() - left
        assert 1.2 <= waited < 4.0, waited  # announced once the 1.5 s grace is over, not before
        assert offline["last_seen"] is not None
        assert (await update(carol, "bob", "offline")) == offline
        await alice.close()  # before the app stops, or its drain waits for the clients
        await carol.close()


async def test_zero_grace_announces_at_once(env, clients) -> None:
    async with running_app(make_settings({**env, "PAIRLY_PRESENCE_GRACE_S": "0"})) as app:
        alice = await clients(app, "alice", namespaces=[PRESENCE])
        await subscribe(alice, ["bob"])
        bob = await clients(app, "bob", namespaces=[PRESENCE])
        await update(alice, "bob", "online")
        await bob.close()
        await update(alice, "bob", "offline", timeout=2.0)
        await alice.close()  # before the app stops, or its drain waits for the client
