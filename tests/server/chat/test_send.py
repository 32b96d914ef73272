"""message:send: delivery to every device, the ack, idempotent resends, and refusals that cost nothing."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from server.app import CHAT as CHAT_KEY
from server.app import CORE, LEDGER
from server.chat.committer import send_key
from tests.server.chat.conftest import CHAT, barrier, error_code, send, sent
from tests.support.apps import make_settings, running_app


async def test_delivers_to_all_recipient_devices_and_other_sender_devices(app_server, clients) -> None:
    a1 = await clients(app_server, "alice", namespaces=[CHAT])
    a2 = await clients(app_server, "alice", namespaces=[CHAT])
    b1 = await clients(app_server, "bob", namespaces=[CHAT])
    b2 = await clients(app_server, "bob", namespaces=[CHAT])
    waits = [asyncio.create_task(c.next(CHAT, "message:new")) for c in (a2, b1, b2)]
    ack = await send(a1, "bob", "hello bob", client_id="c-1")
    assert ack["ok"] and ack["balance"] == 9  # signup bonus 10, one credit per message
    m = ack["message"]
    assert m["from"] == "alice" and m["to"] == "bob" and m["text"] == "hello bob" and m["client_id"] == "c-1"
    assert m["status"] == "sent" and m["conversation_id"] and m["created_at"].endswith("Z")
    assert [await w for w in waits] == [m, m, m]
    await barrier(a2, [b1], "bob")  # from the other device; a1 must see it, and still not its own first one
    assert [x["id"] for x in a1.received(CHAT, "message:new")] != [m["id"]]
    assert m["id"] not in [x["id"] for x in a1.received(CHAT, "message:new")]
    entry = await app_server.app[LEDGER].get_entry(send_key("alice", "c-1"))
    assert entry is not None and entry.delta == -1 and entry.ref == m["id"]


async def test_ids_sort_in_creation_order(app_server, clients) -> None:
    alice = await clients(app_server, "alice", namespaces=[CHAT])
    bob = await clients(app_server, "bob", namespaces=[CHAT])
    ids = [(await sent(alice, "bob", f"a{i}"))["id"] for i in range(3)]
    ids += [(await sent(bob, "alice", f"b{i}"))["id"] for i in range(3)]
    assert ids == sorted(ids) and len(set(ids)) == 6


async def test_resend_returns_same_message_and_charges_nothing(app_server, clients) -> None:
    alice = await clients(app_server, "alice", namespaces=[CHAT])
    bob = await clients(app_server, "bob", namespaces=[CHAT])
    first = await send(alice, "bob", "once", client_id="same")
    again = await send(alice, "bob", "once", client_id="same")
    assert again["ok"] and again["message"] == first["message"] and again["balance"] == first["balance"] == 9
    # Concurrent resends (one batch, or several) still make one message and one charge.
    acks = await asyncio.gather(*(send(alice, "bob", "burst", client_id="burst") for _ in range(8)))
    assert all(a["ok"] for a in acks) and len({a["message"]["id"] for a in acks}) == 1
    await barrier(alice, [bob], "bob")
    texts = [m["text"] for m in bob.received(CHAT, "message:new")]
    assert texts.count("once") == 1 and texts.count("burst") == 1
    assert (await app_server.app[LEDGER].wallet("alice")).balance == 10 - 3


async def test_insufficient_credits_is_never_stored_delivered_or_charged(app_server, clients) -> None:
    alice = await clients(app_server, "alice", namespaces=[CHAT])
    bob = await clients(app_server, "bob", namespaces=[CHAT])
    acks = await asyncio.gather(*(send(alice, "bob", f"m{i}") for i in range(14)))
    ok = [a for a in acks if a["ok"]]
    refused = [a for a in acks if not a["ok"]]
    assert len(ok) == 10 and {error_code(a) for a in refused} == {"insufficient_credits"}
    assert min(a["balance"] for a in ok) == 0
    wallet = await app_server.app[LEDGER].wallet("alice")
    assert wallet.balance == 0
    synced = await alice.call(CHAT, "sync", {"since": None})
    assert len(synced["messages"]) == 10
    # Nothing refused reached bob.
    await barrier(bob, [alice], "alice")
    assert len([m for m in bob.received(CHAT, "message:new") if m["from"] == "alice"]) == 10
    report = await app_server.app[LEDGER].reconcile()
    assert report.ok


async def _assert_nothing_happened(app_server, alice, bob) -> None:
    assert (await alice.call(CHAT, "sync", {"since": None}))["messages"] == []
    assert (await app_server.app[LEDGER].wallet("alice")).balance == 10
    assert (await app_server.app[CHAT_KEY].store.messages.count_documents({})) == 0
    await barrier(bob, [alice], "alice")
    assert [m for m in bob.received(CHAT, "message:new") if m["from"] == "alice"] == []


async def test_blocked_pairs_cannot_message_either_way(app_server, clients) -> None:
    alice = await clients(app_server, "alice", namespaces=[CHAT])
    bob = await clients(app_server, "bob", namespaces=[CHAT])
    assert (await bob.call(CHAT, "user:block", {"user": "alice"}))["ok"]
    assert error_code(await send(alice, "bob", "hi")) == "blocked"
    assert error_code(await send(bob, "alice", "hi")) == "blocked"
    assert (await alice.call(CHAT, "sync", {"since": None}))["messages"] == []
    assert (await app_server.app[LEDGER].wallet("alice")).balance == 10
    assert (await bob.call(CHAT, "user:unblock", {"user": "alice"}))["ok"]
    assert (await send(alice, "bob", "hi again"))["ok"]
    assert error_code(await alice.call(CHAT, "user:block", {"user": "alice"})) == "invalid_payload"


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"to": "bob", "client_id": "x", "text": "a" * 4001}, "too_large"),
        ({"to": "bob", "client_id": "x", "text": "   "}, "invalid_payload"),
        ({"to": "bob", "client_id": "x", "text": 5}, "invalid_payload"),
        ({"to": "bob", "text": "hi"}, "invalid_payload"),
        ({"to": "alice", "client_id": "x", "text": "hi"}, "invalid_payload"),
        ({"to": "bob", "client_id": "x", "text": "hi", "reply_to": "nope"}, "invalid_payload"),
        ({"to": "bob", "client_id": "x", "text": "hi", "reply_to": "0" * 22}, "not_found"),
        ({"to": "bob", "client_id": "x", "text": "x" * 70_000}, "too_large"),
    ],
    ids=["text-too-long", "blank", "text-not-str", "no-client-id", "self", "bad-reply-id", "reply-missing",
         "payload-bytes"],
)
async def test_refused_payloads_cost_nothing(app_server, clients, payload, code) -> None:
    alice = await clients(app_server, "alice", namespaces=[CHAT])
    bob = await clients(app_server, "bob", namespaces=[CHAT])
    assert error_code(await alice.call(CHAT, "message:send", payload)) == code
    await _assert_nothing_happened(app_server, alice, bob)


async def test_banned_sender_and_recipient_are_refused(app_server, clients) -> None:
    alice = await clients(app_server, "alice", namespaces=[CHAT])
    bob = await clients(app_server, "bob", namespaces=[CHAT])
    users = app_server.app[CORE].users
    await users.set_banned("carol", True)
    assert error_code(await send(alice, "carol", "hi")) == "forbidden"
    await users.set_banned("alice", True)
    # A ban while connected (the admin path also disconnects): the next send is refused.
    app_server.app[CHAT_KEY].service._bans.clear()
    assert error_code(await send(alice, "bob", "hi")) == "forbidden"
    await users.set_banned("alice", False)
    app_server.app[CHAT_KEY].service._bans.clear()
    await _assert_nothing_happened(app_server, alice, bob)


async def test_rate_limited_sends_cost_nothing(base_env, clients) -> None:
    env = {**base_env, "PAIRLY_RATE_LIMITS": "message:send=3/60"}
    async with running_app(make_settings(env)) as app:
        alice = await clients(app, "alice", namespaces=[CHAT])
        acks = [await send(alice, "bob", f"m{i}") for i in range(5)]
        assert [a["ok"] for a in acks] == [True, True, True, False, False]
        assert error_code(acks[3]) == "rate_limited" and acks[3]["error"]["retry_after_ms"] > 0
        assert (await app.app[LEDGER].wallet("alice")).balance == 7
        assert len((await alice.call(CHAT, "sync", {"since": None}))["messages"]) == 3


async def test_moderation_rejects_or_masks(base_env, clients) -> None:
    env = {**base_env, "PAIRLY_CHAT_BANNED_WORDS": "badword", "PAIRLY_CHAT_BANNED_PATTERNS": r"\d{3}-\d{4}"}
    async with running_app(make_settings(env)) as app:
        alice = await clients(app, "alice", namespaces=[CHAT])
        ack = await send(alice, "bob", "you BADWORD")
        assert error_code(ack) == "invalid_payload" and "moderation" in ack["error"]["message"]
        assert error_code(await send(alice, "bob", "call 555-1234")) == "invalid_payload"
        assert (await send(alice, "bob", "badwords are fine as part of a word"))["ok"]
        assert (await app.app[LEDGER].wallet("alice")).balance == 9
    env = {**env, "PAIRLY_CHAT_MODERATION_ACTION": "mask", "MONGO_DB": f"t_{uuid.uuid4().hex[:10]}"}
    async with running_app(make_settings(env)) as app:
        alice = await clients(app, "alice", namespaces=[CHAT])
        m = await sent(alice, "bob", "you badword, call 555-1234")
        assert m["text"] == "you *******, call ********"


async def test_reply_to_an_existing_message(app_server, clients) -> None:
    alice = await clients(app_server, "alice", namespaces=[CHAT])
    bob = await clients(app_server, "bob", namespaces=[CHAT])
    first = await sent(alice, "bob", "question")
    reply = await sent(bob, "alice", "answer", reply_to=first["id"])
    assert reply["reply_to"] == first["id"]
    # A message of another conversation cannot be replied to.
    other = await sent(alice, "carol", "elsewhere")
    assert error_code(await send(bob, "alice", "x", reply_to=other["id"])) == "not_found"
