"""Redis stopped under a running node: events that need it answer `unavailable` (never `internal`),
connects are refused at once with the code `unavailable`, REST that does not need Redis keeps working,
and everything recovers by itself when Redis is back (same port, empty: as after a restart)."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from tests.support.apps import make_settings, running_app
from tests.support.clients import ConnectRefused, connect, token_for
from tests.support.services import RedisServer


async def test_a_redis_outage_answers_unavailable_and_recovers(base_env: dict[str, str]) -> None:
    redis = RedisServer()
    settings = make_settings({**base_env, "REDIS_URL": redis.url, "PAIRLY_RATE_LIMITS": "*=1000/1"})
    try:
        async with running_app(settings) as app:
            ann = await connect(app.url, "ro-ann", token_for(settings, "ro-ann"), ["/chat"])
            send = {"to": "ro-bob", "text": "hi"}
            assert (await ann.call("/chat", "message:send", {**send, "client_id": "a"}))["ok"]
            redis.stop()
            started = time.monotonic()
            ack = await ann.call("/chat", "message:send", {**send, "client_id": "b"})
            assert ack["ok"] is False and ack["error"]["code"] == "unavailable", ack
            assert time.monotonic() - started < 5
            try:
                await connect(app.url, "ro-cat", token_for(settings, "ro-cat"), ["/chat"])
                raise AssertionError("connected without Redis")
            except ConnectRefused as exc:
                assert exc.code == "unavailable"
            async with aiohttp.ClientSession() as session, session.get(
                    f"{app.url}/api/wallet", headers={"Authorization": f"Bearer {token_for(settings, 'ro-ann')}"}) as r:
                assert r.status == 200
            redis = RedisServer(port=redis.port)  # back, empty
            for _ in range(50):
                ack = await ann.call("/chat", "message:send", {**send, "client_id": "c"})
                if ack["ok"]:
                    break
                assert ack["error"]["code"] == "unavailable"
                await asyncio.sleep(0.2)
            assert ack["ok"], ack
            cat = await connect(app.url, "ro-cat", token_for(settings, "ro-cat"), ["/chat"])
            await cat.close()
            await ann.close()
    finally:
        redis.stop()
