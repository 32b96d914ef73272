"""Crash safety of the conversation views: a dead process's unwritten views are repaired (and its
messages re-delivered) by the next node; ids sort in creation order."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from server.app import CHAT as CHAT_KEY
from server.app import LEDGER
from server.chat import model
from server.chat.committer import send_key
from server.chat.ids import IdGenerator, conversation_id
from server.chat.views import id_at
from tests.server.chat.conftest import CHAT


def _message(gen: IdGenerator, sender: str, to: str, client_id: str) -> dict[str, Any]:
    return model.message_doc(message_id=gen.next(), cid=conversation_id(sender, to), sender=sender,
                             recipient=to, text=f"stored, views never written ({client_id})", client_id=client_id,
                             reply_to=None, created_at=model.now())


async def test_views_of_a_dead_process_are_repaired_and_its_messages_redelivered(app_server, clients) -> None:
    chat, ledger = app_server.app[CHAT_KEY], app_server.app[LEDGER]
    bob = await clients(app_server, "bob", namespaces=[CHAT])
    dead = IdGenerator(node_tag=0xDEAD)
    # What a process killed right after its ledger commit leaves: the message stored and charged, its
    # views not written, its mark (written before the send) still there.
    await chat.store.set_view_mark("dead-writer", "dead", id_at(time.time() - 1))
    doc = _message(dead, "alice", "bob", "c1")
    await ledger.spend("alice", 1, send_key("alice", "c1"), "message", ref=doc["_id"],
                       attach=(("chat_messages", doc),))
    assert (await bob.call(CHAT, "conversation:list", {}))["conversations"] == []
    delivered = asyncio.create_task(bob.next(CHAT, "message:new"))
    assert await chat.views.repair(everyone_else=True) == 1
    assert (await delivered)["id"] == doc["_id"]
    listed = (await bob.call(CHAT, "conversation:list", {}))["conversations"]
    assert [(c["with"], c["last_message"]["id"], c["unread"]) for c in listed] == [("alice", doc["_id"], 1)]
    assert await chat.store.marks.count_documents({"_id": "dead-writer"}) == 0
    assert (await ledger.reconcile()).ok


async def test_a_live_process_mark_is_left_alone(app_server) -> None:
    chat = app_server.app[CHAT_KEY]
    await chat.store.set_view_mark("live-writer", "beef", id_at(time.time()))
    assert await chat.views.repair() == 0  # heartbeat is fresh: not dead
    assert await chat.store.marks.count_documents({"_id": "live-writer"}) == 1
    await chat.store.drop_view_mark("live-writer")


async def test_ids_are_monotonic_and_fixed_width() -> None:
    gen = IdGenerator(node_tag=7)
    ids = [gen.next() for _ in range(5000)]
    assert ids == sorted(ids) and len(set(ids)) == 5000 and {len(i) for i in ids} == {22}
    assert conversation_id("a", "b") == conversation_id("b", "a") != conversation_id("a", "c")
    assert id_at(time.time() - 1) < gen.next()
