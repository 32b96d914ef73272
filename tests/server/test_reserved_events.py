"""Client EVENT packets named like python-socketio's lifecycle events are unknown events, nothing more.

A client may put any string in an EVENT packet. Before the fix, an event named `disconnect` ran the
server's disconnect handler (session dropped, connection-cap slot freed, transport still up and still
in the user's room), and one named `connect` re-ran auth with the event payload.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
import socketio

from server.app import CORE
from tests.support.apps import RunningApp
from tests.support.clients import Client, ConnectRefused, connect, token_for

CHAT = "/chat"
RESERVED = ("disconnect", "connect", "connect_error", "__disconnect_final", "*")


@pytest.fixture
def env(base_env: dict[str, str]) -> dict[str, str]:
    base_env["PAIRLY_MAX_CONNECTIONS_PER_USER"] = "2"
    base_env["PAIRLY_RATE_LIMITS"] = "*=1000/1,message:send=1000/1"
    return base_env


async def _send(client: Client, to: str, text: str) -> dict[str, object]:
    ack = await client.call(CHAT, "message:send", {"to": to, "client_id": uuid.uuid4().hex, "text": text})
    assert ack["ok"], ack
    message: dict[str, object] = ack["message"]
    return message


async def test_reserved_event_names_from_a_client_change_nothing(app_server: RunningApp, clients) -> None:
    s = app_server.settings
    alice = await clients(app_server, "alice", namespaces=[CHAT])
    bob = await clients(app_server, "bob", namespaces=[CHAT])
    intruder_auth = {"token": token_for(s, "mallory", roles=["admin"])}
    for event in RESERVED:
        ack = await alice.call(CHAT, event, intruder_auth)
        assert isinstance(ack, dict) and ack["ok"] is False, (event, ack)
        assert ack["error"]["code"] == "invalid_payload", (event, ack)
    # Without an ack request too (the stock server used to run the disconnect handler for these).
    for event in RESERVED:
        await alice.sio.emit(event, intruder_auth, namespace=CHAT)
        await alice.sio.emit(event, namespace=CHAT)

    # The session is intact and still the caller's own identity.
    message = await _send(alice, "bob", "still here")
    assert message["from"] == "alice"
    # Still in alice's room: a message to her arrives.
    arrival = asyncio.create_task(alice.next(CHAT, "message:new"))
    sent = await _send(bob, "alice", "hello alice")
    assert (await arrival)["id"] == sent["id"]

    # Still counted against the cap (2): one more connection fits, the next is refused.
    core = app_server.app[CORE]
    assert await core.connections.count(CHAT, "alice") == 1
    second = await clients(app_server, "alice", namespaces=[CHAT])
    with pytest.raises(ConnectRefused) as refused:
        await connect(app_server.url, "alice", token_for(s, "alice"), [CHAT])
    assert refused.value.code == "limit_reached"
    assert await core.connections.count(CHAT, "alice") == 2
    assert second.sio.connected and alice.sio.connected


async def test_real_disconnect_still_releases_the_slot(app_server: RunningApp, clients) -> None:
    s = app_server.settings
    first = await clients(app_server, "carl", namespaces=[CHAT])
    await clients(app_server, "carl", namespaces=[CHAT])
    await first.close()
    core = app_server.app[CORE]
    for _ in range(50):
        if await core.connections.count(CHAT, "carl") == 1:
            break
        await asyncio.sleep(0.05)
    third = await connect(app_server.url, "carl", token_for(s, "carl"), [CHAT])
    await third.close()


async def test_msgpack_client_reserved_events_are_unknown_too(app_server: RunningApp) -> None:
    mp = socketio.AsyncClient(serializer="msgpack", reconnection=False)
    await mp.connect(app_server.url, namespaces=[CHAT], transports=["websocket"],
                     auth={"token": token_for(app_server.settings, "dora")})
    try:
        for event in ("disconnect", "connect"):
            reply = await mp.call(event, {}, namespace=CHAT, timeout=5)
            assert reply["ok"] is False and reply["error"]["code"] == "invalid_payload", (event, reply)
        assert await app_server.app[CORE].connections.count(CHAT, "dora") == 1
        reply = await mp.call("message:send", {"to": "erin", "client_id": "c1", "text": "hi"}, namespace=CHAT,
                              timeout=5)
        assert reply["ok"] is True, reply
    finally:
        await mp.disconnect()
