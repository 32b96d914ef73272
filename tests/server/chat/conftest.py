"""Fixtures for the /chat tests: the real app with generous rate limits, and small helpers."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.support.clients import Client

CHAT = "/chat"


@pytest.fixture
def env(base_env: dict[str, str]) -> dict[str, str]:
    base_env["PAIRLY_RATE_LIMITS"] = "*=1000/1,message:send=1000/1,typing=1000/1"
    return base_env


async def send(client: Client, to: str, text: str = "hi", client_id: str | None = None, **extra: Any) -> Any:
    payload: dict[str, Any] = {"to": to, "client_id": client_id or uuid.uuid4().hex, "text": text, **extra}
    return await client.call(CHAT, "message:send", payload)


async def sent(client: Client, to: str, text: str = "hi", **extra: Any) -> dict[str, Any]:
    """Send and insist on success; returns the message M."""
    ack = await send(client, to, text, **extra)
    assert ack["ok"], ack
    message: dict[str, Any] = ack["message"]
    return message


async def barrier(sender: Client, receivers: list[Client], to: str) -> dict[str, Any]:
    """Send a marker message and wait until every receiver has it: anything sent before has arrived too."""
    marker = f"barrier-{uuid.uuid4().hex[:8]}"
    import asyncio

    waits = [asyncio.create_task(_until_text(r, marker)) for r in receivers]
    m = await sent(sender, to, marker)
    await asyncio.gather(*waits)
    return m


async def _until_text(client: Client, text: str) -> None:
    while True:
        if any(m.get("text") == text for m in client.received(CHAT, "message:new")):
            return
        await client.next(CHAT, "message:new", timeout=5)


def error_code(ack: Any) -> str:
    assert isinstance(ack, dict) and ack.get("ok") is False, ack
    return str(ack["error"]["code"])
