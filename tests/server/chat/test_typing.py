"""typing: relayed to the recipient's devices, throttled, dropped for blocked pairs, never stored or charged."""

from __future__ import annotations

import asyncio

from server.app import CHAT as CHAT_KEY
from server.app import CORE, LEDGER
from tests.server.chat.conftest import CHAT


async def _flush(sender, receiver, to: str) -> None:
    """Typing has no ack; a start→stop pair after the action proves earlier ones were processed."""
    got = asyncio.create_task(receiver.next(CHAT, "typing"))
    await sender.sio.emit("typing", {"to": to, "state": "start"}, namespace=CHAT)
    assert (await got)["state"] == "start"
    got = asyncio.create_task(receiver.next(CHAT, "typing"))
    await sender.sio.emit("typing", {"to": to, "state": "stop"}, namespace=CHAT)
    assert (await got)["state"] == "stop"


async def test_typing_relay_throttle_and_blocks(app_server, clients) -> None:
    alice = await clients(app_server, "alice", namespaces=[CHAT])
    b1 = await clients(app_server, "bob", namespaces=[CHAT])
    b2 = await clients(app_server, "bob", namespaces=[CHAT])
    # Events of one sender are handled concurrently; relative order of typing events is only kept once
    # the block lookup is cached (the first one of a pair goes to the store).
    await app_server.app[CORE].blocks.either_blocked("alice", "bob")
    waits = [asyncio.create_task(b.next(CHAT, "typing")) for b in (b1, b2)]
    for _ in range(5):  # repeated starts inside the throttle window are relayed once
        await alice.sio.emit("typing", {"to": "bob", "state": "start"}, namespace=CHAT)
    assert [await w for w in waits] == [{"from": "alice", "state": "start"}] * 2
    stop = asyncio.create_task(b1.next(CHAT, "typing"))
    await alice.sio.emit("typing", {"to": "bob", "state": "stop"}, namespace=CHAT)
    assert await stop == {"from": "alice", "state": "stop"}
    assert b1.received(CHAT, "typing") == [{"from": "alice", "state": "start"}, {"from": "alice", "state": "stop"}]
    # Malformed typing is dropped silently, no ack, and the connection keeps working.
    for bad in ({"to": "bob"}, {"to": 1, "state": "start"}, "x", None, {"to": "bob", "state": "dance"}):
        await alice.sio.emit("typing", bad, namespace=CHAT)
    # Blocked: dropped both ways.
    assert (await b1.call(CHAT, "user:block", {"user": "alice"}))["ok"]
    await alice.sio.emit("typing", {"to": "bob", "state": "start"}, namespace=CHAT)
    await b1.sio.emit("typing", {"to": "alice", "state": "start"}, namespace=CHAT)
    carol = await clients(app_server, "carol", namespaces=[CHAT])
    await _flush(alice, carol, "carol")
    assert len(b1.received(CHAT, "typing")) == 2 and alice.received(CHAT, "typing") == []
    # Never stored, never charged.
    assert await app_server.app[CHAT_KEY].store.messages.count_documents({}) == 0
    assert (await app_server.app[LEDGER].wallet("alice")).balance == 10
