"""Receipts and read state: delivered/read statuses, conversation:updated, exact unread counts."""

from __future__ import annotations

import asyncio

from tests.server.chat.conftest import CHAT, error_code, sent


async def _unread(client, peer: str) -> int:
    listing = await client.call(CHAT, "conversation:list", {})
    for conv in listing["conversations"]:
        if conv["with"] == peer:
            return int(conv["unread"])
    raise AssertionError(f"no conversation with {peer}")


async def test_delivered_and_read_receipts(app_server, clients) -> None:
    a1 = await clients(app_server, "alice", namespaces=[CHAT])
    a2 = await clients(app_server, "alice", namespaces=[CHAT])
    b1 = await clients(app_server, "bob", namespaces=[CHAT])
    b2 = await clients(app_server, "bob", namespaces=[CHAT])
    ms = [await sent(a1, "bob", f"m{i}") for i in range(3)]
    ids = [m["id"] for m in ms]

    statuses = [asyncio.create_task(c.next(CHAT, "message:status")) for c in (a1, a2)]
    assert (await b1.call(CHAT, "message:delivered", {"ids": ids}))["ok"]
    for st in await asyncio.gather(*statuses):
        assert st["ids"] == ids and st["status"] == "delivered" and st["at"]
    # Again (another device): nothing changes, nothing is announced twice.
    assert (await b2.call(CHAT, "message:delivered", {"ids": ids}))["ok"]
    # Only the recipient can confirm delivery.
    assert (await a1.call(CHAT, "message:delivered", {"ids": ids}))["ok"]
    history = await b1.call(CHAT, "conversation:history", {"with": "alice"})
    assert {m["status"] for m in history["messages"]} == {"delivered"}

    assert await _unread(b1, "alice") == 3
    read_status = asyncio.create_task(a1.next(CHAT, "message:status"))
    updated = [asyncio.create_task(c.next(CHAT, "conversation:updated")) for c in (b1, b2)]
    ack = await b1.call(CHAT, "conversation:read", {"with": "alice", "up_to": ids[1]})
    assert ack == {"ok": True, "unread": 1}
    st = await read_status
    assert st["ids"] == ids[:2] and st["status"] == "read"
    assert [await u for u in updated] == [{"with": "alice", "unread": 1}] * 2
    assert a1.received(CHAT, "message:status").count(st) == 1
    assert await _unread(b1, "alice") == 1
    # The pointer never moves back; reading the rest clears it.
    assert (await b1.call(CHAT, "conversation:read", {"with": "alice", "up_to": ids[0]}))["unread"] == 1
    assert (await b1.call(CHAT, "conversation:read", {"with": "alice", "up_to": ids[2]}))["unread"] == 0
    assert await _unread(b1, "alice") == 0
    history = await a1.call(CHAT, "conversation:history", {"with": "bob"})
    assert [m["status"] for m in history["messages"]] == ["read", "read", "read"]
    # Own messages never count as unread; a sender's list shows 0.
    assert await _unread(a1, "bob") == 0


async def test_unread_stays_exact_while_messages_keep_arriving(app_server, clients) -> None:
    alice = await clients(app_server, "alice", namespaces=[CHAT])
    bob = await clients(app_server, "bob", namespaces=[CHAT])
    first = [await sent(alice, "bob", f"a{i}") for i in range(4)]
    more = asyncio.gather(*(sent(alice, "bob", f"b{i}") for i in range(5)))
    ack = await bob.call(CHAT, "conversation:read", {"with": "alice", "up_to": first[-1]["id"]})
    later = await more
    assert ack["ok"]
    # Whatever interleaving happened, unread == messages above the pointer.
    above = [m for m in later if m["id"] > first[-1]["id"]]
    assert await _unread(bob, "alice") == len(above) == 5


async def test_read_errors(app_server, clients) -> None:
    alice = await clients(app_server, "alice", namespaces=[CHAT])
    bob = await clients(app_server, "bob", namespaces=[CHAT])
    m = await sent(alice, "carol", "not bob's")
    assert error_code(await bob.call(CHAT, "conversation:read", {"with": "alice", "up_to": m["id"]})) == "not_found"
    assert error_code(await bob.call(CHAT, "conversation:read", {"with": "alice", "up_to": "0" * 22})) == "not_found"
