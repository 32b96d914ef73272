"""`GET /api/calls/history`: own calls only, newest first, cursor-paginated, in the OpenAPI document."""

from __future__ import annotations

import functools

import aiohttp

from server.app import LEDGER
from tests.billing.api import Api
from tests.server.call.conftest import CALL, call_env, ended, fund, ok, until
from tests.support.apps import make_settings, running_app
from tests.support.clients import Client, connect, token_for


def incoming(client: Client, call_id: str) -> bool:
    return any(e["call_id"] == call_id for e in client.received(CALL, "call:incoming"))


async def test_history_lists_own_calls_newest_first_with_pages(base_env) -> None:
    settings = make_settings(call_env(base_env))
    async with running_app(settings) as app:
        await fund(app.app[LEDGER], "hi-ann", 100)
        a = await connect(app.url, "hi-ann", token_for(settings, "hi-ann"), [CALL])
        b = await connect(app.url, "hi-bob", token_for(settings, "hi-bob"), [CALL])
        ids = []
        for media in ("audio", "video", "audio"):
            call_id = (await ok(a, "call:invite", {"to": "hi-bob", "media": media}))["call_id"]
            ids.append(call_id)
            await until(functools.partial(incoming, b, call_id))
            if media == "video":
                await ok(b, "call:accept", {"call_id": call_id})
                await until(functools.partial(a.received, CALL, "call:billed"))
                await ok(a, "call:end", {"call_id": call_id})
            else:
                await ok(b, "call:reject", {"call_id": call_id})
            await until(functools.partial(ended, a, call_id))
        await a.close()
        await b.close()

        ann, bob, eve = Api(app, "hi-ann"), Api(app, "hi-bob"), Api(app, "hi-eve")
        status, body = await ann.get("/api/calls/history")
        assert status == 200 and [c["call_id"] for c in body["calls"]] == ids[::-1] and body["next"] is None
        video = body["calls"][1]
        assert video["direction"] == "outgoing" and video["media"] == "video" and video["reason"] == "completed"
        assert video["billed_minutes"] >= 1 and video["credits"] == 10 * video["billed_minutes"]
        assert video["accepted_at"] and video["ended_at"] and video["rate_per_minute"] == 10
        pages = await bob.pages("/api/calls/history", limit=2, items="calls")
        assert [len(p) for p in pages] == [2, 1]
        assert [c["call_id"] for p in pages for c in p] == ids[::-1]
        assert all(c["direction"] == "incoming" for p in pages for c in p)
        assert (await eve.get("/api/calls/history"))[1]["calls"] == []
        assert (await ann.get("/api/calls/history?limit=0"))[0] == 400
        async with aiohttp.ClientSession() as session, session.get(f"{app.url}/api/calls/history") as resp:
            assert resp.status == 401
        _, spec = await ann.get("/api/openapi.json")
        assert "/api/calls/history" in spec["paths"]
