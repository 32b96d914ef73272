"""Health, readiness (follows the store) and Prometheus metrics."""

from __future__ import annotations

import asyncio

import aiohttp

from server.store import EmbeddedStore
from tests.support.apps import RunningApp, make_settings, running_app
from tests.support.clients import connect, token_for


async def test_healthz_and_metrics(app_server: RunningApp) -> None:
    client = await connect(app_server.url, "m", token_for(app_server.settings, "m"), ["/chat"])
    await client.call("/chat", "nope", {})
    async with aiohttp.ClientSession() as http:
        async with http.get(app_server.url + "/healthz") as resp:
            assert resp.status == 200 and (await resp.json())["status"] == "ok"
            assert resp.headers["X-Request-Id"]
        async with http.get(app_server.url + "/metrics") as resp:
            text = await resp.text()
    assert 'pairly_connections{namespace="/chat"} 1.0' in text
    assert 'pairly_events_failed_total{code="invalid_payload",event="unknown"} 1.0' in text
    assert "pairly_handler_seconds_bucket" in text and "pairly_store_seconds_bucket" in text
    await client.close()


async def test_readyz_follows_the_store(base_env: dict[str, str]) -> None:
    store = EmbeddedStore(":memory:")
    store.start()
    env = {**base_env, "MONGO_URL": store.url, "PAIRLY_STORE_CONNECT_TIMEOUT_S": "20"}
    try:
        async with running_app(make_settings(env)) as app, aiohttp.ClientSession() as http:
            async with http.get(app.url + "/readyz") as resp:
                assert resp.status == 200
            store.stop()
            async with http.get(app.url + "/readyz") as resp:
                assert resp.status == 503
                assert "mongodb" in (await resp.json())["problems"][0]
            store.start()  # same port
            for _ in range(100):
                async with http.get(app.url + "/readyz") as resp:
                    if resp.status == 200:
                        break
                await asyncio.sleep(0.1)
            assert resp.status == 200
    finally:
        store.stop()


async def test_unknown_route_is_a_json_404(app_server: RunningApp) -> None:
    async with aiohttp.ClientSession() as http, http.get(app_server.url + "/api/nope") as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "not_found"


async def test_metrics_token_is_required_when_set(base_env: dict[str, str]) -> None:
    token = "scrape-" + "x" * 32
    async with running_app(make_settings({**base_env, "PAIRLY_METRICS_TOKEN": token})) as app, \
            aiohttp.ClientSession() as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token},
                        {"Authorization": f"Basic {token}"}):
            async with http.get(app.url + "/metrics", headers=headers) as resp:
                assert resp.status == 401, headers
                assert (await resp.json())["error"]["code"] in ("auth_missing", "auth_invalid")
                assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        async with http.get(app.url + "/metrics", headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 200
            assert "pairly_connections" in await resp.text()
        async with http.get(app.url + "/healthz") as resp:  # only /metrics is guarded
            assert resp.status == 200


async def test_metrics_are_open_in_dev_without_a_token(app_server: RunningApp) -> None:
    assert app_server.settings.metrics_token is None
    async with aiohttp.ClientSession() as http, http.get(app_server.url + "/metrics") as resp:
        assert resp.status == 200
