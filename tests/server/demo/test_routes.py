"""The demo's routes on the real app: the static client under /demo/, and the dev-only token route —
present in dev mode, off with PAIRLY_DEMO=0, refused at start-up in production."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from config.settings import ConfigError
from server.app import create_app
from tests.support.apps import NodeProcess, RunningApp, make_settings, running_app
from tests.support.clients import connect


async def _get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as http, http.get(url, allow_redirects=False) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


async def _token(url: str, body: Any) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.post(url + "/api/dev/token", json=body) as resp:
        return resp.status, await resp.json()


async def test_the_page_and_its_modules_are_served(app_server: RunningApp) -> None:
    status, kind, text = await _get(app_server.url + "/demo/")
    assert (status, kind) == (200, "text/html")
    assert 'src="boot.js"' in text
    for asset in ("boot.js", "app.js", "chat.js", "call.js", "probe.js", "vendor/socket.io.min.js",
                  "vendor/socket.io.msgpack.min.js"):
        status, kind, text = await _get(f"{app_server.url}/demo/{asset}")
        assert status == 200, asset
        assert kind in ("application/javascript", "text/javascript"), (asset, kind)  # ES modules need a JS type
    status, _, text = await _get(app_server.url + "/demo/vendor/socket.io.min.js")
    assert "Socket.IO v4.8.4" in text
    status, _, _ = await _get(app_server.url + "/demo")
    assert status == 302


@pytest.mark.parametrize("path", ["nope.js", "..%2Froutes.py", "%2e%2e/routes.py", "vendor/..%2F..%2Froutes.py",
                                  "vendor"])
async def test_nothing_outside_the_static_folder_is_served(app_server: RunningApp, path: str) -> None:
    status, _, text = await _get(f"{app_server.url}/demo/{path}")
    assert status == 404
    assert "DemoConfig" not in text


async def test_a_dev_token_signs_in_on_every_namespace(app_server: RunningApp) -> None:
    status, body = await _token(app_server.url, {"user": "dana", "name": "Dana"})
    assert status == 200
    assert body["user"] == "dana" and body["expires_in"] == 12 * 3600
    client = await connect(app_server.url, "dana", body["token"])
    try:
        ack = await client.call("/chat", "conversation:list", {})
        assert ack["ok"] is True
    finally:
        await client.close()


@pytest.mark.parametrize("body", [{}, {"user": ""}, {"user": "-x"}, {"user": "a b"}, {"user": "x" * 65},
                                  {"user": 5}, {"user": "ok", "name": 5}, {"user": "ok", "name": "n" * 65}, []])
async def test_bad_token_requests_are_refused_in_words(app_server: RunningApp, body: Any) -> None:
    status, answer = await _token(app_server.url, body)
    assert status == 400
    assert answer["error"]["code"] == "invalid_payload"
    assert answer["error"]["message"]


async def test_demo_off_serves_neither_page_nor_tokens(env: dict[str, str]) -> None:
    async with running_app(make_settings({**env, "PAIRLY_DEMO": "0"})) as app:
        assert (await _get(app.url + "/demo/"))[0] == 404
        assert (await _token(app.url, {"user": "dana"}))[0] == 404


def test_production_refuses_the_demo_and_leaves_it_off_by_default(env: dict[str, str]) -> None:
    production = {**env, "PAIRLY_MODE": "production", "PAIRLY_METRICS_PUBLIC": "true",
                  "PAIRLY_CORS_ORIGINS": "https://app.example"}
    with pytest.raises(ConfigError, match="PAIRLY_DEMO"):
        create_app(make_settings({**production, "PAIRLY_DEMO": "1"}))
    app = create_app(make_settings(production))
    paths = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    assert not any(p.startswith("/demo") or p == "/api/dev/token" for p in paths)


async def test_token_lifetime_follows_the_jwt_maximum(env: dict[str, str]) -> None:
    async with running_app(make_settings({**env, "PAIRLY_JWT_MAX_TTL_S": "600"})) as app:
        status, body = await _token(app.url, {"user": "dana"})
    assert (status, body["expires_in"]) == (200, 600)
    with pytest.raises(ConfigError, match="PAIRLY_DEMO_TOKEN_TTL_S"):
        create_app(make_settings({**env, "PAIRLY_JWT_MAX_TTL_S": "600", "PAIRLY_DEMO_TOKEN_TTL_S": "601"}))
    with pytest.raises(ConfigError, match="PAIRLY_DEMO_TOKEN_TTL_S"):
        create_app(make_settings({**env, "PAIRLY_DEMO_TOKEN_TTL_S": "59"}))


async def test_without_a_signing_secret_the_token_route_says_to_paste_a_token(env: dict[str, str]) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    rs256 = {k: v for k, v in env.items() if k != "PAIRLY_JWT_SECRET"} | {"PAIRLY_JWT_PUBLIC_KEY": pem}
    settings = make_settings(rs256)
    async with running_app(settings) as app:
        status, body = await _token(app.url, {"user": "dana"})
    assert status == 403
    assert body["error"]["code"] == "forbidden"
    assert "paste a token" in body["error"]["message"]


async def test_a_token_from_one_node_signs_in_on_another(nodes: Callable[..., list[NodeProcess]]) -> None:
    first, second = nodes(2)
    status, body = await _token(first.url, {"user": "erin"})
    assert status == 200
    client = await connect(second.url, "erin", body["token"])
    try:
        assert (await client.call("/presence", "presence:subscribe", {"users": ["erin"]}))["ok"] is True
    finally:
        await client.close()
