"""The `jti` deny-list: Redis when configured (fast path, shared by nodes), always mirrored to MongoDB.

MongoDB is the durable copy (a TTL index drops entries once the token would have expired anyway);
Redis answers the check on each connect when it is configured.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis


class RevocationStore:
    def __init__(self, db: AsyncDatabase[dict[str, Any]], redis: Redis | None, prefix: str) -> None:
        self._coll = db["revoked_tokens"]
        self._redis = redis
        self._prefix = prefix

    def _key(self, jti: str) -> str:
        return f"{self._prefix}:revoked:{jti}"

    async def revoke(self, jti: str, expires_at: float) -> None:
        ttl = max(1, int(expires_at - time.time()) + 60)
        expiry = dt.datetime.fromtimestamp(expires_at, dt.UTC) + dt.timedelta(seconds=60)
        await self._coll.update_one({"_id": jti}, {"$set": {"expires_at": expiry}}, upsert=True)
        if self._redis is not None:
            await self._redis.set(self._key(jti), "1", ex=ttl)

    async def is_revoked(self, jti: str) -> bool:
        if self._redis is not None:
            return bool(await self._redis.exists(self._key(jti)))
        return await self._coll.find_one({"_id": jti}, projection={"_id": 1}) is not None
