"""Live figures for operators (`GET /api/admin/stats`), across nodes.

Each node counts what it handles: open sockets per namespace (its namespaces' live callers), and —
from the ledger batches it commits — chat messages and credits spent (messages, call minutes). Every
`PAIRLY_ADMIN_STATS_PUBLISH_S` (2 s) it samples its counters and, with Redis, writes its snapshot to
`<prefix>:adminstats:<node>` with a TTL of three periods (and its name in the set
`<prefix>:adminstats-nodes`); the stats route reads the keys of the set's nodes, so a node that died
drops out within the TTL (`nodes_alive`). Without Redis the node is alone and answers
from its own snapshot. Per-minute figures are the counters' growth over the last 60 s of samples.
Store-wide figures (active calls, purchases today) are read from MongoDB at request time.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import structlog
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from billing.ledger import Entry
from server.sessions import LocalSockets
from signaling.model import OPEN

log = structlog.get_logger(__name__)

Doc = dict[str, Any]
SPEND_KINDS = frozenset({"message", "call_minute"})
_WINDOW_S = 60.0
_SOLD = ("succeeded", "partially_refunded", "refunded", "disputed")


class NodeCounters:
    """Ledger listener: messages committed and credits spent on this node (cumulative)."""

    def __init__(self) -> None:
        self.messages = 0
        self.credits_spent = 0

    async def __call__(self, entries: Sequence[Entry]) -> None:
        for entry in entries:
            if entry.kind == "message":
                self.messages += 1
            if entry.kind in SPEND_KINDS:
                self.credits_spent += sum(-(p.delta + p.held) for p in entry.postings
                                          if p.account.startswith("wallet:"))


class NodeStats:
    def __init__(self, node: str, namespaces: Sequence[LocalSockets], counters: NodeCounters,
                 db: AsyncDatabase[Doc], redis: Redis | None, prefix: str, *, publish_s: float = 2.0) -> None:
        self._node = node
        self._namespaces = tuple(namespaces)
        self._counters = counters
        self._calls = db["calls"]
        self._purchases = db["purchases"]
        self._redis = redis
        self._prefix = f"{prefix}:adminstats:"
        self._members = f"{prefix}:adminstats-nodes"
        self._publish_s = publish_s
        self._samples: deque[tuple[float, int, int]] = deque()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._sample()
        self._task = asyncio.create_task(self._run(), name="admin-stats")
        with contextlib.suppress(Exception):
            await self._publish()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.delete(self._prefix + self._node)
                await self._redis.srem(self._members, self._node)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._publish_s)
            self._sample()
            try:
                await self._publish()
            except Exception:
                log.warning("admin_stats_publish_failed", exc_info=True)

    def _sample(self) -> None:
        now = time.monotonic()
        self._samples.append((now, self._counters.messages, self._counters.credits_spent))
        while len(self._samples) > 2 and self._samples[1][0] <= now - _WINDOW_S:
            self._samples.popleft()

    def snapshot(self) -> Doc:
        """This node's figures now (per-minute rates over the last minute of samples)."""
        oldest = self._samples[0] if self._samples else (time.monotonic(), 0, 0)
        return {
            "node": self._node,
            "connections": {ns.namespace: len(ns.callers) for ns in self._namespaces},
            "messages_per_min": self._counters.messages - oldest[1],
            "credits_spent_per_min": self._counters.credits_spent - oldest[2],
            "at": dt.datetime.now(dt.UTC).isoformat(),
        }

    async def _publish(self) -> None:
        if self._redis is not None:
            ttl_ms = int(self._publish_s * 3000)
            pipe = self._redis.pipeline(transaction=False)
            pipe.set(self._prefix + self._node, json.dumps(self.snapshot()), px=ttl_ms)
            pipe.sadd(self._members, self._node)
            await pipe.execute()

    async def _nodes(self) -> list[Doc]:
        # `_members` holds the nodes that published (a set: reading needs no SCAN of the keyspace); a
        # member whose snapshot key expired is dead, and the reader removes it.
        if self._redis is None:
            return [self.snapshot()]
        members = sorted(_text(m) for m in await self._redis.smembers(self._members))
        found: dict[str, Doc] = {}
        if members:
            raws = await self._redis.mget([self._prefix + m for m in members])
            gone = [m for m, raw in zip(members, raws, strict=True) if not raw]
            for raw in raws:
                if raw:
                    doc = json.loads(raw)
                    found[doc["node"]] = doc
            if gone:
                await self._redis.srem(self._members, *gone)
        found[self._node] = self.snapshot()  # this node's own figures are current, not a period old
        return [found[n] for n in sorted(found)]

    async def aggregate(self) -> Doc:
        nodes = await self._nodes()
        totals: dict[str, int] = {}
        for n in nodes:
            for ns, count in n["connections"].items():
                totals[ns] = totals.get(ns, 0) + int(count)
        midnight = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        sold = {"n": 0, "credits": 0}
        async for row in await self._purchases.aggregate([
                {"$match": {"created_at": {"$gte": midnight}, "status": {"$in": list(_SOLD)}}},
                {"$group": {"_id": None, "n": {"$sum": 1}, "credits": {"$sum": "$credits"}}}]):
            sold = row
        return {
            "nodes_alive": len(nodes),
            "connections": totals,
            "messages_per_min": sum(int(n["messages_per_min"]) for n in nodes),
            "credits_spent_per_min": sum(int(n["credits_spent_per_min"]) for n in nodes),
            "active_calls": await self._calls.count_documents({"state": {"$in": list(OPEN)}}),
            "purchases_today": {"count": int(sold["n"]), "credits": int(sold["credits"])},
            "nodes": nodes,
        }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
