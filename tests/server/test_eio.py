"""The lean Engine.IO pieces (server/eio.py): the real app refuses permessage-deflate while WebSocket and
long-polling clients work as before."""

from __future__ import annotations

import json

import aiohttp

from tests.support.clients import token_for


async def _connect_ws(
    url: str, token: str, compress: int
) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]:
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(f"{url}/socket.io/?EIO=4&transport=websocket", compress=compress)
    assert (await ws.receive_str()).startswith("0")
    await ws.send_str("40/chat," + json.dumps({"token": token}))
    assert (await ws.receive_str()).startswith("40/chat,")
    return http, ws


async def test_deflate_is_refused_and_the_socket_works(app_server) -> None:
    http, ws = await _connect_ws(app_server.url, token_for(app_server.settings, "deflater"), compress=15)
    try:
        assert ws.compress == 0  # the server did not accept permessage-deflate
        await ws.send_str('42/chat,1["typing",{"to":"nobody","state":"start"}]')
        await ws.send_str('42/chat,2["no:such:event",{}]')
        while True:  # the typing event is dropped silently; the unknown one is answered
            text = await ws.receive_str()
            if text.startswith("43/chat,2"):
                break
        assert json.loads(text[len("43/chat,2"):])[0]["error"]["code"] == "invalid_payload"
    finally:
        await ws.close()
        await http.close()


async def test_long_polling_still_works(app_server) -> None:
    token = token_for(app_server.settings, "poller")
    async with aiohttp.ClientSession() as http:
        base = f"{app_server.url}/socket.io/?EIO=4&transport=polling"
        async with http.get(base) as resp:
            sid = json.loads((await resp.text())[1:])["sid"]
        async with http.post(f"{base}&sid={sid}", data="40/chat," + json.dumps({"token": token})) as resp:
            assert resp.status == 200
        async with http.get(f"{base}&sid={sid}") as resp:
            assert (await resp.text()).startswith("40/chat,")
