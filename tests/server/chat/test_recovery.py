"""Crash safety: send intents left by a crash are settled by the ledger's verdict, and a resend of the
same client_id finishes one in flight — never charged twice, never visible uncharged."""

from __future__ import annotations

import asyncio
from typing import Any

from server.app import CHAT as CHAT_KEY
from server.app import LEDGER
from server.chat import model
from server.chat.ids import IdGenerator, conversation_id
from tests.server.chat.conftest import CHAT, send


def _pending(sender: str, to: str, client_id: str) -> dict[str, Any]:
    return model.message_doc(message_id=IdGenerator().next(), cid=conversation_id(sender, to), sender=sender,
                             recipient=to, text=f"left by a crash ({client_id})", client_id=client_id,
                             reply_to=None, created_at=model.now())


async def test_recovery_sweep_follows_the_ledger(app_server, clients) -> None:
    chat, ledger = app_server.app[CHAT_KEY], app_server.app[LEDGER]
    bob = await clients(app_server, "bob", namespaces=[CHAT])
    charged = _pending("alice", "bob", "crash-after-charge")
    uncharged = _pending("alice", "bob", "crash-before-charge")
    assert await chat.store.insert_intents([charged, uncharged], model.now()) == set()
    await ledger.spend("alice", 1, key=f"msg:{charged['_id']}", kind="message", ref=charged["_id"])
    # Intents are invisible.
    assert (await bob.call(CHAT, "sync", {"since": None}))["messages"] == []
    assert (await bob.call(CHAT, "conversation:list", {}))["conversations"] == []
    delivered = asyncio.create_task(bob.next(CHAT, "message:new"))
    assert await chat.committer.recover(min_age_s=0) == 2
    assert (await delivered)["id"] == charged["_id"]
    synced = (await bob.call(CHAT, "sync", {"since": None}))["messages"]
    assert [m["id"] for m in synced] == [charged["_id"]]
    assert (await bob.call(CHAT, "conversation:list", {}))["conversations"][0]["with"] == "alice"
    assert await chat.store.messages.count_documents({"_id": uncharged["_id"]}) == 0
    assert await chat.store.intents.count_documents({}) == 0
    assert (await ledger.wallet("alice")).balance == 9
    assert (await ledger.reconcile()).ok


async def test_resend_adopts_a_pending_message(app_server, clients) -> None:
    chat, ledger = app_server.app[CHAT_KEY], app_server.app[LEDGER]
    alice = await clients(app_server, "alice", namespaces=[CHAT])
    stuck = _pending("alice", "bob", "retry-me")
    await chat.store.insert_intents([stuck], model.now())
    ack = await send(alice, "bob", "retry", client_id="retry-me")
    assert ack["ok"] and ack["message"]["id"] == stuck["_id"] and ack["balance"] == 9
    again = await send(alice, "bob", "retry", client_id="retry-me")
    assert again["message"]["id"] == stuck["_id"] and again["balance"] == 9
    assert (await ledger.wallet("alice")).balance == 9


async def test_ids_are_monotonic_and_fixed_width() -> None:
    gen = IdGenerator(node_tag=7)
    ids = [gen.next() for _ in range(5000)]
    assert ids == sorted(ids) and len(set(ids)) == 5000 and {len(i) for i in ids} == {22}
    assert conversation_id("a", "b") == conversation_id("b", "a") != conversation_id("a", "c")
