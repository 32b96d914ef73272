"""Who blocked whom. Shared by chat (no messages or typing), presence (blocker looks offline) and calls.

One document per (blocker, blocked) pair; a small per-process cache keeps the hot path (every
message send, every presence fan-out) free of a store round trip. The cache is invalidated on this
node on change and expires after `ttl_s` elsewhere, so a block made on another node takes effect
within that bound.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

Doc = dict[str, Any]


class BlockStore:
    def __init__(self, db: AsyncDatabase[Doc], ttl_s: float = 5.0) -> None:
        self._coll = db["blocks"]
        self._ttl = ttl_s
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}

    async def block(self, blocker: str, blocked: str) -> None:
        await self._coll.update_one(
            {"_id": f"{blocker}\x1f{blocked}"},
            {"$setOnInsert": {"blocker": blocker, "blocked": blocked, "at": dt.datetime.now(dt.UTC)}},
            upsert=True,
        )
        self._cache.pop(blocker, None)

    async def unblock(self, blocker: str, blocked: str) -> None:
        await self._coll.delete_one({"_id": f"{blocker}\x1f{blocked}"})
        self._cache.pop(blocker, None)

    async def blocked_by(self, blocker: str) -> frozenset[str]:
        """Everyone `blocker` has blocked."""
        hit = self._cache.get(blocker)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        users = frozenset([d["blocked"] async for d in self._coll.find({"blocker": blocker}, {"blocked": 1})])
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
