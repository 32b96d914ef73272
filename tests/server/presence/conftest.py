"""Fixtures for the /presence tests: the real app with small time bounds, and update helpers."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from tests.support.clients import Client

PRESENCE = "/presence"
UPDATE = "presence:update"

# Small bounds keep the module fast; tests that are about a bound assert it with generous slack.
FAST = {
    "PAIRLY_PRESENCE_GRACE_S": "0.4",
    "PAIRLY_PRESENCE_AWAY_AFTER_S": "120",
    "PAIRLY_PRESENCE_NODE_TTL_S": "1.5",
    "PAIRLY_RATE_LIMITS": "*=1000/1,presence:subscribe=1000/1",
}


@pytest.fixture
def env(base_env: dict[str, str]) -> dict[str, str]:
    return {**base_env, **FAST}


def updates(client: Client, user: str) -> list[dict[str, Any]]:
    return [p for p in client.received(PRESENCE, UPDATE) if p["user"] == user]


async def update(client: Client, user: str, status: str | None = None, *, skip: int = 0,
                 timeout: float = 5.0) -> dict[str, Any]:
    """The first `presence:update` about `user` (with `status`) after the first `skip` ones about them."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        for p in updates(client, user)[skip:]:
            if status is None or p["status"] == status:
                return p
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimeoutError(f"no {status or 'any'} update about {user}; got {updates(client, user)}")
        with contextlib.suppress(TimeoutError):
            await client.next(PRESENCE, UPDATE, timeout=remaining)


async def subscribe(client: Client, users: list[str]) -> dict[str, dict[str, Any]]:
    """Subscribe and insist on success; the snapshot by user."""
    ack = await client.call(PRESENCE, "presence:subscribe", {"users": users})
    assert ack["ok"], ack
    assert [p["user"] for p in ack["presence"]] == list(dict.fromkeys(users))
    return {p["user"]: p for p in ack["presence"]}


async def call_ok(client: Client, event: str, data: Any = None) -> dict[str, Any]:
    ack = await client.call(PRESENCE, event, data)
    assert ack["ok"], ack
    return dict(ack)


def error_code(ack: Any) -> str:
    assert isinstance(ack, dict) and ack.get("ok") is False, ack
    return str(ack["error"]["code"])
