"""Transports before auth: one that never connects a namespace is closed at the deadline; a client
address may hold only so many; an authenticated one outlives the deadline."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from tests.support.clients import connect, token_for


@pytest.fixture
def env(base_env: dict[str, str]) -> dict[str, str]:
    return {**base_env, "PAIRLY_CONNECT_DEADLINE_S": "0.5", "PAIRLY_MAX_TRANSPORTS_PER_IP": "3"}


async def _handshake(http: aiohttp.ClientSession, url: str) -> tuple[int, str | None]:
    async with http.get(f"{url}/socket.io/?EIO=4&transport=polling") as resp:
        body = await resp.text()
        return resp.status, (str(json.loads(body[1:])["sid"]) if resp.status == 200 else None)


async def test_a_transport_without_a_namespace_is_closed_at_the_deadline(app_server) -> None:
    async with aiohttp.ClientSession() as http:
        status, sid = await _handshake(http, app_server.url)
        assert status == 200
        await asyncio.sleep(1.0)
        async with http.get(f"{app_server.url}/socket.io/?EIO=4&transport=polling&sid={sid}") as resp:
            answer = await resp.text()
        # The close packet ("1") on the next poll, or the session is already gone.
        assert (resp.status == 200 and answer.startswith("1")) or resp.status == 400, (resp.status, answer)


async def test_transports_per_address_are_capped_and_freed(app_server) -> None:
    async with aiohttp.ClientSession() as http:
        sids = [await _handshake(http, app_server.url) for _ in range(3)]
        assert all(status == 200 for status, _ in sids)
        refused, _ = await _handshake(http, app_server.url)
        assert refused == 401
        # One leaves (an Engine.IO close packet): room for a new one.
        url = f"{app_server.url}/socket.io/?EIO=4&transport=polling&sid={sids[0][1]}"
        async with http.post(url, data=b"1") as resp:
            assert resp.status == 200
        await asyncio.sleep(0.2)
        again, _ = await _handshake(http, app_server.url)
        assert again == 200
        await asyncio.sleep(1.0)  # the deadline closes the rest (none connected a namespace)
        freed = [await _handshake(http, app_server.url) for _ in range(3)]
        assert all(status == 200 for status, _ in freed)
        await asyncio.sleep(1.0)


async def test_an_authenticated_client_outlives_the_deadline(app_server) -> None:
    client = await connect(app_server.url, "tr-ok", token_for(app_server.settings, "tr-ok"), ["/chat"])
    await asyncio.sleep(1.0)
    ack = await client.call("/chat", "conversation:list", {})
    assert ack["ok"]
    await client.close()
