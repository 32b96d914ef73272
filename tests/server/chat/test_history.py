"""conversation:history, conversation:list and sync: ordering, cursors, page boundaries, reconnect catch-up."""

from __future__ import annotations

import asyncio

from server.app import LEDGER
from tests.server.chat.conftest import CHAT, error_code, sent
from tests.support.clients import connect, token_for


async def test_history_pagination_boundaries(app_server, clients) -> None:
    alice = await clients(app_server, "alice", namespaces=[CHAT])
    bob = await clients(app_server, "bob", namespaces=[CHAT])
    ids = []
    for i in range(6):
        ids.append((await sent(alice if i % 2 else bob, "bob" if i % 2 else "alice", f"m{i}"))["id"])
    await sent(alice, "carol", "other conversation")
    newest_first = list(reversed(ids))
    # Exact multiple of the page size: the last full page still says there may be more, then an empty page.
    page1 = await alice.call(CHAT, "conversation:history", {"with": "bob", "limit": 3})
    assert [m["id"] for m in page1["messages"]] == newest_first[:3] and page1["next_before"] == newest_first[2]
    page2 = await alice.call(CHAT, "conversation:history", {"with": "bob", "limit": 3, "before": page1["next_before"]})
    assert [m["id"] for m in page2["messages"]] == newest_first[3:]
    assert page2["next_before"] is None
    # Uneven pages, limit 1 and the maximum.
    walked, before = [], None
    while True:
        page = await bob.call(CHAT, "conversation:history", {"with": "alice", "limit": 4, "before": before})
        walked += [m["id"] for m in page["messages"]]
        before = page["next_before"]
        if before is None:
            break
    assert walked == newest_first
    one = await bob.call(CHAT, "conversation:history", {"with": "alice", "limit": 1})
    assert [m["id"] for m in one["messages"]] == newest_first[:1] and one["next_before"] == newest_first[0]
    assert len((await bob.call(CHAT, "conversation:history", {"with": "alice", "limit": 100}))["messages"]) == 6
    empty = await bob.call(CHAT, "conversation:history", {"with": "zed"})
    assert empty == {"ok": True, "messages": [], "next_before": None}
    for bad in (0, 101, "5", True):
        assert error_code(await bob.call(CHAT, "conversation:history", {"with": "alice", "limit": bad})) == \
            "invalid_payload"


async def test_list_orders_by_last_activity_with_cursor(app_server, clients) -> None:
    alice = await clients(app_server, "alice", namespaces=[CHAT])
    peers = ["p1", "p2", "p3", "p4"]
    for p in peers:
        await sent(alice, p, f"to {p}")
    p2 = await clients(app_server, "p2", namespaces=[CHAT])
    last = await sent(p2, "alice", "p2 again")  # p2 becomes the most recent
    listing = await alice.call(CHAT, "conversation:list", {"limit": 3})
    assert [c["with"] for c in listing["conversations"]] == ["p2", "p4", "p3"]
    assert listing["conversations"][0]["last_message"] == last and listing["conversations"][0]["unread"] == 1
    assert listing["conversations"][1]["unread"] == 0
    rest = await alice.call(CHAT, "conversation:list", {"limit": 3, "before": listing["next"]})
    assert [c["with"] for c in rest["conversations"]] == ["p1"] and rest["next"] is None
    assert (await p2.call(CHAT, "conversation:list", {}))["conversations"][0]["with"] == "alice"


async def test_sync_pages_oldest_first(app_server, clients) -> None:
    alice = await clients(app_server, "alice", namespaces=[CHAT])
    bob = await clients(app_server, "bob", namespaces=[CHAT])
    ids = [(await sent(alice, "bob", f"m{i}"))["id"] for i in range(5)]
    ids.append((await sent(bob, "alice", "back"))["id"])
    await sent(bob, "carol", "not alice's")
    page = await alice.call(CHAT, "sync", {"since": None, "limit": 4})
    assert [m["id"] for m in page["messages"]] == ids[:4] and page["more"] is True
    page = await alice.call(CHAT, "sync", {"since": ids[3], "limit": 4})
    assert [m["id"] for m in page["messages"]] == ids[4:] and page["more"] is False
    assert await alice.call(CHAT, "sync", {"since": ids[-1]}) == {"ok": True, "messages": [], "more": False}
    assert (await alice.call(CHAT, "sync", {}))["messages"][0]["id"] == ids[0]


async def test_sync_after_forced_disconnect_while_messages_keep_arriving(app_server, clients) -> None:
    """Bob's device drops mid-stream; a new connection syncing from its last id gets exactly what it missed."""
    alice = await clients(app_server, "alice", namespaces=[CHAT])
    bob = await connect(app_server.url, "bob", token_for(app_server.settings, "bob"), [CHAT])
    total = 60
    await app_server.app[LEDGER].credit("alice", 100, "admin:test-topup", "admin")
    stop_at = 20
    seen: list[str] = []
    dropped = asyncio.Event()

    async def on_new(m):
        if not dropped.is_set():
            seen.append(m["id"])
            if len(seen) == stop_at:
                dropped.set()
                # Forced: the transport goes away under the client, as when a phone loses its network.
                await bob.sio.eio.disconnect(abort=True)

    bob.sio.on("message:new", on_new, namespace=CHAT)

    async def producer() -> list[str]:
        out = []
        for i in range(total):
            out.append((await sent(alice, "bob", f"n{i}"))["id"])
        return out

    sent_ids = await producer()
    await asyncio.wait_for(dropped.wait(), 10)
    # Reconnect (a new connection, as the app would) and catch up from the last id seen, page by page.
    again = await clients(app_server, "bob", namespaces=[CHAT])
    caught, since = [], seen[-1]
    while True:
        page = await again.call(CHAT, "sync", {"since": since, "limit": 7})
        caught += [m["id"] for m in page["messages"]]
        if not page["more"]:
            break
        since = caught[-1]
    assert seen + caught == sent_ids
    assert len(set(caught)) == len(caught)
    await bob.close()


async def test_bad_cursors(app_server, clients) -> None:
    alice = await clients(app_server, "alice", namespaces=[CHAT])
    assert error_code(await alice.call(CHAT, "sync", {"since": "yesterday"})) == "invalid_payload"
    assert error_code(await alice.call(CHAT, "conversation:list", {"before": 12})) == "invalid_payload"
    assert error_code(await alice.call(CHAT, "conversation:history", {"with": "b", "before": "x"})) == "invalid_payload"
