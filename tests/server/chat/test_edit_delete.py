"""message:edit / message:delete rules and their notifications; history reflects them."""

from __future__ import annotations

import asyncio

from tests.server.chat.conftest import CHAT, error_code, sent
from tests.support.apps import make_settings, running_app


async def test_edit_by_sender_within_window(app_server, clients) -> None:
    a1 = await clients(app_server, "alice", namespaces=[CHAT])
    a2 = await clients(app_server, "alice", namespaces=[CHAT])
    bob = await clients(app_server, "bob", namespaces=[CHAT])
    m = await sent(a1, "bob", "helo")
    waits = [asyncio.create_task(c.next(CHAT, "message:updated")) for c in (a1, a2, bob)]
    ack = await a1.call(CHAT, "message:edit", {"id": m["id"], "text": "hello"})
    assert ack["ok"] and ack["message"]["text"] == "hello" and ack["message"]["edited_at"]
    assert [await w for w in waits] == [ack["message"]] * 3
    history = await bob.call(CHAT, "conversation:history", {"with": "alice"})
    assert history["messages"][0]["text"] == "hello" and "edited_at" in history["messages"][0]
    assert error_code(await bob.call(CHAT, "message:edit", {"id": m["id"], "text": "mine"})) == "forbidden"
    assert error_code(await a1.call(CHAT, "message:edit", {"id": "0" * 22, "text": "x"})) == "not_found"
    assert error_code(await a1.call(CHAT, "message:edit", {"id": m["id"], "text": ""})) == "invalid_payload"
    assert error_code(await a1.call(CHAT, "message:edit", {"id": m["id"], "text": "y" * 4001})) == "too_large"
    carol = await clients(app_server, "carol", namespaces=[CHAT])
    assert error_code(await carol.call(CHAT, "message:edit", {"id": m["id"], "text": "x"})) == "not_found"


async def test_edit_window_is_configurable(base_env, clients) -> None:
    async with running_app(make_settings({**base_env, "PAIRLY_CHAT_EDIT_WINDOW_S": "0"})) as app:
        alice = await clients(app, "alice", namespaces=[CHAT])
        m = await sent(alice, "bob", "too late")
        ack = await alice.call(CHAT, "message:edit", {"id": m["id"], "text": "fixed"})
        assert error_code(ack) == "forbidden" and "window" in ack["error"]["message"]


async def test_delete_for_me_and_for_everyone(app_server, clients) -> None:
    a1 = await clients(app_server, "alice", namespaces=[CHAT])
    a2 = await clients(app_server, "alice", namespaces=[CHAT])
    bob = await clients(app_server, "bob", namespaces=[CHAT])
    m1 = await sent(a1, "bob", "keep for bob")
    m2 = await sent(a1, "bob", "oops")

    # For me: either party, only their own devices hear of it, only their views change.
    gone = asyncio.create_task(bob.next(CHAT, "message:deleted"))
    assert (await bob.call(CHAT, "message:delete", {"id": m1["id"], "for": "me"}))["ok"]
    assert await gone == {"id": m1["id"]}
    bob_view = await bob.call(CHAT, "conversation:history", {"with": "alice"})
    assert [m["id"] for m in bob_view["messages"]] == [m2["id"]]
    assert m1["id"] not in [m["id"] for m in (await bob.call(CHAT, "sync", {"since": None}))["messages"]]
    alice_view = await a1.call(CHAT, "conversation:history", {"with": "bob"})
    assert [m["id"] for m in alice_view["messages"]] == [m2["id"], m1["id"]]

    # For everyone: sender only; both sides' devices are told; history shows a deleted stub.
    assert error_code(await bob.call(CHAT, "message:delete", {"id": m2["id"], "for": "everyone"})) == "forbidden"
    waits = [asyncio.create_task(c.next(CHAT, "message:deleted")) for c in (a1, a2, bob)]
    assert (await a1.call(CHAT, "message:delete", {"id": m2["id"], "for": "everyone"}))["ok"]
    assert [await w for w in waits] == [{"id": m2["id"]}] * 3
    stub = (await bob.call(CHAT, "conversation:history", {"with": "alice"}))["messages"][0]
    assert stub["id"] == m2["id"] and stub["deleted"] is True and stub["text"] == ""
    assert error_code(await a1.call(CHAT, "message:edit", {"id": m2["id"], "text": "x"})) == "not_found"
    # A deleted message is not unread; the list shows the stub as last message.
    conv = (await bob.call(CHAT, "conversation:list", {}))["conversations"][0]
    assert conv["last_message"]["deleted"] is True and conv["unread"] == 0
    carol = await clients(app_server, "carol", namespaces=[CHAT])
    assert error_code(await carol.call(CHAT, "message:delete", {"id": m2["id"], "for": "me"})) == "not_found"
    assert error_code(await carol.call(CHAT, "message:delete", {"id": m2["id"], "for": "everyone"})) == "not_found"
    assert error_code(await a1.call(CHAT, "message:delete", {"id": m2["id"], "for": "all"})) == "invalid_payload"


async def test_report_is_stored_for_moderators(app_server, clients) -> None:
    from server.app import CHAT as CHAT_KEY

    alice = await clients(app_server, "alice", namespaces=[CHAT])
    bob = await clients(app_server, "bob", namespaces=[CHAT])
    m = await sent(alice, "bob", "rude")
    assert (await bob.call(CHAT, "message:report", {"id": m["id"], "reason": "harassment"}))["ok"]
    assert (await bob.call(CHAT, "message:report", {"id": m["id"], "reason": "again"}))["ok"]  # idempotent
    reports = await app_server.app[CHAT_KEY].store.reports.find({}).to_list()
    assert len(reports) == 1
    assert (reports[0]["reporter"], reports[0]["reported"], reports[0]["reason"]) == ("bob", "alice", "harassment")
    assert reports[0]["message"]["text"] == "rude" and reports[0]["status"] == "open"
    carol = await clients(app_server, "carol", namespaces=[CHAT])
    assert error_code(await carol.call(CHAT, "message:report", {"id": m["id"], "reason": "x"})) == "not_found"
    assert error_code(await bob.call(CHAT, "message:report", {"id": m["id"], "reason": "r" * 501})) == "invalid_payload"
