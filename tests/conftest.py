"""Shared fixtures: private Redis and store for the run, the real app on a free port, real clients.

Set MONGO_URL to run the whole suite against a real MongoDB instead of the embedded SecantusDB.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from config.logging import configure_logging
from config.settings import Settings, load_settings
from server.store import EmbeddedStore
from tests.support.apps import NodeProcess, RunningApp, make_settings, running_app
from tests.support.clients import Client, connect, token_for
from tests.support.services import RedisServer

TEST_SECRET = "test-secret-0123456789-0123456789-abcdef"

configure_logging(load_settings({"PAIRLY_LOG_LEVEL": os.environ.get("TEST_LOG_LEVEL", "warning")}))


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    server = RedisServer()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def mongo_url() -> Iterator[str]:
    external = os.environ.get("MONGO_URL")
    if external:
        yield external
        return
    store = EmbeddedStore(":memory:")
    store.start()
    yield store.url
    store.stop()


@pytest.fixture
def base_env(mongo_url: str) -> dict[str, str]:
    """Environment for one test: its own database and Redis key prefix, so tests never share state."""
    tag = uuid.uuid4().hex[:10]
    return {
        "PAIRLY_MODE": "dev",
        "MONGO_URL": mongo_url,
        "MONGO_DB": f"t_{tag}",
        "REDIS_PREFIX": f"t{tag}",
        "PAIRLY_JWT_SECRET": TEST_SECRET,
        "PAIRLY_LOG_LEVEL": "warning",
        "PAIRLY_STORE_CONNECT_TIMEOUT_S": "10",
    }


@pytest.fixture
def env(base_env: dict[str, str]) -> dict[str, str]:
    """Override in a test module (or mutate) to change settings for that module's app."""
    return base_env


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return make_settings(env)


@pytest.fixture
async def app_server(settings: Settings) -> AsyncIterator[RunningApp]:
    async with running_app(settings) as running:
        yield running


ClientFactory = Callable[..., Awaitable[Client]]


@pytest.fixture
async def clients() -> AsyncIterator[Callable[..., Awaitable[Client]]]:
    """`await clients(running_app, "alice", namespaces=[...], **token_kwargs)` -> connected Client."""
    opened: list[Client] = []

    async def factory(target: RunningApp, user: str, namespaces: Any = ("/chat", "/presence", "/call"),
                      **token_kwargs: Any) -> Client:
        client = await connect(target.url, user, token_for(target.settings, user, **token_kwargs), namespaces)
        opened.append(client)
        return client

    yield factory
    for client in opened:
        await client.close()


@pytest.fixture
def nodes(base_env: dict[str, str], redis_url: str) -> Iterator[Callable[..., list[NodeProcess]]]:
    """Start N real server processes sharing one Redis and one store: `nodes(2)`."""
    started: list[NodeProcess] = []

    def start(count: int, **extra_env: str) -> list[NodeProcess]:
        env = {**base_env, "REDIS_URL": redis_url, **extra_env}
        batch = [NodeProcess(env, f"node{len(started) + i}") for i in range(count)]
        started.extend(batch)
        for node in batch:
            node.wait_ready()
        return batch

    yield start
    for node in started:
        node.stop()
