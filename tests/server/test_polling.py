"""Long-polling bodies: a POST declaring more than the frame limit is refused at once (413) and frees
everything; a large body within the limit is read whole (a 600 KB connect packet works)."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from tests.support.clients import token_for

LIMIT = 1_000_000


@pytest.fixture
def env(base_env: dict[str, str]) -> dict[str, str]:
    return {**base_env, "PAIRLY_MAX_FRAME_BYTES": str(LIMIT)}


async def _handshake(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(f"{url}/socket.io/?EIO=4&transport=polling") as resp:
        assert resp.status == 200
        body = await resp.text()
    return str(json.loads(body[1:])["sid"])


async def test_an_oversized_polling_post_is_refused_at_once(app_server) -> None:
    async with aiohttp.ClientSession() as http:
        sid = await _handshake(http, app_server.url)
        reader, writer = await asyncio.open_connection("127.0.0.1", int(app_server.url.rsplit(":", 1)[1]))
        # Declares far more than the limit and sends only the head: the answer must not wait for it.
        writer.write((f"POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n"
                      f"Content-Type: text/plain\r\nContent-Length: {LIMIT * 10}\r\n\r\n").encode() + b"4" * 1000)
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 5)
        assert status.startswith(b"HTTP/1.1 413"), status
        writer.close()
        # The session is untouched and still takes posts; then close it (an Engine.IO close packet).
        url = f"{app_server.url}/socket.io/?EIO=4&transport=polling&sid={sid}"
        async with http.post(url, data=b"3") as resp:
            assert resp.status == 200
        async with http.post(url, data=b"1") as resp:
            assert resp.status == 200


async def test_a_large_polling_body_within_the_limit_is_read_whole(app_server) -> None:
    token = token_for(app_server.settings, "poll-big")
    packet = "40/chat," + json.dumps({"token": token, "pad": "x" * 600_000})
    async with aiohttp.ClientSession() as http:
        sid = await _handshake(http, app_server.url)
        url = f"{app_server.url}/socket.io/?EIO=4&transport=polling&sid={sid}"
        async with http.post(url, data=packet.encode()) as resp:
            assert resp.status == 200 and await resp.text() == "OK"
        async with http.get(url) as resp:
            answer = await resp.text()
        async with http.post(url, data=b"1") as resp:  # close the Engine.IO session
            assert resp.status == 200
    assert answer.startswith("40/chat,") and '"sid"' in answer, answer[:200]
