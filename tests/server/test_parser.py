"""msgpack-parser clients and JSON clients on the same endpoint, in the same rooms."""

from __future__ import annotations

import asyncio
import contextlib

import socketio

from server.app import SIO
from server.rooms import user_room
from tests.support.apps import RunningApp
from tests.support.clients import connect, token_for


async def test_msgpack_client_connects_calls_and_receives_room_emits(app_server: RunningApp) -> None:
    received: asyncio.Queue[object] = asyncio.Queue()
    mp = socketio.AsyncClient(serializer="msgpack", reconnection=False)
    mp.on("hello", received.put_nowait, namespace="/chat")
    await mp.connect(app_server.url, namespaces=["/chat"], transports=["websocket"],
                     auth={"token": token_for(app_server.settings, "ann")})
    json_client = await connect(app_server.url, "ann", token_for(app_server.settings, "ann"), ["/chat"])
    reply = await mp.call("no:such", {"x": 1}, namespace="/chat", timeout=5)
    assert reply["ok"] is False and reply["error"]["code"] == "invalid_payload"
    waiting = asyncio.create_task(json_client.next("/chat", "hello"))
    await app_server.app[SIO].emit("hello", {"n": 1}, room=user_room("ann"), namespace="/chat")
    assert await asyncio.wait_for(received.get(), 5) == {"n": 1}
    assert await waiting == {"n": 1}
    await mp.disconnect()
    await json_client.close()


async def test_msgpack_connect_refusal_carries_the_code(app_server: RunningApp) -> None:
    errors: list[object] = []
    mp = socketio.AsyncClient(serializer="msgpack", reconnection=False)
    mp.on("connect_error", errors.append, namespace="/chat")
    with contextlib.suppress(socketio.exceptions.ConnectionError):
        await mp.connect(app_server.url, namespaces=["/chat"], transports=["websocket"], auth={"token": "bad"})
    assert errors and errors[0]["data"]["code"] == "auth_invalid"  # type: ignore[index]
    await mp.disconnect()
