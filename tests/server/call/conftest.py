"""Fixtures for the /call tests: the real app with a short billing minute and short timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from billing.ledger import Ledger
from tests.support.clients import Client

CALL = "/call"
INTERVAL_S = 1.0


@pytest.fixture
def env(base_env: dict[str, str]) -> dict[str, str]:
    return call_env(base_env)


def call_env(base: dict[str, str], **extra: str) -> dict[str, str]:
    return {**base, "PAIRLY_RATE_LIMITS": "*=1000/1", "PAIRLY_SIGNUP_BONUS": "0",
            "PAIRLY_CALL_BILLING_INTERVAL_S": str(INTERVAL_S), "PAIRLY_CALL_RING_TIMEOUT_S": "3",
            "PAIRLY_CALL_RECONNECT_GRACE_S": "1.5", "PAIRLY_CALL_SWEEP_S": "0.5", **extra}


async def fund(ledger: Ledger, user: str, credits: int) -> None:
    await ledger.credit(user, credits, f"test-fund:{user}:{credits}", "test_credit")


async def ok(client: Client, event: str, data: Any) -> dict[str, Any]:
    ack = await client.call(CALL, event, data)
    assert ack["ok"], ack
    result: dict[str, Any] = ack
    return result


def error_code(ack: Any) -> str:
    assert isinstance(ack, dict) and ack.get("ok") is False, ack
    return str(ack["error"]["code"])


async def until(predicate: Callable[[], Any], timeout: float = 10.0, step: float = 0.05) -> Any:
    """Poll until `predicate()` is truthy (events arrive asynchronously); returns its value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(step)


def ended(client: Client, call_id: str) -> list[dict[str, Any]]:
    return [e for e in client.received(CALL, "call:ended") if e["call_id"] == call_id]


def billed(client: Client, call_id: str) -> list[dict[str, Any]]:
    return [e for e in client.received(CALL, "call:billed") if e["call_id"] == call_id]
