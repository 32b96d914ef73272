"""Malformed payloads of every /chat event: wrong types, missing fields, huge strings, binary — answered
with an error, nothing stored or charged, and the connection stays usable."""

from __future__ import annotations

from typing import Any

import pytest

from server.app import CHAT as CHAT_KEY
from server.app import LEDGER
from tests.server.chat.conftest import CHAT, error_code, sent

EVENTS = ["message:send", "message:delivered", "conversation:read", "conversation:history", "conversation:list",
          "sync", "message:edit", "message:delete", "user:block", "user:unblock", "message:report"]
ID = "0" * 22
HUGE = "x" * 70_000
BAD: dict[str, list[Any]] = {
    "message:send": [{"to": 1, "client_id": "c", "text": "t"}, {"to": "bob", "client_id": 5, "text": "t"},
                     {"to": "bob", "client_id": "c" * 65, "text": "t"}, {"to": "", "client_id": "c", "text": "t"},
                     {"to": "b\x00b", "client_id": "c", "text": "t"}, {"to": ["bob"], "client_id": "c", "text": "t"}],
    "message:delivered": [{"ids": "abc"}, {"ids": []}, {"ids": [1, 2]}, {"ids": [ID] * 501}, {}],
    "conversation:read": [{"with": "bob"}, {"with": "bob", "up_to": 3}, {"up_to": ID}],
    "conversation:history": [{}, {"with": 7}, {"with": "bob", "before": 1}],
    "conversation:list": [{"limit": -1}, {"before": "x"}],
    "sync": [{"since": 5}, {"since": "zz"}, {"since": None, "limit": 1000}],
    "message:edit": [{"id": ID}, {"text": "x"}, {"id": 1, "text": "x"}],
    "message:delete": [{"id": ID}, {"id": ID, "for": 1}, {"for": "me"}],
    "user:block": [{}, {"user": 5}, {"user": "u" * 200}],
    "user:unblock": [{}, {"user": None}],
    "message:report": [{"id": ID}, {"id": ID, "reason": ""}, {"reason": "x"}, {"id": ID, "reason": 3}],
}


@pytest.fixture
async def pair(app_server, clients):
    alice = await clients(app_server, "alice", namespaces=[CHAT])
    bob = await clients(app_server, "bob", namespaces=[CHAT])
    return alice, bob


async def test_every_event_refuses_garbage_and_keeps_the_connection(app_server, pair) -> None:
    alice, _bob = pair
    for event in EVENTS:
        for payload in ["text", 42, [1, 2], None, True, *BAD[event]]:
            ack = await alice.call(CHAT, event, payload)
            if event == "conversation:list" and payload is None:
                continue  # an absent payload is an empty object: defaults apply
            if event == "sync" and payload is None:
                continue
            assert error_code(ack) == "invalid_payload", (event, payload, ack)
        assert error_code(await alice.call(CHAT, event, {"pad": HUGE})) == "too_large", event
        assert error_code(await alice.call(CHAT, event, b"\x00\x01binary")) == "invalid_payload", event
        assert error_code(await alice.call(CHAT, event, {"to": "bob", "blob": b"\xff" * 10})) == "invalid_payload"
    assert error_code(await alice.call(CHAT, "no:such:event", {})) == "invalid_payload"
    # Still connected, still working, nothing was stored or charged.
    assert alice.sio.connected
    await sent(alice, "bob", "still here")
    assert await app_server.app[CHAT_KEY].store.messages.count_documents({}) == 1
    assert (await app_server.app[LEDGER].wallet("alice")).balance == 9
    assert await app_server.app[CHAT_KEY].store.reports.count_documents({}) == 0


async def test_a_lone_surrogate_is_refused_and_poisons_nobody_elses_batch(app_server, clients) -> None:
    """"\\ud800" is valid JSON but not storable: refused at the door; other users' sends in the same
    moment all go through (it never reaches their group-committed batch)."""
    import asyncio
    import uuid

    mallory = await clients(app_server, "sur-mallory", namespaces=[CHAT])
    others = [await clients(app_server, f"sur-u{i}", namespaces=[CHAT]) for i in range(5)]
    bad_payloads = [{"to": "sur-u0", "client_id": "c1", "text": "\ud800"},
                    {"to": "sur-u0", "client_id": "\udfff", "text": "hi"},
                    {"to": "\ud800", "client_id": "c2", "text": "hi"}]

    async def good(client: Any, n: int) -> Any:
        return await client.call(CHAT, "message:send", {"to": "sur-mallory", "client_id": uuid.uuid4().hex,
                                                        "text": f"fine {n}"})

    results = await asyncio.gather(*(mallory.call(CHAT, "message:send", p) for p in bad_payloads),
                                   *(good(c, n) for n in range(2) for c in others))
    assert [error_code(r) for r in results[:3]] == ["invalid_payload"] * 3
    assert all(r["ok"] for r in results[3:])
    assert (await app_server.app[LEDGER].wallet("sur-mallory")).balance == 10
    assert await app_server.app[CHAT_KEY].store.messages.count_documents({"from": "sur-mallory"}) == 0
    await sent(mallory, "sur-u0", "still usable")
