"""In-flight Socket.IO requests (server/shutdown.py), which shutdown ends: a WebSocket is tracked for
its whole life and leaves the registry when it closes; a long-poll when it is answered."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from server.app import SOCKET_REQUESTS
from tests.server.call.conftest import until
from tests.support.clients import token_for


async def test_a_websocket_is_tracked_until_it_closes(app_server) -> None:
    requests = app_server.app[SOCKET_REQUESTS]
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{app_server.url}/socket.io/?EIO=4&transport=websocket")
        assert (await ws.receive_str()).startswith("0")
        assert len(requests) == 1
        await ws.close()
        await until(lambda: len(requests) == 0)


async def test_a_long_poll_is_tracked_until_answered(app_server) -> None:
    requests = app_server.app[SOCKET_REQUESTS]
    base = f"{app_server.url}/socket.io/?EIO=4&transport=polling"
    async with aiohttp.ClientSession() as http:
        async with http.get(base) as resp:
            sid = json.loads((await resp.text())[1:])["sid"]
        assert len(requests) == 0
        poll = asyncio.ensure_future(http.get(f"{base}&sid={sid}"))  # waits: nothing to send yet
        await until(lambda: len(requests) == 1)
        remaining = await requests.wait(0.05)  # still open: shutdown would have to end it
        assert remaining == 1
        connect = "40/chat," + json.dumps({"token": token_for(app_server.settings, "poller")})
        async with http.post(f"{base}&sid={sid}", data=connect):  # answered through the waiting poll
            pass
        resp = await poll
        assert (await resp.text()).startswith("40/chat,")
        await until(lambda: len(requests) == 0)
