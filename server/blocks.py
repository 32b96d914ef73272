"""Who blocked whom. Shared by chat (no messages or typing), presence (blocker looks offline) and calls.

One document per (blocker, blocked) pair; a small per-process cache keeps the hot path (every
message send, every presence fan-out) free of a store round trip.

Every block or unblock that changes something is announced as a `BlockChange` through `BlockEvents`:
in this process, and with Redis on the `<prefix>:blocks` channel so every node hears it. Listeners
(BlockStore's own cache, presence) act on it at once; the cache also expires after `ttl_s`, which
bounds staleness if a notification is lost (Redis down when it was published).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from server.pubsub import listen

log = structlog.get_logger(__name__)

Doc = dict[str, Any]


@dataclass(frozen=True, slots=True)
class BlockChange:
    blocker: str
    blocked: str
    now_blocked: bool  # True: `blocker` just blocked `blocked`; False: just unblocked


BlockListener = Callable[[BlockChange], Awaitable[None]]


class BlockEvents:
    """Announces block changes to listeners in this process (one node, no Redis)."""

    def __init__(self) -> None:
        self._listeners: list[BlockListener] = []

    def subscribe(self, listener: BlockListener) -> None:
        """`listener` hears every change, in order; its failures are logged, never raised to the writer."""
        self._listeners.append(listener)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def publish(self, change: BlockChange) -> None:
        await self._deliver(change)

    async def _deliver(self, change: BlockChange) -> None:
        for listener in list(self._listeners):
            try:
                await listener(change)
            except Exception:
                log.exception("block_listener_failed", blocker=change.blocker, blocked=change.blocked)


class RedisBlockEvents(BlockEvents):
    """Announces block changes to every node: delivered here at once, and published on
    `<prefix>:blocks` for the others (a node ignores its own publishes).

    Pub/sub is fire-and-forget: a node that is not subscribed when a change is published (Redis
    down, node starting) misses it; its BlockStore cache still expires after `ttl_s`, and presence
    then applies the block to new subscriptions.
    """

    def __init__(self, redis: Redis, prefix: str, node_id: str) -> None:
        super().__init__()
        self._redis = redis
        self.channel = f"{prefix}:blocks"
        # Per process, so two nodes configured with the same PAIRLY_NODE_ID still hear each other.
        self._origin = f"{node_id}.{secrets.token_hex(4)}"
        self._pubsub: PubSub | None = None
        self._listener: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._pubsub = self._redis.pubsub()
        await self._pubsub.subscribe(self.channel)
        # Wait for Redis to confirm: every change published once start() returns is heard here.
        async with asyncio.timeout(10):
            while True:
                confirmation = await self._pubsub.get_message(timeout=1.0)
                if confirmation is not None and confirmation.get("type") == "subscribe":
                    break
        self._listener = asyncio.create_task(listen(self._pubsub, self._received, what="blocks"), name="block-events")

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
            self._pubsub = None

    async def publish(self, change: BlockChange) -> None:
        message = json.dumps({"h": self._origin, "blocker": change.blocker, "blocked": change.blocked,
                              "on": change.now_blocked})
        try:
            await self._redis.publish(self.channel, message)
        except Exception as exc:  # the change is stored; other nodes' caches expire on their own
            log.warning("block_publish_failed", error=str(exc), blocker=change.blocker, blocked=change.blocked)
        await self._deliver(change)

    async def _received(self, payload: bytes | str) -> None:
        try:
            message = json.loads(payload)
            change = BlockChange(str(message["blocker"]), str(message["blocked"]), bool(message["on"]))
        except (ValueError, KeyError, TypeError):
            log.warning("block_event_malformed")
            return
        if message.get("h") != self._origin:
            await self._deliver(change)


class BlockStore:
    # Changes reach every node's cache through `events`; the expiry only bounds a lost notification.
    def __init__(self, db: AsyncDatabase[Doc], *, events: BlockEvents | None = None, ttl_s: float = 30.0) -> None:
        self._coll = db["blocks"]
        self._ttl = ttl_s
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}
        self._loading: dict[str, asyncio.Future[frozenset[str]]] = {}
        self._changes = 0  # a read that overlapped a change does not fill the cache (it may predate it)
        self.events = events or BlockEvents()
        self.events.subscribe(self._changed)

    async def block(self, blocker: str, blocked: str) -> None:
        result = await self._coll.update_one(
            {"_id": f"{blocker}\x1f{blocked}"},
            {"$setOnInsert": {"blocker": blocker, "blocked": blocked, "at": dt.datetime.now(dt.UTC)}},
            upsert=True,
        )
        self._forget(blocker)
        if result.upserted_id is not None:
            await self.events.publish(BlockChange(blocker, blocked, True))

    async def unblock(self, blocker: str, blocked: str) -> None:
        result = await self._coll.delete_one({"_id": f"{blocker}\x1f{blocked}"})
        self._forget(blocker)
        if result.deleted_count:
            await self.events.publish(BlockChange(blocker, blocked, False))

    async def _changed(self, change: BlockChange) -> None:
        """A change on any node: forget the blocker's cached list here."""
        self._forget(change.blocker)

    def _forget(self, blocker: str) -> None:
        self._changes += 1
        self._cache.pop(blocker, None)

    async def blocked_by(self, blocker: str) -> frozenset[str]:
        """Everyone `blocker` has blocked."""
        hit = self._cache.get(blocker)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        changes = self._changes
        loading = self._loading.get(blocker)
        if loading is not None:  # single flight: concurrent misses share one read
            return await asyncio.shield(loading)
        future: asyncio.Future[frozenset[str]] = asyncio.get_running_loop().create_future()
        self._loading[blocker] = future
        try:
            users = frozenset([d["blocked"] async for d in self._coll.find({"blocker": blocker}, {"blocked": 1})])
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        finally:
            self._loading.pop(blocker, None)
        future.set_result(users)
        if changes == self._changes:
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[blocker] = (now + self._ttl, users)
        return users

    async def either_blocked(self, a: str, b: str) -> bool:
        """True when a blocked b or b blocked a."""
        return b in await self.blocked_by(a) or a in await self.blocked_by(b)

    async def is_blocked(self, blocker: str, blocked: str) -> bool:
        return blocked in await self.blocked_by(blocker)


async def ensure_indexes(db: AsyncDatabase[Doc]) -> None:
    await db["blocks"].create_index([("blocker", 1), ("blocked", 1)])
    await db["blocks"].create_index("blocked")
