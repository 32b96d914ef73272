"""In-flight Socket.IO requests (server/shutdown.py): a WebSocket is tracked for its whole life without
a frame of ours held for it, and leaves the registry when it closes; long-polls when answered."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from server.app import SOCKET_REQUESTS
from tests.support.clients import token_for


async def _until(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def _awaited_everywhere() -> set[str]:
    """Qualified names of every coroutine some task is suspended in, down each await chain."""
    names: set[str] = set()
    for task in asyncio.all_tasks():
        coro = task.get_coro()
        while coro is not None and hasattr(coro, "cr_frame"):
            names.add(coro.__qualname__)
            coro = coro.cr_await
    return names


async def test_a_websocket_is_tracked_until_it_closes(app_server) -> None:
    requests = app_server.app[SOCKET_REQUESTS]
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{app_server.url}/socket.io/?EIO=4&transport=websocket")
        assert (await ws.receive_str()).startswith("0")
        assert len(requests) == 1
        # No coroutine of the registry waits on the socket: only the connection task's callback.
        assert not {"SocketRequests._tracked", "SocketRequests.middleware"} & _awaited_everywhere()
        assert "LeanWebSocket.__call__" in _awaited_everywhere()  # (the walk does reach the socket)
        await ws.close()
        await _until(lambda: len(requests) == 0)


async def test_a_long_poll_is_tracked_until_answered(app_server) -> None:
    requests = app_server.app[SOCKET_REQUESTS]
    base = f"{app_server.url}/socket.io/?EIO=4&transport=polling"
    async with aiohttp.ClientSession() as http:
        async with http.get(base) as resp:
            sid = json.loads((await resp.text())[1:])["sid"]
        assert len(requests) == 0
        poll = asyncio.ensure_future(http.get(f"{base}&sid={sid}"))  # waits: nothing to send yet
        await _until(lambda: len(requests) == 1)
        remaining = await requests.wait(0.05)  # still open: shutdown would have to end it
        assert remaining == 1
        connect = "40/chat," + json.dumps({"token": token_for(app_server.settings, "poller")})
        async with http.post(f"{base}&sid={sid}", data=connect):  # answered through the waiting poll
            pass
        resp = await poll
        assert (await resp.text()).startswith("40/chat,")
        await _until(lambda: len(requests) == 0)
