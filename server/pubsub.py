"""One Redis pub/sub listening loop for every subscriber (routed emits, block notifications)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from redis.asyncio.client import PubSub

from server.outage import Outage

log = structlog.get_logger(__name__)


async def listen(pubsub: PubSub, handle: Callable[[Any], Awaitable[None]], *, what: str) -> None:
    """Hand every message's payload to `handle` until cancelled; on a Redis error, log and go on
    after a short pause (redis-py resubscribes the channels when the connection comes back)."""
    outage = Outage(f"redis_subscribe_{what}")
    while True:
        try:
            async for raw in pubsub.listen():
                if outage.down:
                    outage.ok()
                if raw.get("type") == "message":
                    await handle(raw["data"])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            outage.failed(exc)
        await asyncio.sleep(0.5)
