"""GET /api/presence?users=a,b,c: bearer auth, the same view as a subscribe snapshot, clear errors."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from server.app import CORE
from tests.server.presence.conftest import FAST, PRESENCE, update
from tests.support.apps import RunningApp
from tests.support.clients import token_for


@pytest.fixture
def env(base_env: dict[str, str]) -> dict[str, str]:
    return {**base_env, **FAST, "PAIRLY_PRESENCE_MAX_SUBSCRIBE": "5"}


async def _get(app: RunningApp, query: str, user: str | None = "alice",
               token: str | None = None) -> tuple[int, Any]:
    headers = {}
    if user is not None or token is not None:
        headers["Authorization"] = f"Bearer {token or token_for(app.settings, user or '')}"
    async with aiohttp.ClientSession() as http, http.get(f"{app.url}/api/presence{query}", headers=headers) as resp:
        return resp.status, await resp.json()


async def test_presence_over_rest_follows_the_same_rules(app_server, clients) -> None:
    status, body = await _get(app_server, "?users=bob,carol,nobody")
    assert status == 200
    never_seen = [{"user": u, "status": "offline", "last_seen": None} for u in ("bob", "carol", "nobody")]
    assert body == {"presence": never_seen}

    watcher = await clients(app_server, "watcher", namespaces=[PRESENCE])
    await watcher.call(PRESENCE, "presence:subscribe", {"users": ["carol"]})
    await clients(app_server, "bob", namespaces=[PRESENCE])
    carol = await clients(app_server, "carol", namespaces=[PRESENCE])
    await carol.call(PRESENCE, "presence:set", {"status": "away"})
    await carol.close()
    offline = await update(watcher, "carol", "offline")
    await app_server.app[CORE].blocks.block("bob", "alice")

    status, body = await _get(app_server, "?users=bob,carol,bob")
    assert status == 200
    assert body["presence"] == [{"user": "bob", "status": "offline", "last_seen": None}, offline]  # bob blocked alice
    status, body = await _get(app_server, "?users=bob", user="dave")
    assert body["presence"] == [{"user": "bob", "status": "online", "last_seen": None}]


async def test_presence_over_rest_refuses_clearly(app_server) -> None:
    cases = [
        ("?users=bob", None, "nonsense", 401, "auth_invalid"),
        ("?users=", "alice", None, 400, "invalid_payload"),
        ("", "alice", None, 400, "invalid_payload"),
        ("?users=,,", "alice", None, 400, "invalid_payload"),
        (f"?users={'x' * 300}", "alice", None, 400, "invalid_payload"),
        ("?users=a,b,c,d,e,f", "alice", None, 413, "too_large"),
    ]
    for query, user, token, status, code in cases:
        got, body = await _get(app_server, query, user=user, token=token)
        assert (got, body["error"]["code"]) == (status, code), (query, body)
        assert body["error"]["message"]
    got, body = await _get(app_server, "?users=bob", user=None)
    assert (got, body["error"]["code"]) == (401, "auth_missing")


async def test_presence_route_is_described_in_openapi(app_server) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{app_server.url}/api/openapi.json") as resp:
        doc = await resp.json()
    operation = doc["paths"]["/api/presence"]["get"]
    assert operation["parameters"][0]["name"] == "users"
    assert set(operation["responses"]) == {"200", "400", "401", "413"}
